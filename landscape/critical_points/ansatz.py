"""Symmetric ansatzes: fixed-point subspaces of groups of permutations, where gradient flow ends at
saddles of the full problem; integer partitions name the groups.

Methods
-------
Saddles: flows in fixed-point subspaces of symmetric ansatzes
    For a teacher invariant under all permutations (orthonormal, equicorrelated) the group
    ``Delta(S_b1 x ... x S_bp)`` -- permuting students and the teacher units they are paired with
    simultaneously inside blocks of sizes ``b1 + ... + bp = min(K, M)`` (extra students form one
    more block) -- leaves ``L`` invariant. By equivariance, gradient flow started in its fixed-point
    subspace stays there and ends at a critical point of the restricted problem, which is a
    critical point of the full problem (symmetric criticality) and usually a saddle of it. The
    states are projected back onto the subspace after every step (rounding would otherwise let a
    saddle's unstable directions take over), and the end points are Newton-polished.

Eqs. (6.2)-(6.3) of docs/theory.md (symmetric criticality; the ansatzes of Arjevani & Field).
"""

from __future__ import annotations

import numpy as np

from ..kernels.overlaps import validate_teacher
from .batch_flow import check_positive, project

__all__ = [
    "integer_partitions",
    "ansatz_projector",
    "plateau_projector",
    "ansatz_starts",
    "permutation_invariant",
]


def integer_partitions(n, max_count=None):
    """Partitions of ``n`` into positive parts, largest parts first, fewest parts first.

    Parameters
    ----------
    n : int
        Positive whole number.
    max_count : int, optional
        Return at most this many (the most symmetric ones: fewest parts).

    Returns
    -------
    tuple of tuple of int

    Raises
    ------
    ValueError
        If ``n`` or ``max_count`` is not a positive whole number.
    """
    n = check_positive("n", n, integer=True)
    if max_count is not None:
        max_count = check_positive("max_count", max_count, integer=True)

    def parts(remaining, largest):
        if remaining == 0:
            yield ()
            return
        for first in range(min(remaining, largest), 0, -1):
            for rest in parts(remaining - first, first):
                yield (first,) + rest

    result = sorted(parts(n, n), key=lambda p: (len(p), [-x for x in p]))
    return tuple(result[:max_count] if max_count is not None else result)


def _block_labels(blocks, total):
    blocks = tuple(int(b) for b in blocks)
    if not blocks or min(blocks) < 1 or sum(blocks) != total:
        raise ValueError(f"blocks {list(blocks)} must be positive whole numbers adding up to {total}")
    return np.repeat(np.arange(len(blocks)), blocks), len(blocks)


def _averaging(labels):
    """Orthogonal projector that replaces entries by the mean over their class."""
    onehot = np.eye(labels.max() + 1)[labels]
    return onehot @ np.diag(1.0 / onehot.sum(axis=0)) @ onehot.T


def _paired_classes(K, M, blocks):
    """Class of each coefficient ``C[k, m]`` under Delta(S_b1 x ...): blocks of k and m, and k == m."""
    paired = min(K, M)
    block_of, p = _block_labels(blocks, paired)
    student_block = np.concatenate([block_of, np.full(K - paired, p)])
    teacher_block = np.concatenate([block_of, np.full(M - paired, p)])
    diagonal = np.zeros((K, M), dtype=int)
    diagonal[np.arange(paired), np.arange(paired)] = 1
    keys = (student_block[:, None] * (p + 1) + teacher_block[None, :]) * 2 + diagonal
    return np.unique(keys.ravel(), return_inverse=True)[1]


def permutation_invariant(T):
    """True when the teacher overlaps are invariant under all permutations (equal norms and overlaps).

    Parameters
    ----------
    T : ndarray, shape (M, M)

    Returns
    -------
    bool
    """
    off = T[~np.eye(len(T), dtype=bool)]
    return bool(np.ptp(np.diag(T)) <= 1e-12 and (off.size == 0 or np.ptp(off) <= 1e-12))


def ansatz_projector(K, M, blocks, W_teacher, paired=True):
    """Projector onto the student weights fixed by a group of permutations (a symmetric ansatz).

    ``paired=True``: the group ``Delta(S_b1 x ... x S_bp)``. The first ``min(K, M)`` students are
    paired with the teachers of the same index and the pairs are cut into consecutive blocks of
    sizes ``blocks`` (adding up to ``min(K, M)``); the group permutes pairs inside each block, and
    the students or teachers beyond ``min(K, M)`` among themselves. Writing ``u_k = sum_m C_km u*_m``,
    ``C`` is fixed when ``C_km`` depends only on the blocks of ``k`` and ``m`` and on ``k = m``.
    Needs a teacher invariant under all permutations (orthonormal, equicorrelated) and students
    in the teacher span (``n = M``).

    ``paired=False``: permutations of the students alone inside blocks adding up to ``K``; the
    fixed weights have identical units inside each block (exact split units). A symmetry of
    every teacher, in any dimension ``n``.

    Parameters
    ----------
    K, M : int
    blocks : sequence of int
    W_teacher : array_like, shape (M, n)
        Teacher rows (``n = M`` and invertible when ``paired``).
    paired : bool, optional

    Returns
    -------
    ndarray, shape (K n, K n)
        Acts on row-major flattened student weights ``W`` (K, n).

    Raises
    ------
    ValueError
        If the blocks do not add up as required, or (``paired``) the teacher rows are not an
        invertible ``M x M`` matrix with overlaps invariant under all permutations.
    """
    W_teacher = np.asarray(W_teacher, dtype=float)
    if W_teacher.ndim != 2 or W_teacher.shape[0] != M:
        raise ValueError(f"W_teacher must have M = {M} rows, got shape {W_teacher.shape}")
    T = validate_teacher(W_teacher @ W_teacher.T)
    if not paired:
        labels, _ = _block_labels(blocks, K)
        return np.kron(_averaging(labels), np.eye(W_teacher.shape[1]))
    if W_teacher.shape != (M, M):
        raise ValueError(f"W_teacher must have shape ({M}, {M}) (students in the teacher span), got {W_teacher.shape}")
    if not permutation_invariant(T):
        raise ValueError("paired ansatzes need a teacher invariant under all permutations (equal norms and overlaps)")
    # W = C W_teacher row by row, so vec(W) = (I_K (x) W_teacher^T) vec(C) in row-major order.
    to_weights = np.kron(np.eye(K), W_teacher.T)
    return to_weights @ _averaging(_paired_classes(K, M, blocks)) @ np.linalg.inv(to_weights)


def plateau_projector(K, W_teacher):
    """Projector onto the unspecialised subspace of the Saad-Solla plateau.

    Every student has the same component along the sum of the teachers, the same norm and the
    same overlap with every other student: ``u_k = a s + b (e_k - e_mean) + c e_mean`` with ``s``
    the sum of the teacher rows and ``e_1 .. e_K`` orthonormal directions outside the teacher span.
    This is the fixed-point subspace of permuting the students together with the ``e_k`` and the
    teachers together with their rows, a symmetry of ``L`` when the teacher overlaps are invariant
    under all permutations, so its critical points are critical points of the full problem. The
    overlaps there are ``R_km = r``, ``Q_kk = q``, ``Q_kl = p``: the plateau of one-pass SGD, which
    ReLU students reach only with room outside the teacher span (``n >= M + K``).

    Parameters
    ----------
    K : int
    W_teacher : array_like, shape (M, n)
        Teacher rows of full rank ``M`` with ``n >= M + K``.

    Returns
    -------
    ndarray, shape (K n, K n)
        Acts on row-major flattened student weights ``W`` (K, n).

    Raises
    ------
    ValueError
        If the teacher is not invariant under all permutations, not of full rank, or ``n < M + K``.
    """
    W_teacher = np.asarray(W_teacher, dtype=float)
    if W_teacher.ndim != 2:
        raise ValueError(f"W_teacher must be a matrix (M, n), got shape {W_teacher.shape}")
    K = check_positive("K", K, integer=True)
    M, n = W_teacher.shape
    T = validate_teacher(W_teacher @ W_teacher.T)
    if not permutation_invariant(T):
        raise ValueError("the plateau ansatz needs a teacher invariant under all permutations (equal norms and overlaps)")
    _, singular, right = np.linalg.svd(W_teacher)
    if np.sum(singular > 1e-12 * singular[0]) < M or n < M + K:
        raise ValueError(f"the plateau ansatz needs a full-rank teacher and n >= M + K = {M + K} coordinates, got n = {n}")
    outside = right[M : M + K]
    mean = outside.mean(axis=0)
    ones = np.ones((K, 1))
    spanning = np.stack([(ones * W_teacher.sum(axis=0)).ravel(), (outside - mean).ravel(), (ones * mean).ravel()], axis=1)
    left, weights, _ = np.linalg.svd(spanning, full_matrices=False)
    basis = left[:, weights > 1e-12 * weights[0]]
    return basis @ basis.T


def ansatz_starts(K, M, blocks, count, rng, W_teacher, paired=True, scale=1.0, opposing_pattern=False):
    """Random starts in the fixed-point subspace of :func:`ansatz_projector`.

    Parameters
    ----------
    K, M : int
    blocks : sequence of int
    count : int
        Number of random starts.
    rng : numpy.random.Generator
    W_teacher : array_like, shape (M, n)
    paired : bool, optional
    scale : float, optional
        Entries are drawn ``N(0, scale^2 / n)`` (as a random network) and then projected.
    opposing_pattern : bool, optional
        With ``paired`` and a singleton block (pair ``j``), one more start, last: every paired
        student on its teacher, student ``j`` pointing away from teacher ``j`` (``-0.5 u*_j``) and
        slightly towards the others (``0.1`` each), students beyond ``M`` at ``0.1`` towards every
        teacher, projected. Random starts in the subspace of ``Delta(S_{K-1} x S_1)`` find Safran &
        Shamir's type-A point where it is a minimum (K = M >= 6) but rarely where it is a saddle of
        the subspace too (K = M = 4, 5); from this start the flow ends on it at every K
        (docs/theory.md, section 6). No extra start without a singleton block.

    Returns
    -------
    starts : ndarray, shape (count, K, n) or (count + 1, K, n)
    projector : ndarray, shape (K n, K n)

    Raises
    ------
    ValueError
        As :func:`ansatz_projector`, or if ``count`` is not a positive whole number.
    """
    count = check_positive("count", count, integer=True)
    projector = ansatz_projector(K, M, blocks, W_teacher, paired)
    n = np.shape(W_teacher)[1]
    starts = scale * rng.standard_normal((count, K, n)) / np.sqrt(n)
    if opposing_pattern and paired and 1 in list(blocks):
        starts = np.concatenate([starts, _opposing_pattern(K, M, list(blocks), W_teacher)[None]])
    return project(starts, projector), projector


def _opposing_pattern(K, M, blocks, W_teacher):
    """Unprojected rows of the 'one student opposing' start (see :func:`ansatz_starts`), shape (K, M)."""
    single = int(np.cumsum([0] + blocks)[blocks.index(1)])
    coefficients = np.full((K, M), 0.1)
    coefficients[: min(K, M), : min(K, M)] = np.eye(min(K, M))
    coefficients[single] = 0.1
    coefficients[single, single] = -0.5
    return coefficients @ np.asarray(W_teacher, dtype=float)

