"""Exact Hessian of the population loss in weight space, and its spectrum for any input dimension.

With ``e = f - f*`` the gradient is ``grad_{u_k} L = E[e relu'(lambda_k) x]`` and

``H_kl = E[relu'(lambda_k) relu'(lambda_l) x x^T] + delta_kl E[e delta(lambda_k) x x^T]``.

Both terms are closed forms in the plane of two units (eqs. (5.1)-(5.4) of docs/theory.md):

* firing term, angle ``theta`` between ``u_k`` and ``u_l``, ``e1 = u_k / |u_k|``, ``e2`` the unit
  rejection of ``u_l`` from ``e1``:
  ``((pi - theta) / (2 pi)) I + (sin theta / (2 pi)) [cos theta (e1 e1^T - e2 e2^T) + sin theta (e1 e2^T + e2 e1^T)]``;
* kink term, for every unit ``z`` (student ``+``, teacher ``-``) with ``z_perp`` its rejection from ``u_k``:
  ``E[relu(z . x) delta(lambda_k) x x^T] = (|z_perp| (I - e1 e1^T) + z_perp z_perp^T / |z_perp|) / (2 pi |u_k|)``.

Every term carries a factor ``sin theta`` or ``|z_perp|`` in front of a bounded matrix, so the
Hessian is continuous where units align (the kinks cancel and ``L`` is ``C^2``): aligned units
contribute their limits, with no division by a vanishing residual.

Each block leaves ``S = span{u_k, u*_m}`` invariant and acts on ``S^perp`` as ``alpha_kl I``,
``alpha`` the gradient coefficient matrix of :func:`landscape.model.loss.gradient_coefficients`. So in
input dimension ``d`` the spectrum is that of the ``K r`` block computed in an ``r``-dimensional
embedding of the point (``r = dim S``), plus the ``K`` eigenvalues of ``alpha``, each ``d - r`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..kernels.gaussian import TINY
from ..kernels.overlaps import RANK_TOL, Embedding, check_rank_tol, embed_overlaps, validate_overlaps, validate_weights
from ..model.loss import PairResiduals, gradient_coefficients

__all__ = ["Embedding", "embed_overlaps", "weight_hessian", "HessianSpectrum", "hessian_spectrum"]

# Squared norms at or below this are zero (same threshold as the Gaussian kernels).
_GROUP_TOL = 1e-7
#: Largest widening of the zero band by the gradient norm (see :func:`hessian_spectrum`).
_ZERO_BAND_CAP = 1e-6
_CONSISTENCY_TOL = 1e-8


def _check_norms(W, W_teacher):
    for name, rows in (("student", W), ("teacher", W_teacher)):
        squared = np.einsum("kn,kn->k", rows, rows)
        dead = np.flatnonzero(squared <= TINY)
        if dead.size:
            raise ValueError(
                f"{name} unit {dead[0]} (row index, from 0) has zero norm: the Hessian is not defined there"
            )
    return np.sqrt(np.einsum("kn,kn->k", W, W))


def _safe_unit(vectors, norms):
    """``vectors / norms`` with zero where the norm vanishes (the direction is then irrelevant)."""
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(norms[..., None] > 0, vectors / safe[..., None], 0.0)


def _firing_blocks(directions):
    """``E[relu'(lambda_k) relu'(lambda_l) x x^T]`` for all pairs, shape (K, n, K, n)."""
    K, n = directions.shape
    cosine = np.clip(directions @ directions.T, -1.0, 1.0)
    rejection = directions[None, :, :] - cosine[:, :, None] * directions[:, None, :]
    sine = np.linalg.norm(rejection, axis=-1)
    angle = np.arctan2(sine, cosine)
    normal = _safe_unit(rejection, sine)
    c_sym = sine * cosine / (2.0 * np.pi)
    c_mix = sine * sine / (2.0 * np.pi)
    blocks = np.einsum("kl,ij->kilj", (np.pi - angle) / (2.0 * np.pi), np.eye(n))
    blocks += np.einsum("kl,ki,kj->kilj", c_sym, directions, directions)
    blocks -= np.einsum("kl,kli,klj->kilj", c_sym, normal, normal)
    mixed = np.einsum("kl,ki,klj->kilj", c_mix, directions, normal)
    return blocks + mixed + mixed.transpose(0, 3, 2, 1)


def _kink_blocks(directions, norms, units, signs):
    """``E[(f - f*) delta(lambda_k) x x^T]`` for every student ``k``, shape (K, n, n)."""
    n = directions.shape[1]
    projection = directions @ units.T
    rejection = units[None, :, :] - projection[:, :, None] * directions[:, None, :]
    length = np.linalg.norm(rejection, axis=-1)
    total = length @ signs
    weights = np.where(length > 0, signs / np.where(length > 0, length, 1.0), 0.0)
    outer = np.einsum("kj,kji,kjl->kil", weights, rejection, rejection)
    complement = np.eye(n) - np.einsum("ki,kj->kij", directions, directions)
    return (total[:, None, None] * complement + outer) / (2.0 * np.pi * norms[:, None, None])


def _hessian(W, W_teacher):
    norms = _check_norms(W, W_teacher)
    directions = W / norms[:, None]
    K, n = W.shape
    units = np.concatenate([W, W_teacher])
    signs = np.concatenate([np.ones(K), -np.ones(W_teacher.shape[0])])
    blocks = _firing_blocks(directions)
    kink = _kink_blocks(directions, norms, units, signs)
    blocks[np.arange(K), :, np.arange(K), :] += kink
    hessian = blocks.reshape(K * n, K * n)
    return 0.5 * (hessian + hessian.T)


def weight_hessian(W, W_teacher):
    """Exact Hessian of ``L = 1/2 E[(f - f*)^2]`` with respect to the student rows.

    Parameters
    ----------
    W : array_like, shape (K, n)
        Student rows ``u_k`` (normalised units, any dimension ``n``).
    W_teacher : array_like, shape (M, n)
        Teacher rows ``u*_m``.

    Returns
    -------
    ndarray, shape (K * n, K * n)
        Symmetric; row-major flattening, entry ``k * n + i`` is coordinate ``i`` of ``u_k``.
        Finite where units align (``L`` is twice differentiable there).

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite, or a student or teacher unit has zero norm.
    """
    W, W_teacher = validate_weights(W, W_teacher)
    return _hessian(W, W_teacher)


@dataclass(frozen=True)
class HessianSpectrum:
    """Spectrum of the ``K d``-dimensional Hessian at a point, with multiplicities.

    Attributes
    ----------
    eigenvalues : ndarray, shape (p,)
        Distinct eigenvalues, ascending (consecutive values closer than 1e-7 times
        ``max(1, max |lambda|)`` are merged, at their multiplicity-weighted mean).
    multiplicities : ndarray of int, shape (p,)
        Multiplicities; they sum to ``K d``.
    bulk : ndarray of bool, shape (p,)
        True where every copy of the eigenvalue comes from the bulk block ``alpha (x) I_{d-r}``
        (directions orthogonal to all units); False if the span block contributes to it.
    span_eigenvalues : ndarray, shape (K r,)
        Eigenvalues of the block on ``span{u_k, u*_m}``, ascending, with repeats.
    bulk_eigenvalues : ndarray, shape (K,)
        Eigenvalues of ``alpha``, ascending; each has multiplicity ``d - r`` in the full spectrum.
    rank : int
        ``r``, the dimension of the span of all student and teacher units.
    d : int
        Input dimension.
    index : int
        Number of negative eigenvalues (below minus the zero band of :func:`hessian_spectrum`), with multiplicity.
    n_zero : int
        Eigenvalues inside the zero band of :func:`hessian_spectrum`, with multiplicity.
    n_symmetry_zero : int
        Dimension of the orbit of the point under the rotations of ``R^d`` that fix every teacher
        vector: ``p (d - t) - p (p + 1) / 2`` with ``t = rank(T)`` and ``p = r - t`` (the dimension
        of the student span outside the teacher span). At a critical point each orbit direction is
        a zero mode (``p (p - 1) / 2`` of them in the span block, ``p (d - r)`` in the bulk); they
        are genuine zero eigenvalues of ``L`` in ``R^d`` but leave ``(Q, R)`` unchanged.
    min_eigenvalue : float
        Smallest eigenvalue.
    gradient_norm : float
        Frobenius norm of the gradient. The zero-mode bookkeeping (``n_symmetry_zero``,
        ``n_flat``) describes the Hessian only at critical points, where this is zero.
    """

    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    bulk: np.ndarray
    span_eigenvalues: np.ndarray
    bulk_eigenvalues: np.ndarray
    rank: int
    d: int
    index: int
    n_zero: int
    n_symmetry_zero: int
    min_eigenvalue: float
    gradient_norm: float

    @property
    def n_flat(self) -> int:
        """Zero modes that are not rotations (``n_zero - n_symmetry_zero``): flat directions that move ``(Q, R)``."""
        return self.n_zero - self.n_symmetry_zero

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready summary (what ``landscape hessian`` prints)."""
        return {
            "eigenvalues": [float(value) for value in self.eigenvalues],
            "multiplicities": [int(value) for value in self.multiplicities],
            "bulk": [bool(value) for value in self.bulk],
            "rank": int(self.rank),
            "index": int(self.index),
            "n_zero": int(self.n_zero),
            "min_eigenvalue": float(self.min_eigenvalue),
            "d": int(self.d),
        }


def _group(values, multiplicities, is_bulk, tolerance):
    """Merge eigenvalues whose gap to the next one (in ascending order) is at most ``tolerance``."""
    order = np.argsort(values, kind="stable")
    values, multiplicities, is_bulk = values[order], multiplicities[order], is_bulk[order]
    starts = np.flatnonzero(np.concatenate([[True], np.diff(values) > tolerance]))
    counts = np.add.reduceat(multiplicities, starts)
    means = np.add.reduceat(values * multiplicities, starts) / counts
    pure_bulk = np.logical_and.reduceat(is_bulk, starts)
    return means, counts, pure_bulk


def _weights_embedding(Q, R, T, W, W_teacher, rank_tol):
    """Project explicit weights onto an orthonormal basis of their span (exact up to rounding)."""
    W, W_teacher = validate_weights(W, W_teacher)
    if W.shape[0] != Q.shape[0] or W_teacher.shape[0] != T.shape[0]:
        raise ValueError(
            f"W and W_teacher must have K = {Q.shape[0]} and M = {T.shape[0]} rows like Q and T, "
            f"got {W.shape[0]} and {W_teacher.shape[0]}"
        )
    scale = max(1.0, float(np.max(np.abs(np.diag(Q)))), float(np.max(np.diag(T))))
    for name, overlap, given in (("Q", W @ W.T, Q), ("R", W @ W_teacher.T, R), ("T", W_teacher @ W_teacher.T, T)):
        mismatch = float(np.max(np.abs(overlap - given)))
        if mismatch > _CONSISTENCY_TOL * scale:
            raise ValueError(f"the weights do not reproduce {name}: largest difference {mismatch:.3g}")
    stacked = np.concatenate([W, W_teacher])
    _, singular, right = np.linalg.svd(stacked, full_matrices=False)
    _check_resolved_norms(np.einsum("kn,kn->k", W, W), (rank_tol * singular[0]) ** 2)
    basis = right[singular > rank_tol * singular[0]].T
    teacher_singular = np.linalg.svd(W_teacher, compute_uv=False)
    teacher_rank = int(np.sum(teacher_singular > rank_tol * teacher_singular[0]))
    return Embedding(student=W @ basis, teacher=W_teacher @ basis), teacher_rank


def _check_resolved_norms(squared_norms, resolution):
    """A norm below the embedding's resolution cannot be told from zero (and its Hessian blows up)."""
    dead = np.flatnonzero(squared_norms <= max(resolution, TINY))
    if dead.size:
        raise ValueError(
            f"student unit {dead[0]} (row index, from 0) has zero norm (squared norm {squared_norms[dead[0]]:.3g}, "
            "at most rank_tol times the scale of the point): the Hessian is not defined there"
        )


def _embedding(Q, R, T, W, W_teacher, rank_tol):
    if (W is None) != (W_teacher is None):
        raise ValueError("give both W and W_teacher, or neither (the overlaps are then embedded)")
    if W is not None:
        return _weights_embedding(Q, R, T, W, W_teacher, rank_tol)
    _check_resolved_norms(np.diag(Q), rank_tol * np.linalg.eigvalsh(np.block([[Q, R], [R.T, T]]))[-1])
    eigenvalues = np.linalg.eigvalsh(T)
    teacher_rank = int(np.sum(eigenvalues > rank_tol * eigenvalues[-1]))
    return embed_overlaps(Q, R, T, rtol=rank_tol), teacher_rank


#: Largest input dimension of a spectrum: multiplicities d - r are 64-bit integers, and beyond 2^53
#: they are no longer exact as floats.
MAX_DIMENSION = 10**15


def _check_dimension(d, rank):
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise ValueError(f"d must be a whole number, got {d!r}")
    if d > MAX_DIMENSION:
        raise ValueError(f"d = {d} is more than the largest input dimension allowed, {MAX_DIMENSION:.0e}")
    if d < rank:
        raise ValueError(
            f"d = {d} is smaller than the rank r = {rank} of the point (the span of all units); "
            f"the smallest allowed d is {rank}"
        )
    return int(d)


def _blocks(student, teacher):
    """Eigenvalues of the span block and of ``alpha``, and the gradient norm, from embedded rows."""
    span = np.linalg.eigvalsh(_hessian(student, teacher))
    coefficients = gradient_coefficients(
        student @ student.T, student @ teacher.T, teacher @ teacher.T, PairResiduals.from_weights(student, teacher)
    )
    alpha = coefficients.student
    gradient = alpha @ student + coefficients.teacher @ teacher
    return span, np.linalg.eigvalsh(0.5 * (alpha + alpha.T)), float(np.linalg.norm(gradient))


def hessian_spectrum(Q: ArrayLike, R: ArrayLike, T: ArrayLike, d: int, W: ArrayLike | None = None,
                     W_teacher: ArrayLike | None = None, zero_tol: float = 1e-9, rank_tol: float = RANK_TOL) -> HessianSpectrum:
    """Exact spectrum of the Hessian of ``L`` in input dimension ``d``, with multiplicities.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    d : int
        Input dimension, at least ``r = rank([[Q, R], [R^T, T]])``.
    W, W_teacher : array_like, shape (K, n) and (M, n), optional
        Weights with these overlaps. Given, they are used as they are (exact residuals of aligned
        units); otherwise the overlaps are embedded (:func:`embed_overlaps`).
    zero_tol : float, optional
        Eigenvalues with ``|lambda| <= (zero_tol + min(10 |grad L|, 1e-6)) * max(1, max |lambda|)``
        count as zero (the gradient term absorbs the rounding of a point known only to that accuracy).
    rank_tol : float, optional
        Rank tolerance: eigenvalues of ``Omega`` (overlaps), or singular values of the stacked
        weights, at or below ``rank_tol`` times the largest are dropped.

    Returns
    -------
    HessianSpectrum
        A span eigenvalue equal to a bulk eigenvalue is merged with it (multiplicities add) and
        is then not flagged ``bulk``.

    Raises
    ------
    ValueError
        If the overlaps are invalid, ``d`` is not a whole number ``>= r``, the weights do not
        match the overlaps, a unit has zero norm, or a tolerance is out of range.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    rank_tol = check_rank_tol(rank_tol)
    if not (isinstance(zero_tol, (float, int, np.floating, np.integer)) and 0 <= zero_tol < 1):
        raise ValueError(f"zero_tol must be a number in [0, 1), got {zero_tol!r}")
    embedding, teacher_rank = _embedding(Q, R, T, W, W_teacher, rank_tol)
    r = embedding.rank
    d = _check_dimension(d, r)
    span, bulk, gradient_norm = _blocks(embedding.student, embedding.teacher)
    K = embedding.student.shape[0]
    values = np.concatenate([span, bulk])
    multiplicities = np.concatenate([np.ones(K * r, dtype=int), np.full(K, d - r, dtype=int)])
    is_bulk = np.concatenate([np.zeros(K * r, dtype=bool), np.ones(K, dtype=bool)])
    present = multiplicities > 0
    values, multiplicities, is_bulk = values[present], multiplicities[present], is_bulk[present]
    scale = max(1.0, float(np.max(np.abs(values))))
    # Modes that vanish exactly at a critical point (rotations, flat directions) are of the size of
    # the gradient at a point that is critical only to rounding (e.g. embedded from rounded
    # overlaps): widen the zero band by the gradient norm, up to 1e-6 so spectra of non-critical
    # points keep their small negative eigenvalues.
    threshold = scale * (zero_tol + min(10.0 * gradient_norm, _ZERO_BAND_CAP))
    distinct, counts, pure_bulk = _group(values, multiplicities, is_bulk, _GROUP_TOL * scale)

    p = max(r - teacher_rank, 0)
    return HessianSpectrum(
        eigenvalues=distinct,
        multiplicities=counts,
        bulk=pure_bulk,
        span_eigenvalues=span,
        bulk_eigenvalues=bulk,
        rank=r,
        d=d,
        index=int(multiplicities[values < -threshold].sum()),
        n_zero=int(multiplicities[np.abs(values) <= threshold].sum()),
        n_symmetry_zero=int(p * (d - teacher_rank) - p * (p + 1) // 2),
        min_eigenvalue=float(values.min()),
        gradient_norm=gradient_norm,
    )
