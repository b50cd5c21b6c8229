"""Validation of overlap matrices: the Gram-matrix conditions every layer above relies on.

``Omega = [[Q, R], [R^T, T]]`` is the covariance of the pre-activations (eq. (1.3) of
docs/theory.md), so it must be symmetric positive semi-definite; these checks run once, at the
public functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MAX_UNITS", "RANK_TOL", "Embedding", "check_rank_tol", "check_units", "embed_overlaps", "validate_teacher",
           "validate_overlaps", "validate_weights"]

#: Largest number of student or teacher units the package accepts.
MAX_UNITS = 64
_PSD_TOLERANCE = 1e-9


def check_units(name: str, value: object, maximum: int = MAX_UNITS) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be between 1 and {maximum}, got {value}")
    return int(value)


def _check_finite_matrix(name: str, matrix: ArrayLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    try:
        array = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a matrix of numbers, got {matrix!r}") from None
    if array.ndim != 2 or (shape is not None and array.shape != shape):
        wanted = f"shape {shape}" if shape is not None else "a 2-D matrix"
        raise ValueError(f"{name} must have {wanted}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return array


def _check_psd(name, matrix, scale):
    asymmetry = np.max(np.abs(matrix - matrix.T)) if matrix.size else 0.0
    if asymmetry > 1e-9 * max(scale, 1.0):
        raise ValueError(f"{name} is not symmetric: largest |{name} - {name}^T| is {asymmetry:.3g}")
    smallest = np.linalg.eigvalsh(0.5 * (matrix + matrix.T))[0]
    if smallest < -_PSD_TOLERANCE * max(scale, 1.0):
        raise ValueError(
            f"{name} is not positive semi-definite: smallest eigenvalue {smallest:.3g} "
            "(overlap matrices are Gram matrices, so all eigenvalues must be >= 0)"
        )


def validate_teacher(T: ArrayLike) -> np.ndarray:
    """Check a teacher overlap matrix and return it as a float array.

    Parameters
    ----------
    T : array_like, shape (M, M)
        Teacher-teacher overlaps ``W* W*^T / d``.

    Returns
    -------
    ndarray, shape (M, M)
        The symmetrised matrix.

    Raises
    ------
    ValueError
        If ``T`` is not square, has non-finite entries, more than ``MAX_UNITS`` rows, a
        non-positive diagonal entry, or is not symmetric positive semi-definite.
    """
    T = _check_finite_matrix("T", T)
    if T.shape[0] != T.shape[1] or T.shape[0] == 0:
        raise ValueError(f"T must be a non-empty square matrix, got shape {T.shape}")
    check_units("M (the size of T)", T.shape[0])
    _check_psd("T", T, _checked_teacher_scale(T))
    return 0.5 * (T + T.T)


def _checked_teacher_scale(T):
    """The largest diagonal entry of ``T``, after checking that all are positive."""
    diagonal = np.diag(T)
    if np.any(diagonal <= 0):
        raise ValueError(
            f"T must have a positive diagonal (teacher units of non-zero norm), got {diagonal.min():.3g}"
        )
    return float(diagonal.max())


def validate_overlaps(Q: ArrayLike, R: ArrayLike, T: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check that ``(Q, R, T)`` are the overlaps of real weight vectors.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)

    Returns
    -------
    Q, R, T : ndarray
        Float copies, ``Q`` and ``T`` symmetrised.

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite, ``T`` is invalid, or the joint matrix
        ``[[Q, R], [R^T, T]]`` is not positive semi-definite.
    """
    T = _check_finite_matrix("T", T)
    if T.shape[0] != T.shape[1] or T.shape[0] == 0:
        raise ValueError(f"T must be a non-empty square matrix, got shape {T.shape}")
    check_units("M (the size of T)", T.shape[0])
    teacher_scale = _checked_teacher_scale(T)
    Q = _check_finite_matrix("Q", Q)
    if Q.shape[0] != Q.shape[1] or Q.shape[0] == 0:
        raise ValueError(f"Q must be a non-empty square matrix, got shape {Q.shape}")
    check_units("K (the size of Q)", Q.shape[0])
    R = _check_finite_matrix("R", R, shape=(Q.shape[0], T.shape[0]))
    # Q and T are principal blocks of the joint matrix: one eigenvalue check covers all three
    # (an integration checks its start once, and three checks were a tenth of a short run).
    # Only when it fails is T checked on its own, to name it if it is the invalid one.
    omega = np.empty((Q.shape[0] + T.shape[0],) * 2)
    omega[: Q.shape[0], : Q.shape[0]], omega[: Q.shape[0], Q.shape[0] :] = Q, R
    omega[Q.shape[0] :, : Q.shape[0]], omega[Q.shape[0] :, Q.shape[0] :] = R.T, T
    try:
        _check_psd("the joint overlap matrix [[Q, R], [R^T, T]]", omega,
                   max(teacher_scale, float(np.max(np.diag(Q)))))
    except ValueError:
        _check_psd("T", T, teacher_scale)
        raise
    return 0.5 * (Q + Q.T), R, 0.5 * (T + T.T)


def validate_weights(W: ArrayLike, W_teacher: ArrayLike, batched: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Check student and teacher weights and return them as float arrays.

    Parameters
    ----------
    W : array_like, shape (K, n), or (S, K, n) when ``batched``
        Student weights in normalised units (rows are units); a single (K, n) matrix is accepted
        as a batch of one when ``batched``.
    W_teacher : array_like, shape (M, n)
        Teacher weights.
    batched : bool, optional
        Accept and return a batch of students, shape (S, K, n).

    Returns
    -------
    W : ndarray, shape (K, n) or (S, K, n)
    W_teacher : ndarray, shape (M, n)

    Raises
    ------
    ValueError
        If an entry is not a finite number, an array is empty or the shapes do not match.
    """
    try:
        W = np.array(W, dtype=float)
        W_teacher = np.array(W_teacher, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("W and W_teacher must be arrays of numbers") from None
    if batched and W.ndim == 2:
        W = W[None]
    student_ndim = 3 if batched else 2
    if W.ndim != student_ndim or W_teacher.ndim != 2 or W.shape[-1] != W_teacher.shape[1] or 0 in W.shape + W_teacher.shape:
        wanted = "(S, K, n) or (K, n)" if batched else "(K, n)"
        raise ValueError(
            f"W {wanted} and W_teacher (M, n) must be non-empty arrays with the same number of columns n, "
            f"got shapes {W.shape} and {W_teacher.shape}"
        )
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(W_teacher))):
        raise ValueError("W and W_teacher must not contain NaN or infinite entries")
    return W, W_teacher


# Relative eigenvalue threshold of the Gram matrix below which a direction is not in the span.
RANK_TOL = 1e-9


@dataclass(frozen=True)
class Embedding:
    """Student and teacher rows in ``r`` dimensions with prescribed overlaps.

    Attributes
    ----------
    student : ndarray, shape (K, r)
        Rows ``u_k``; ``student @ student.T`` reproduces ``Q``.
    teacher : ndarray, shape (M, r)
        Rows ``u*_m``; ``student @ teacher.T`` reproduces ``R`` and ``teacher @ teacher.T`` reproduces ``T``.
    """

    student: np.ndarray
    teacher: np.ndarray

    @property
    def rank(self):
        """Dimension ``r`` of the span of all units."""
        return self.student.shape[1]


def check_rank_tol(rank_tol):
    """``rank_tol`` as a float, or ValueError unless it is a number in ``[0, 1)``."""
    if not (isinstance(rank_tol, (float, int, np.floating, np.integer)) and 0 <= rank_tol < 1):
        raise ValueError(f"rank_tol must be a number in [0, 1), got {rank_tol!r}")
    return float(rank_tol)


def embed_overlaps(Q, R, T, rtol=RANK_TOL):
    """Explicit rows whose Gram matrix is ``Omega = [[Q, R], [R^T, T]]``, in ``r = rank(Omega)`` dimensions.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    rtol : float, optional
        Eigenvalues of ``Omega`` at or below ``rtol`` times the largest are dropped (default 1e-9,
        the positive semi-definiteness tolerance of :func:`validate_overlaps`). Overlaps fix the
        weights only to about the square root of their own accuracy near aligned units: when
        the weights are known, use them (:func:`hessian_spectrum` accepts ``W, W_teacher``).

    Returns
    -------
    Embedding
        Columns ordered by decreasing eigenvalue of ``Omega``.

    Raises
    ------
    ValueError
        If the overlaps are invalid (see :func:`validate_overlaps`) or ``rtol`` is not in ``[0, 1)``.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    rtol = check_rank_tol(rtol)
    omega = np.block([[Q, R], [R.T, T]])
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (omega + omega.T))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    keep = eigenvalues > rtol * eigenvalues[0]
    rows = eigenvectors[:, keep] * np.sqrt(eigenvalues[keep])
    K = Q.shape[0]
    return Embedding(student=rows[:K], teacher=rows[K:])
