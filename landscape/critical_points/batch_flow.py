"""Batched gradient flow in weight space: the gradient of ``L`` for many students at once, the
flow towards critical points, and how a start ends (:class:`EndReason`).

Methods
-------
Gradient flow (``lr -> 0``)
    Many starts at once, states of shape ``(S, K, n)`` in the weights of a fixed embedding (the
    teacher rows are fixed, ``n`` is the dimension of the span of all units, so the flow is exact
    for any input dimension). The integrator is the embedded Runge-Kutta 3(2) pair of Bogacki and
    Shampine with one step size per start; the local error is measured *relative to the step*
    (``|error| <= rtol |h f|``), which keeps the step below the stability limit of the stiffest
    mode, so the flow keeps converging instead of oscillating at the limit. A start stops when its
    gradient norm falls below ``flow_tol`` (converged), or already below ``handover_tol`` where the
    exact Hessian has no negative eigenvalue (a basin, not a saddle's plateau: flows into the
    degenerate minima of ``K > M`` converge only like a power of ``1 / t`` at the end), when a unit
    shrinks to norm zero (a dead unit has no gradient and the loss is not differentiable there),
    when the weights blow up, or after ``max_steps`` steps. Each start is integrated on its own by
    the compiled loop of :mod:`landscape.critical_points.flow_kernel` (the batched numpy gradient
    below serves Newton polishing and other callers).

Eqs. (2.6) and (5.1)-(5.3) of docs/theory.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from ..kernels.gaussian import TINY
from ..kernels.overlaps import validate_teacher, validate_weights
from ..model.loss import PairResiduals, gradient_coefficients, gram_rejection_norms, rejection_norms
from ..status import StatusEnum
from .flow_kernel import (
    EVENT_BLOWN,
    EVENT_CHECK,
    EVENT_DEAD,
    EVENT_OUT,
    EVENT_TOL,
    advance,
    negative_gradients,
    sparse_projectors,
)
from .hessian import weight_hessian

__all__ = [
    "EndReason",
    "FlowBatch",
    "batch_gradient",
    "flow_to_critical",
]

#: A unit whose norm falls below this (relative to the largest teacher norm) has died.
DEAD_NORM = 1e-6
#: Weights larger than this (relative to the largest teacher norm) count as divergence.
DIVERGENCE_NORM = 1e6
_CONVEX_TOL = 1e-9
#: Below this gradient norm a hand-over needs only no negative Hessian eigenvalue (the rule before
#: early hand-overs); above it the Hessian must be positive definite (``STRICT_CONVEX``) and the
#: polished end point is certified to lie in the flow's basin (``landscape.critical_points.search``).
SAFE_HANDOVER = 1e-4
#: Smallest Hessian eigenvalue, relative to the largest, of a strictly convex region.
STRICT_CONVEX = 1e-4


class EndReason(StatusEnum):
    """How the search from one start ended; the value is a sentence, ``code`` a short name."""

    CONVERGED = "converged: Newton-polished to a critical point"
    MAX_STEPS = "did not converge: the flow used its maximum number of steps"
    UNIT_DIED = "degenerate: a student unit shrank to norm zero"
    DIVERGED = "diverged: the weights (or overlaps) grew without bound or became NaN"
    POLISH_FAILED = "Newton polishing did not reach the gradient tolerance"


_EVENT_REASONS = {EVENT_BLOWN: EndReason.DIVERGED, EVENT_DEAD: EndReason.UNIT_DIED, EVENT_TOL: EndReason.CONVERGED,
                  EVENT_OUT: EndReason.MAX_STEPS}


# ----------------------------------------------------------------------------- batched gradient


def unchecked_batch_gradient(W, W_teacher, T, teacher_residual, exact=False):
    """Unchecked batched gradient, shape (..., K, n); ``exact``: residuals to rounding (Newton
    polishing), else from the Gram matrix (the flow; accurate to 1e-11, 10x cheaper at K = 16-20)."""
    norms = rejection_norms if exact else gram_rejection_norms
    residuals = PairResiduals(student=norms(W, W), cross=norms(W, W_teacher), teacher=teacher_residual)
    coefficients = gradient_coefficients(W @ np.swapaxes(W, -1, -2), W @ W_teacher.T, T, residuals)
    return coefficients.student @ W + coefficients.teacher @ W_teacher


def check_batch(W, W_teacher):
    """:func:`validate_weights` for a batch of students, with the teacher's Gram matrix checked."""
    W, W_teacher = validate_weights(W, W_teacher, batched=True)
    validate_teacher(W_teacher @ W_teacher.T)
    return W, W_teacher

def batch_gradient(W, W_teacher):
    """Gradient of ``L`` for many students at once, with exact residuals from the weights.

    Parameters
    ----------
    W : array_like, shape (S, K, n)
        Student rows of ``S`` networks.
    W_teacher : array_like, shape (M, n)

    Returns
    -------
    ndarray, shape (S, K, n)

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite or a teacher unit has norm zero.
    """
    W, W_teacher = check_batch(W, W_teacher)
    T = W_teacher @ W_teacher.T
    return unchecked_batch_gradient(W, W_teacher, T, rejection_norms(W_teacher, W_teacher))


# ----------------------------------------------------------------------------- gradient flow


@dataclass(frozen=True)
class FlowBatch:
    """End of a batched gradient flow.

    Attributes
    ----------
    W : ndarray, shape (S, K, n)
        Final weights.
    gradient_norm : ndarray, shape (S,)
    steps : ndarray of int, shape (S,)
        Step attempts (accepted and rejected) per start.
    reasons : tuple of EndReason
        ``CONVERGED`` means the gradient norm fell below the flow tolerance (not yet polished).
    """

    W: np.ndarray
    gradient_norm: np.ndarray
    steps: np.ndarray
    reasons: tuple

    @property
    def converged(self):
        """Boolean array, True where the flow reached its tolerance."""
        return np.array([reason is EndReason.CONVERGED for reason in self.reasons], dtype=bool)


# Bogacki-Shampine 3(2): third-order solution weights and (third minus second order) error weights.
_BS_WEIGHTS = (2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0)
_BS_ERROR = (2.0 / 9.0 - 7.0 / 24.0, 1.0 / 3.0 - 1.0 / 4.0, 4.0 / 9.0 - 1.0 / 3.0, -1.0 / 8.0)


def project(W, projector):
    """Apply one projector (P, P) to every start, or one per start (S, P, P)."""
    if projector is None:
        return W
    flat = W.reshape(W.shape[0], -1)
    if projector.ndim == 2:
        return (flat @ projector.T).reshape(W.shape)
    return np.einsum("sij,sj->si", projector, flat).reshape(W.shape)


def row_norms(W):
    return np.sqrt(np.einsum("...kn,...kn->...k", W, W))


def restricted_hessian(W, W_teacher, projector):
    """Weight Hessian, restricted to the range of ``projector`` (the subspace of a projected flow) if given."""
    hessian = weight_hessian(W, W_teacher)
    if projector is not None:
        basis = subspace_basis(projector)
        hessian = basis.T @ hessian @ basis
    return hessian


def locally_convex(W, W_teacher, projector, strict=False):
    """No descent direction in the Hessian; ``strict``: positive definite by a margin (no flat direction).

    Decided by whether a Cholesky factorisation of the shifted Hessian exists (a sixth of the cost
    of its eigenvalues at ``K = 20``): ``H + tol max(1, lambda_max) I`` without ``strict``,
    ``H - STRICT_CONVEX lambda_max I`` with it, ``lambda_max`` bounded from the side that makes
    the test stricter (the largest diagonal entry from below, the largest absolute row sum from above).
    """
    hessian = restricted_hessian(W, W_teacher, projector)
    if strict:
        shift = -STRICT_CONVEX * float(np.abs(hessian).sum(axis=1).max())
    else:
        shift = _CONVEX_TOL * max(1.0, float(np.diag(hessian).max()))
    _, info = lapack.dpotrf(hessian + shift * np.eye(len(hessian)))
    return info == 0


def rk_step(Y, f1, h, slope, projector, rtol):
    """One Bogacki-Shampine 3(2) step per start: new states, their slopes, error ratios (<= 1 to accept)."""
    f2 = slope(Y + 0.5 * h * f1)
    f3 = slope(Y + 0.75 * h * f2)
    Y3 = project(Y + h * (_BS_WEIGHTS[0] * f1 + _BS_WEIGHTS[1] * f2 + _BS_WEIGHTS[2] * f3), projector)
    f4 = slope(Y3)
    error = h * (_BS_ERROR[0] * f1 + _BS_ERROR[1] * f2 + _BS_ERROR[2] * f3 + _BS_ERROR[3] * f4)
    count = Y.shape[0]
    size = rtol * np.linalg.norm((h * f1).reshape(count, -1), axis=1)
    ratio = np.linalg.norm(error.reshape(count, -1), axis=1) / np.maximum(size, TINY)
    return Y3, f4, np.where(np.isfinite(ratio), ratio, 1e10)


def flow_batch(W, W_teacher, tol, max_steps, rtol, projector, handover_tol, step_decades=None):
    """Unchecked batched flow; see :func:`flow_to_critical`.

    Every start is integrated on its own by the compiled :func:`landscape.critical_points.flow_kernel.advance`
    until an event; here the hand-over checks (the Hessian) and the end reasons. ``step_decades``
    (int array of 32), if given, counts the step attempts by decade of the gradient norm (entry
    ``16 + floor(log10 |grad|)``; for the profiler).
    """
    scale = float(np.sqrt(np.max(np.einsum("mn,mn->m", W_teacher, W_teacher))))
    S, K, n = W.shape
    W = np.ascontiguousarray(project(np.array(W, dtype=float), projector))
    teacher = np.ascontiguousarray(W_teacher, dtype=float)
    velocity = np.empty_like(W)
    negative_gradients(W, teacher, velocity)
    projectors = sparse_projectors(projector, K * n)
    decades = np.zeros(32, dtype=np.int64) if step_decades is None else step_decades
    reasons = np.full(S, None, dtype=object)
    steps, dt = np.zeros(S, dtype=np.int64), np.full(S, 0.05)
    next_check = np.full(S, handover_tol)
    events, gradient_norm = np.zeros(S, dtype=np.int64), np.zeros(S)
    active = np.arange(S)
    while active.size:
        advance(W, velocity, dt, steps, next_check, active, events, gradient_norm, tol, max_steps, rtol, teacher,
                projectors, projector is not None, scale, decades)
        going_on = []
        for start in active:
            if events[start] != EVENT_CHECK:
                reasons[start] = _EVENT_REASONS[events[start]]
                continue
            # Hand over to Newton early only where the Hessian shows no descent direction (a basin,
            # not the plateau of a saddle): flows into degenerate minima (split units, K > M)
            # converge like a power of 1 / t at the end, and Newton's method finishes them faster.
            # Checked once per half-decade of the gradient norm: a start not yet convex at one check
            # (still turning off a saddle, or creeping along a flat direction) is checked again.
            next_check[start] = 0.3 * gradient_norm[start]
            strict = gradient_norm[start] >= SAFE_HANDOVER
            own = projector if projector is None or projector.ndim == 2 else projector[start]
            if locally_convex(W[start], W_teacher, own, strict):
                reasons[start] = EndReason.CONVERGED
            elif steps[start] >= max_steps:
                reasons[start] = EndReason.MAX_STEPS
            else:
                going_on.append(start)
        active = np.array(going_on, dtype=np.int64)
    gradient_norm = np.linalg.norm(velocity.reshape(S, -1), axis=1)
    return FlowBatch(W=W, gradient_norm=gradient_norm, steps=steps, reasons=tuple(reasons))


def check_positive(name, value, integer=False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not np.isfinite(value) or value <= 0:
        what = "a positive whole number" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def check_projector(projector, starts, size):
    if projector is None:
        return None
    projector = np.asarray(projector, dtype=float)
    if projector.shape not in ((size, size), (starts, size, size)) or not np.all(np.isfinite(projector)):
        raise ValueError(
            f"projector must be a finite ({size}, {size}) matrix or one per start ({starts}, {size}, {size}), "
            f"got shape {projector.shape}"
        )
    return projector


def flow_to_critical(W0, W_teacher, tol=1e-6, max_steps=20_000, rtol=1e-2, projector=None, handover_tol=None):
    """Gradient flow ``du/dt = -grad L`` from many starts at once, until the gradient is small.

    Parameters
    ----------
    W0 : array_like, shape (S, K, n)
        Initial student rows (normalised units) of ``S`` starts.
    W_teacher : array_like, shape (M, n)
        Teacher rows, shared by all starts.
    tol : float, optional
        Stop a start when its gradient norm (Frobenius, over all ``K n`` entries) is below this.
    max_steps : int, optional
        Step attempts per start before giving up.
    rtol : float, optional
        Local error per step relative to the step (see the module notes).
    projector : array_like, shape (K n, K n) or (S, K n, K n), optional
        Projection applied to the states after each step (flows in a fixed-point subspace),
        one for all starts or one per start.
    handover_tol : float, optional
        Also stop (as converged) a start whose gradient norm is below this where the Hessian has
        no negative eigenvalue, so that Newton's method finishes the slow end of flows into
        degenerate minima. Default: ``tol`` (no early stop).

    Returns
    -------
    FlowBatch

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite, or a parameter is not positive.
    """
    W0, W_teacher = check_batch(W0, W_teacher)
    tol, rtol = check_positive("tol", tol), check_positive("rtol", rtol)
    max_steps = check_positive("max_steps", max_steps, integer=True)
    projector = check_projector(projector, W0.shape[0], W0.shape[1] * W0.shape[2])
    handover_tol = tol if handover_tol is None else max(check_positive("handover_tol", handover_tol), tol)
    return flow_batch(W0, W_teacher, tol, max_steps, rtol, projector, handover_tol)


# Bases of recent projectors by a digest of their bytes: the ansatz search asks for the basis of one of
# ~15 projectors at every hand-over check and Newton polish of its ~60 flows, and the SVD of a
# 400 x 400 projector took a third of the ansatz search at K = M = 20 (284 of them).
_BASES: dict = {}
_BASES_SIZE = 32


def subspace_basis(projector):
    """Orthonormal basis of the range of a (possibly oblique) projector (read-only; recent ones are cached)."""
    projector = np.ascontiguousarray(projector, dtype=float)
    key = (projector.shape, hashlib.blake2b(projector.tobytes(), digest_size=16).digest())
    if key not in _BASES:
        left, singular, _ = np.linalg.svd(projector)
        basis = left[:, singular > 0.5]
        basis.flags.writeable = False
        if len(_BASES) >= _BASES_SIZE:
            _BASES.pop(next(iter(_BASES)))
        _BASES[key] = basis
    return _BASES[key]
