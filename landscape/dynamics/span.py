"""Coordinates in the span of the units: the variables the ODE is integrated in.

The weight-space gradient lies in ``span{u_k, u*_m}`` (docs/theory.md section 4), so gradient
flow in ``d`` dimensions is exactly gradient flow of ``K`` rows ``U = [A | S]`` in ``p = r + K``
dimensions: ``A`` (K, r) the students' coordinates in the teacher span (teacher rows
``V = [V_T | 0]``, ``V_T V_T^T = T``, ``r`` the rank of ``T``), ``S`` (K, K) a factor of the
orthogonal part, ``S S^T = Q - A A^T``. Then ``Q = U U^T`` and ``R = U V^T`` are overlaps of real
vectors at every stage of every Runge-Kutta step: the Gram matrix ``[[Q, R], [R^T, T]]`` is
positive semi-definite by construction, and the pair residuals ``sqrt(a b - c^2)`` are computed
from the vectors (rejections), without the cancellation that costs half the digits near aligned
units. The ``eta^2`` term changes ``Q`` only: it enters as ``dS S^T + S dS^T = lr^2 Phi``, solved
by ``dS = lr^2 Phi S^{-T} / 2`` (``S`` stays invertible: the exact flow only adds the positive
semi-definite ``Phi`` to ``S S^T``).

With ``Phi`` by quadrature (accurate to ~1e-12 absolute, from the overlaps) that division turns
its rounding into noise where ``S`` shrinks onto the teacher, so the quadrature runs on the Schur
complement instead: ``A`` and ``C = S S^T`` (:func:`schur_from_rows`, :func:`split_schur`), with
``dC = -lr (alpha C + C alpha^T) + lr^2 Phi`` (eq. (3.8b) of docs/theory.md), and rows with ``S``
the positive part of ``C`` (:func:`rows_from_schur`) for the residuals.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = []  # internal to the ODE

# The orthogonal part counts as singular below this fraction of the largest variance: the
# eta^2 term then cannot be carried by S (dS = Phi S^-T / 2 is unbounded).
SINGULAR_ORTHOGONAL_PART = 1e-10


def teacher_rows(T, K):
    """Teacher rows ``V`` (M, r + K): a factor of ``T`` (by ``eigh``), then ``K`` zero columns
    (read-only; the same array for the same ``T`` and ``K``)."""
    T = np.ascontiguousarray(T, dtype=float)
    return _teacher_rows(T.tobytes(), T.shape[0], int(K))


@functools.lru_cache(maxsize=64)
def _teacher_rows(T_bytes, M, K):
    # A run asks for them several times (solvers, output); eigh costs more than the rest.
    T = np.frombuffer(T_bytes).reshape(M, M)
    eigenvalues, eigenvectors = np.linalg.eigh(T)
    keep = eigenvalues > 1e-12 * eigenvalues.max()
    factor = eigenvectors[:, keep] * np.sqrt(eigenvalues[keep])
    rows = np.ascontiguousarray(np.hstack([factor, np.zeros((M, K))]))
    rows.setflags(write=False)
    return rows


def student_rows(Q, R, V):
    """Student rows ``U = [A | S]`` (K, p) with ``U U^T = Q``, ``U V^T = R`` to rounding.

    Returns
    -------
    U : ndarray, shape (K, p)
    smallest : float
        Smallest eigenvalue of the orthogonal part ``Q - A A^T``, relative to the largest variance
        (negative values are rounding and were clipped to zero).
    """
    K = Q.shape[0]
    factor = V[:, : V.shape[1] - K]
    # factor = E sqrt(lambda) has orthogonal columns: A = R factor / lambda.
    A = R @ factor / np.sum(factor * factor, axis=0)
    orthogonal = Q - A @ A.T
    orthogonal = 0.5 * (orthogonal + orthogonal.T)
    eigenvalues, eigenvectors = np.linalg.eigh(orthogonal)
    S = eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))
    scale = max(float(np.max(np.diag(Q), initial=0.0)), float(np.max(np.sum(V * V, axis=1))))
    return np.hstack([A, S]), float(eigenvalues[0]) / scale


def schur_from_rows(U, K):
    """The flat Schur-complement state ``(A, C)`` (K r + K K,) of student rows ``U = [A | S]`` (K, p):
    ``A`` (K, r) the coordinates in the teacher span, ``C = S S^T`` (K, K) the orthogonal part."""
    S = U[:, U.shape[1] - K :]
    return np.concatenate([U[:, : U.shape[1] - K].ravel(), (S @ S.T).ravel()])


def split_schur(states, K):
    """``A`` (..., K, r) and ``C`` (..., K, K) of flat Schur-complement states (..., K r + K K)."""
    lead = states.shape[:-1]
    r = (states.shape[-1] - K * K) // K
    return states[..., : K * r].reshape(lead + (K, r)), states[..., K * r :].reshape(lead + (K, K))


def rows_from_schur(A, C):
    """Student rows ``U = [A | S]`` (..., K, r + K) with ``S S^T`` the positive part of ``C``
    (..., K, K): rows whose Gram matrix differs from ``(A, C)`` by ``C``'s negative eigenvalues
    (rounding and truncation error; none in the exact flow)."""
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (C + np.swapaxes(C, -1, -2)))
    S = eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))[..., None, :]
    return np.concatenate([A, S], axis=-1)


def overlaps_from_schur(A, C, V):
    """``Q = A A^T + C`` (..., K, K) and ``R = A V_T^T`` (..., K, M) of a Schur-complement state
    (``V_T`` the teacher rows' span columns)."""
    V_T = V[:, : A.shape[-1]]
    return A @ np.swapaxes(A, -1, -2) + C, A @ V_T.T


def overlaps_from_rows(U, V):
    """``Q = U U^T`` (..., K, K) and ``R = U V^T`` (..., K, M) of student rows (..., K, p)."""
    # R as one matrix product over all rows: broadcast over the leading axes it is a loop of tiny
    # products (ten times slower for a trajectory's few hundred output times).
    R = (U.reshape(-1, U.shape[-1]) @ V.T).reshape(U.shape[:-1] + (V.shape[0],))
    return U @ np.swapaxes(U, -1, -2), R


def rejection_norms(A, B):
    """``|a_i| |b_j - proj_{a_i} b_j|`` (..., I, J) of rows ``A`` (..., I, p), ``B`` (..., J, p):
    ``sqrt(|a|^2 |b|^2 - (a.b)^2)`` without cancellation (batched)."""
    squared = np.einsum("...ip,...ip->...i", A, A)
    safe = np.where(squared > 0, squared, 1.0)
    coefficient = (A @ np.swapaxes(B, -1, -2)) / safe[..., :, None]
    rejection = B[..., None, :, :] - coefficient[..., :, :, None] * A[..., :, None, :]
    return np.sqrt(squared)[..., :, None] * np.linalg.norm(rejection, axis=-1)


def overlap_speed(U, dU, V):
    """``|dQ/dt|_F`` and ``|dR/dt|_F`` combined (Frobenius) from rows ``U`` and their velocity (K, p)."""
    dQ = dU @ U.T
    dQ = dQ + dQ.T
    dR = dU @ V.T
    return float(np.sqrt(np.sum(dQ * dQ) + np.sum(dR * dR)))


_LONG = np.longdouble
_LONG_PI = np.arctan2(_LONG(0.0), _LONG(-1.0))


def _long_kernel_sum(Q, a, b):
    """``sum E[relu relu]`` over the pairs of a block of overlaps ``Q`` (..., I, J) with variances
    ``a`` (..., I), ``b`` (..., J), in extended precision (arc-cosine kernel, docs/theory.md section 2)."""
    product = a[..., :, None] * b[..., None, :]
    residual = np.sqrt(np.maximum(product - Q * Q, 0.0))
    angle = np.arctan2(residual, Q)
    return np.sum(residual + Q * (_LONG_PI - angle), axis=(-2, -1)) / (2.0 * _LONG_PI)


def loss_from_rows(U, V):
    """Population loss (...,) of student rows ``U`` (..., K, p) against teacher rows ``V`` (M, p).

    Near a minimum the loss is a difference of sums of order one: in double precision its rounding
    floor is ~1e-16, where a converging flow's loss still falls, and the computed values jitter
    there (non-monotone, or exactly 0 after clipping). In extended precision (``longdouble``,
    eps ~1e-19 on x86) from the rows the floor is ~1e-18. The pair residuals by
    ``sqrt(a b - c^2)`` lose half the digits near alignment, but the kernel depends on them only
    at second order there (``dk/dr = r^2 / (2 pi (r^2 + c^2))``), so that costs nothing.
    """
    U, V = np.asarray(U, dtype=_LONG), np.asarray(V, dtype=_LONG)
    Q = U @ np.swapaxes(U, -1, -2)
    R = U @ V.T
    T = V @ V.T
    q, t = np.einsum("...kp,...kp->...k", U, U), np.einsum("mp,mp->m", V, V)
    loss = 0.5 * _long_kernel_sum(Q, q, q) - _long_kernel_sum(R, q, t) + 0.5 * _long_kernel_sum(T, t, t)
    return np.maximum(loss, 0.0).astype(float)
