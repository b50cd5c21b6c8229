"""Population loss and its gradient, from overlaps ``(Q, R, T)`` or from explicit weights.

Conventions (section 1 of docs/theory.md; the loss is eq. (2.5), its gradient eqs. (2.6)-(2.7)): normalised weights ``u_k = w_k
/ sqrt(d)``, pre-activations
``lambda_k = u_k . x``, ``nu_m = u*_m . x``, loss ``L = 1/2 E[(f - f*)^2]``.

The weight-space gradient lies in the span of the student and teacher vectors:
``grad_{u_k} L = sum_l alpha_kl u_l + sum_m beta_km u*_m`` with (Stein's lemma)

* ``alpha_kl = P(lambda_k > 0, lambda_l > 0) + delta_kl E[(f - f*) delta(lambda_k)]``
* ``beta_km = -P(lambda_k > 0, nu_m > 0)``.

``alpha`` is also the bulk block of the Hessian (directions orthogonal to all units). The
functions without a ``validate`` step broadcast over leading dimensions (batches of points)
and are the hot path; the public entry points check their input once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..kernels.gaussian import TINY, pair_residual, relu_kernel, relu_on_hyperplane_density, step_step_probability
from ..kernels.overlaps import validate_overlaps, validate_weights

__all__ = [
    "PairResiduals",
    "rejection_norms",
    "gram_rejection_norms",
    "GradientCoefficients",
    "loss_from_overlaps",
    "gradient_coefficients",
    "gradient_flow_velocity",
    "gradient_norm_from_overlaps",
    "population_loss",
    "loss_gradient_norm",
    "overlaps_from_weights",
    "loss_from_weights",
    "gradient_from_weights",
]


def _diag(matrix):
    return np.diagonal(matrix, axis1=-2, axis2=-1)


@dataclass(frozen=True)
class PairResiduals:
    """``sqrt(a b - c^2)`` for every pair of units: the sine part of the ReLU kernels.

    From overlaps alone it is the square root of a cancellation, accurate only to about
    ``sqrt(machine epsilon)`` for aligned units (global minima, shared teachers); from weights
    it is exact, which is what Newton polishing and the catalogue need.

    Attributes
    ----------
    student : ndarray, shape (..., K, K)
    cross : ndarray, shape (..., K, M)
    teacher : ndarray, shape (M, M)
    """

    student: np.ndarray
    cross: np.ndarray
    teacher: np.ndarray

    @classmethod
    def from_overlaps(cls, Q, R, T):
        """Residuals computed from the overlaps (batched over leading dimensions of Q, R)."""
        q, t = _diag(Q), _diag(T)
        return cls(
            student=pair_residual(q[..., :, None], q[..., None, :], Q),
            cross=pair_residual(q[..., :, None], t[..., None, :], R),
            teacher=pair_residual(t[:, None], t[None, :], T),
        )

    @classmethod
    def from_weights(cls, W, W_teacher):
        """Residuals to full precision from rows ``W`` (K, n) and ``W_teacher`` (M, n)."""
        return cls(
            student=rejection_norms(W, W),
            cross=rejection_norms(W, W_teacher),
            teacher=rejection_norms(W_teacher, W_teacher),
        )


def rejection_norms(A, B):
    """``|a_i| |b_j - proj_{a_i} b_j| = sqrt(|a|^2 |b|^2 - (a.b)^2)`` for all row pairs, without cancellation;
    batched over leading dimensions."""
    squared = np.einsum("...in,...in->...i", A, A)
    safe = np.where(squared > 0, squared, 1.0)
    coefficient = (A @ np.swapaxes(B, -1, -2)) / safe[..., :, None]
    rejection = B[..., None, :, :] - coefficient[..., :, :, None] * A[..., :, None, :]
    return np.sqrt(squared)[..., :, None] * np.linalg.norm(rejection, axis=-1)


#: Pairs with ``sin^2`` of their angle below this get the rejection formula; above it the Gram formula
#: loses at most ``eps / (2 sin^2) < 1e-11`` relative accuracy.
_ALIGNED_SIN2 = 1e-4


def gram_rejection_norms(A, B):
    """:func:`rejection_norms` from the Gram matrix, the rejection recomputed only for nearly parallel pairs.

    The Gram formula costs ``O(I J)`` after one matrix product; forming every rejection costs
    ``O(I J n)`` per batch entry and made the batched flow's gradient 10x slower at ``K = 16-20``.
    Accurate to ``1e-11`` relative (``rejection_norms`` to rounding, which keeps losses of exact
    global minima at zero): the hot path of the batched flow, not the loss of a catalogue point.
    """
    squared_a = np.einsum("...in,...in->...i", A, A)
    squared_b = np.einsum("...jn,...jn->...j", B, B)
    inner = A @ np.swapaxes(B, -1, -2)
    product = squared_a[..., :, None] * squared_b[..., None, :]
    squared = product - inner * inner
    result = np.sqrt(np.maximum(squared, 0.0))
    close = squared <= _ALIGNED_SIN2 * product
    if A is B:  # a unit with itself: exactly zero, no need to recompute
        diagonal = np.arange(A.shape[-2])
        close[..., diagonal, diagonal] = False
        result[..., diagonal, diagonal] = 0.0
    index = np.nonzero(close)
    if index[0].size:
        batch = result.shape[:-2]
        a = np.broadcast_to(A, batch + A.shape[-2:])[index[:-1]]
        b = np.broadcast_to(B, batch + B.shape[-2:])[index[:-2] + (index[-1],)]
        length = np.einsum("pn,pn->p", a, a)
        safe = np.where(length > 0, length, 1.0)
        rejection = b - (np.einsum("pn,pn->p", a, b) / safe)[:, None] * a
        result[index] = np.sqrt(length) * np.linalg.norm(rejection, axis=-1)
    return result


def loss_from_overlaps(Q, R, T, residuals=None):
    """Population loss ``L = 1/2 E[(f - f*)^2]`` (no validation, batched).

    Parameters
    ----------
    Q : ndarray, shape (..., K, K)
    R : ndarray, shape (..., K, M)
    T : ndarray, shape (M, M)
    residuals : PairResiduals, optional
        Precomputed sine parts (exact ones from weights); computed from the overlaps if absent.

    Returns
    -------
    ndarray, shape (...)
        Clipped at zero: from overlaps alone, aligned units leave a rounding floor of about
        1e-9 that could otherwise show as a tiny negative loss.
    """
    if residuals is None:
        residuals = PairResiduals.from_overlaps(Q, R, T)
    q, t = _diag(Q), _diag(T)
    student = relu_kernel(q[..., :, None], q[..., None, :], Q, residuals.student).sum(axis=(-2, -1))
    cross = relu_kernel(q[..., :, None], t[..., None, :], R, residuals.cross).sum(axis=(-2, -1))
    teacher = relu_kernel(t[:, None], t[None, :], T, residuals.teacher).sum()
    return np.maximum(0.5 * student - cross + 0.5 * teacher, 0.0)


@dataclass(frozen=True)
class GradientCoefficients:
    """Coordinates of the weight-space gradient in the span of the units.

    Attributes
    ----------
    student : ndarray, shape (..., K, K)
        ``alpha``: coefficient of ``u_l`` in ``grad_{u_k} L``; symmetric.
    teacher : ndarray, shape (..., K, M)
        ``beta``: coefficient of ``u*_m`` in ``grad_{u_k} L``.
    """

    student: np.ndarray
    teacher: np.ndarray


def gradient_coefficients(Q, R, T, residuals=None):
    """Gradient of the loss in the basis of student and teacher vectors (no validation, batched).

    Parameters
    ----------
    Q : ndarray, shape (..., K, K)
    R : ndarray, shape (..., K, M)
    T : ndarray, shape (M, M)
    residuals : PairResiduals, optional
        Precomputed sine parts; computed from the overlaps if absent.

    Returns
    -------
    GradientCoefficients
    """
    if residuals is None:
        residuals = PairResiduals.from_overlaps(Q, R, T)
    q, t = _diag(Q)[..., :, None], _diag(T)
    both_fire = step_step_probability(q, _diag(Q)[..., None, :], Q, residuals.student)
    kink = relu_on_hyperplane_density(q, _diag(Q)[..., None, :], Q, residuals.student).sum(axis=-1)
    kink = kink - relu_on_hyperplane_density(q, t, R, residuals.cross).sum(axis=-1)
    K = Q.shape[-1]
    alpha = both_fire + kink[..., :, None] * np.eye(K)
    beta = -step_step_probability(q, t, R, residuals.cross)
    return GradientCoefficients(student=alpha, teacher=beta)


def gradient_flow_velocity(Q, R, T):
    """Time derivatives of ``(Q, R)`` under gradient flow ``du/dt = -grad L`` (batched).

    The arithmetic of :func:`gradient_coefficients` followed by ``dQ = -(Gamma U^T + U Gamma^T)``,
    ``dR = -Gamma U*^T`` (``Gamma`` the gradient rows), in the same order but on the joint
    overlap matrix at once: the ODE calls this hundreds of times per run at small ``K, M``,
    where numpy's per-call overhead, not the arithmetic, sets the cost.

    Parameters
    ----------
    Q : ndarray, shape (..., K, K)
    R : ndarray, shape (..., K, M)
    T : ndarray, shape (M, M)

    Returns
    -------
    dQ : ndarray, shape (..., K, K)
    dR : ndarray, shape (..., K, M)
    """
    Q, R, T = np.asarray(Q, dtype=float), np.asarray(R, dtype=float), np.asarray(T, dtype=float)
    K, M = R.shape[-2:]
    n = K + M
    batch = Q.shape[:-2]
    if R.shape[:-2] != batch:
        batch = np.broadcast_shapes(batch, R.shape[:-2])
    omega = np.empty(batch + (n, n))
    omega[..., :K, :K] = Q
    omega[..., :K, K:] = R
    omega[..., K:, :K] = np.swapaxes(R, -1, -2)
    omega[..., K:, K:] = T
    # Strided view of the diagonal: cheaper than np.diagonal at this size.
    variances = omega.reshape(batch + (n * n,))[..., :: n + 1]
    rows = omega[..., :K, :]  # [Q | R]: each student against every unit
    q = variances[..., :K]
    # Every operation below rounds as gradient_coefficients does, step for step (the results
    # agree bit for bit): near aligned units the residuals are square roots of cancellations,
    # and one ulp there moves the ODE's end point by more than the tests allow.
    residual = q[..., None] * variances[..., None, :]
    residual -= rows * rows
    np.maximum(residual, 0.0, out=residual)
    np.sqrt(residual, out=residual)
    fire = np.arctan2(residual, rows)
    np.subtract(np.pi, fire, out=fire)
    fire /= 2.0 * np.pi  # P(lambda_k > 0, lambda_j > 0) for students j < K, teachers j >= K
    alive = variances > TINY
    if alive.all():
        residual /= (2.0 * np.pi * q)[..., None]
    else:
        alive_q = alive[..., :K, None]
        fire = np.where(alive_q & alive[..., None, :], fire, 0.0)
        residual = np.where(alive_q, residual / (2.0 * np.pi * np.where(alive_q, q[..., None], 1.0)), 0.0)
    kink = residual[..., :K].sum(axis=-1)
    kink -= residual[..., K:].sum(axis=-1)
    fire.reshape(batch + (K * n,))[..., :: n + 1] += kink  # fire[..., :K] is now alpha
    # Row k: -grad_k . [u, u*] = -(alpha [Q | R] + beta [R^T | T]) with beta = -fire[..., K:].
    velocity = fire[..., K:] @ omega[..., K:, :]
    velocity -= fire[..., :K] @ rows
    minus_gradient_dot_student = velocity[..., :K]
    return minus_gradient_dot_student + np.swapaxes(minus_gradient_dot_student, -1, -2), velocity[..., K:]


def gradient_norm_from_overlaps(Q, R, T):
    """Frobenius norm of the gradient with respect to the normalised weights (batched).

    Parameters
    ----------
    Q : ndarray, shape (..., K, K)
    R : ndarray, shape (..., K, M)
    T : ndarray, shape (M, M)

    Returns
    -------
    ndarray, shape (...)
    """
    coefficients = gradient_coefficients(Q, R, T)
    alpha, beta = coefficients.student, coefficients.teacher
    # |Gamma|_F^2 with Gamma = alpha U + beta U*: tr(alpha Q alpha^T + 2 alpha R beta^T + beta T beta^T)
    squared = (
        np.einsum("...kl,...lj,...kj->...", alpha, Q, alpha)
        + 2.0 * np.einsum("...kl,...lm,...km->...", alpha, R, beta)
        + np.einsum("...km,mn,...kn->...", beta, T, beta)
    )
    return np.sqrt(np.maximum(squared, 0.0))


def population_loss(Q: ArrayLike, R: ArrayLike, T: ArrayLike) -> float:
    """Population loss of the student with overlaps ``(Q, R)`` against teacher ``T``.

    Parameters
    ----------
    Q : array_like, shape (K, K)
        Student-student overlaps.
    R : array_like, shape (K, M)
        Student-teacher overlaps.
    T : array_like, shape (M, M)
        Teacher-teacher overlaps.

    Returns
    -------
    float
        ``L = 1/2 E[(f - f*)^2]``.

    Raises
    ------
    ValueError
        If the overlaps are not those of real vectors (see :func:`validate_overlaps`).
    """
    Q, R, T = validate_overlaps(Q, R, T)
    return float(loss_from_overlaps(Q, R, T))


def loss_gradient_norm(Q: ArrayLike, R: ArrayLike, T: ArrayLike) -> float:
    """Frobenius norm of the weight-space gradient at overlaps ``(Q, R, T)``.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the overlaps are not those of real vectors.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    return float(gradient_norm_from_overlaps(Q, R, T))


def overlaps_from_weights(W: ArrayLike, W_teacher: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlaps ``Q = W W^T``, ``R = W W*^T``, ``T = W* W*^T`` of normalised weights.

    Parameters
    ----------
    W : array_like, shape (K, n)
        Student rows ``u_k`` (normalised units, any embedding dimension ``n``).
    W_teacher : array_like, shape (M, n)
        Teacher rows ``u*_m``.

    Returns
    -------
    Q, R, T : ndarray

    Raises
    ------
    ValueError
        If shapes disagree or entries are not finite.
    """
    W, W_teacher = validate_weights(W, W_teacher)
    return W @ W.T, W @ W_teacher.T, W_teacher @ W_teacher.T


def loss_from_weights(W, W_teacher):
    """Population loss of explicit weights.

    Parameters
    ----------
    W : array_like, shape (K, n)
    W_teacher : array_like, shape (M, n)

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite, or the teacher has a unit of norm zero.
    """
    Q, R, T = validate_overlaps(*overlaps_from_weights(W, W_teacher))
    return float(loss_from_overlaps(Q, R, T, PairResiduals.from_weights(*validate_weights(W, W_teacher))))


def gradient_from_weights(W: ArrayLike, W_teacher: ArrayLike) -> np.ndarray:
    """Gradient of the population loss with respect to the student rows.

    Parameters
    ----------
    W : array_like, shape (K, n)
    W_teacher : array_like, shape (M, n)

    Returns
    -------
    ndarray, shape (K, n)

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite, or the teacher has a unit of norm zero.
    """
    W, W_teacher = validate_weights(W, W_teacher)
    Q, R, T = validate_overlaps(W @ W.T, W @ W_teacher.T, W_teacher @ W_teacher.T)
    coefficients = gradient_coefficients(Q, R, T, PairResiduals.from_weights(W, W_teacher))
    return coefficients.student @ W + coefficients.teacher @ W_teacher
