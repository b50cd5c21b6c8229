"""Critical points of the population loss: batched gradient flow, Newton polishing, saddles,
fixed points of the finite-learning-rate ODE, and canonical forms modulo the symmetries.

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
    when the weights blow up, or after ``max_steps`` steps.
Newton polishing
    From the end of the flow, Newton's method on ``grad L = 0`` in weight space with the exact
    Hessian (:func:`landscape.hessian.weight_hessian`) inverted on the eigenvectors whose eigenvalue
    is not negligible (a pseudo-inverse: flat directions and rotations are left alone), with a
    backtracking line search on the gradient norm (steps that would shrink a unit below half its
    length are cut back), down to ``|grad L| < tol`` (default 1e-10). Newton converges to nearby
    critical points of any index, minima and saddles alike. Units closer than 0.2 rad are first
    put on one ray with their shares kept (the angle between split units is a quartic, nearly
    flat direction where plain Newton steps are unreliable); that result is used if it is a
    critical point no higher than the flow's end.
Parallel work
    Starts go in chunks of fixed size (results never depend on the number of workers), shared
    between this process and a forked child that sends its results through a pipe (a thread pool
    inside multi-threaded hosts, where forking is unsafe; serial in daemonic processes such as
    Dask workers). OpenBLAS is held to one thread meanwhile: the matrices are tiny, and BLAS
    threads in two processes on two cores made the search several times slower.
Saddles: flows in fixed-point subspaces of symmetric ansatzes
    For a teacher invariant under all permutations (orthonormal, equicorrelated) the group
    ``Delta(S_b1 x ... x S_bp)`` -- permuting students and the teacher units they are paired with
    simultaneously inside blocks of sizes ``b1 + ... + bp = min(K, M)`` (extra students form one
    more block) -- leaves ``L`` invariant. By equivariance, gradient flow started in its fixed-point
    subspace stays there and ends at a critical point of the restricted problem, which is a
    critical point of the full problem (symmetric criticality) and usually a saddle of it. The
    states are projected back onto the subspace after every step (rounding would otherwise let a
    saddle's unstable directions take over), and the end points are Newton-polished.
Finite learning rate (``eta2`` on)
    Fixed points of the full ODE ``ode_velocity(Q, R, T, lr, True, noise)``: an adaptive
    Runge-Kutta 3(2) flow in ``(Q, R)`` (one start at a time, the four-point term is not batched;
    before each evaluation the Schur complement ``Q - R T^+ R^T`` is clipped to be positive
    semi-definite, since Runge-Kutta stages may leave the set of Gram matrices by rounding), then
    Gauss-Newton on the right-hand side. The Newton unknowns are the weights of an embedding of
    ``(Q, R)`` rather than ``(Q, R)`` itself: where units align the velocity is not differentiable
    in ``(Q, R)`` (it behaves like a square root of the distance to the boundary of the Gram-matrix
    cone) but is smooth in the weights. The Jacobian is computed by finite differences in the
    weights (forward differences, step ``1e-7``), and the minimum-norm step ignores rotations.
Canonical forms, deduplication, orbit sizes
    A point ``(Q, R)`` with teacher ``T`` is the complete graph on ``K + M`` vertices (students and
    teachers) with edge colours ``Omega = [[Q, R], [R^T, T]]`` (values equal within ``tol`` share a
    colour). The symmetries of the problem -- permutations of the students and the permutations of
    the teachers that leave ``T`` invariant -- are the colour-preserving relabellings of this graph.
    Two points are the same orbit if an isomorphism exists (colour refinement plus backtracking
    search, exact up to ``tol``); the orbit size is ``K! |Aut(T)| / |Aut(Omega)|`` with the
    automorphism groups counted exactly along a stabiliser chain. The canonical form orders units
    by their refined colours, individualising the first vertex of the smallest ambiguous cell
    until every cell is a single unit; deduplication does not rely on it (it uses the isomorphism
    test).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import math
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .fourpoint import _finite_lr_expectation
from .hessian import weight_hessian
from .loss import PairResiduals, gradient_coefficients, loss_from_overlaps
from .ode import ode_velocity
from .teacher import validate_overlaps, validate_teacher

__all__ = [
    "EndReason",
    "FlowBatch",
    "PolishResult",
    "StartResults",
    "FixedPointResult",
    "CanonicalForm",
    "batch_gradient",
    "flow_to_critical",
    "newton_polish",
    "search_critical_points",
    "integer_partitions",
    "ansatz_projector",
    "plateau_projector",
    "ansatz_starts",
    "ode_fixed_point",
    "ode_fixed_points",
    "ode_residual",
    "same_orbit",
    "canonical_form",
    "automorphism_count",
    "orbit_size",
]

#: A unit whose norm falls below this (relative to the largest teacher norm) has died.
DEAD_NORM = 1e-6
#: Weights larger than this (relative to the largest teacher norm) count as divergence.
DIVERGENCE_NORM = 1e6
#: Starts per chunk of the batched search: fixed, so results never depend on the number of workers.
CHUNK_SIZE = 64
_RCOND = 1e-9
_CONVEX_TOL = 1e-9
# Units closer than this angle (radians) are tried on one ray when plain Newton polishing fails.
_RAY_ANGLE = 0.2
_TINY = 1e-300


class EndReason(enum.Enum):
    """How the search from one start ended; the value is a sentence, ``code`` a short name."""

    CONVERGED = "converged: Newton-polished to a critical point"
    MAX_STEPS = "did not converge: the flow used its maximum number of steps"
    UNIT_DIED = "degenerate: a student unit shrank to norm zero"
    DIVERGED = "diverged: the weights (or overlaps) grew without bound or became NaN"
    POLISH_FAILED = "Newton polishing did not reach the gradient tolerance"

    @property
    def code(self):
        """Short machine-readable name, e.g. ``unit_died``."""
        return self.name.lower()


# ----------------------------------------------------------------------------- batched gradient


def _rejection_norms(A, B):
    """``sqrt(|a|^2 |b|^2 - (a.b)^2)`` for all row pairs, batched over leading dims, without cancellation."""
    squared = np.einsum("...in,...in->...i", A, A)
    safe = np.where(squared > 0, squared, 1.0)
    coefficient = (A @ np.swapaxes(B, -1, -2)) / safe[..., :, None]
    rejection = B[..., None, :, :] - coefficient[..., :, :, None] * A[..., :, None, :]
    return np.sqrt(squared)[..., :, None] * np.linalg.norm(rejection, axis=-1)


def _gradient(W, W_teacher, T, teacher_residual):
    """Unchecked batched gradient, shape (..., K, n)."""
    residuals = PairResiduals(student=_rejection_norms(W, W), cross=_rejection_norms(W, W_teacher),
                              teacher=teacher_residual)
    coefficients = gradient_coefficients(W @ np.swapaxes(W, -1, -2), W @ W_teacher.T, T, residuals)
    return coefficients.student @ W + coefficients.teacher @ W_teacher


def _check_batch(W, W_teacher):
    try:
        W = np.array(W, dtype=float)
        W_teacher = np.array(W_teacher, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("W and W_teacher must be arrays of numbers") from None
    if W.ndim == 2:
        W = W[None]
    if W.ndim != 3 or W_teacher.ndim != 2 or W.shape[2] != W_teacher.shape[1] or 0 in W.shape + W_teacher.shape:
        raise ValueError(
            "W must have shape (S, K, n) (or (K, n)) and W_teacher (M, n) with the same n, "
            f"got {W.shape} and {W_teacher.shape}"
        )
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(W_teacher))):
        raise ValueError("W and W_teacher must not contain NaN or infinite entries")
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
    W, W_teacher = _check_batch(W, W_teacher)
    T = W_teacher @ W_teacher.T
    return _gradient(W, W_teacher, T, _rejection_norms(W_teacher, W_teacher))


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


def _project(W, projector):
    """Apply one projector (P, P) to every start, or one per start (S, P, P)."""
    if projector is None:
        return W
    flat = W.reshape(W.shape[0], -1)
    if projector.ndim == 2:
        return (flat @ projector.T).reshape(W.shape)
    return np.einsum("sij,sj->si", projector, flat).reshape(W.shape)


def _row_norms(W):
    return np.sqrt(np.einsum("...kn,...kn->...k", W, W))


def _convex(W, W_teacher, projector):
    """No descent direction in the Hessian (restricted to the subspace of a projected flow)."""
    hessian = weight_hessian(W, W_teacher)
    if projector is not None:
        basis = _subspace_basis(projector)
        hessian = basis.T @ hessian @ basis
    eigenvalues = np.linalg.eigvalsh(hessian)
    return eigenvalues[0] > -_CONVEX_TOL * max(1.0, eigenvalues[-1])


def _rk_step(Y, f1, h, slope, projector, rtol):
    """One Bogacki-Shampine 3(2) step per start: new states, their slopes, error ratios (<= 1 to accept)."""
    f2 = slope(Y + 0.5 * h * f1)
    f3 = slope(Y + 0.75 * h * f2)
    Y3 = _project(Y + h * (_BS_WEIGHTS[0] * f1 + _BS_WEIGHTS[1] * f2 + _BS_WEIGHTS[2] * f3), projector)
    f4 = slope(Y3)
    error = h * (_BS_ERROR[0] * f1 + _BS_ERROR[1] * f2 + _BS_ERROR[2] * f3 + _BS_ERROR[3] * f4)
    count = Y.shape[0]
    size = rtol * np.linalg.norm((h * f1).reshape(count, -1), axis=1)
    ratio = np.linalg.norm(error.reshape(count, -1), axis=1) / np.maximum(size, _TINY)
    return Y3, f4, np.where(np.isfinite(ratio), ratio, 1e10)


def _flow(W, W_teacher, tol, max_steps, rtol, projector, handover_tol):
    """Unchecked batched flow; see :func:`flow_to_critical`."""
    T = W_teacher @ W_teacher.T
    teacher_residual = _rejection_norms(W_teacher, W_teacher)
    scale = float(np.sqrt(np.max(np.diag(T))))
    S = W.shape[0]
    W = _project(W.copy(), projector)
    reasons = np.full(S, None, dtype=object)
    steps, checked, dt = np.zeros(S, dtype=int), np.zeros(S, dtype=bool), np.full(S, 0.05)

    def slope(Y):
        return -_gradient(Y, W_teacher, T, teacher_residual)

    def own(projectors, starts):
        return projectors if projectors is None or projectors.ndim == 2 else projectors[starts]

    velocity, active = slope(W), np.arange(S)
    while active.size:
        norms = _row_norms(W[active])
        gradient_norm = np.linalg.norm(velocity[active].reshape(active.size, -1), axis=1)
        blown = ~np.isfinite(gradient_norm) | (norms.max(axis=1) > DIVERGENCE_NORM * scale)
        dead = (norms.min(axis=1) < DEAD_NORM * scale) & ~blown
        done = (gradient_norm < tol) & ~dead & ~blown
        # Hand over to Newton early only where the Hessian shows no descent direction (a basin,
        # not the plateau of a saddle): flows into degenerate minima (split units, K > M)
        # converge like a power of 1 / t at the end, and Newton's method finishes them faster.
        for position in np.flatnonzero((gradient_norm < handover_tol) & ~done & ~dead & ~blown & ~checked[active]):
            start = active[position]
            checked[start] = True
            done[position] = _convex(W[start], W_teacher, own(projector, start))
        out = (steps[active] >= max_steps) & ~done & ~dead & ~blown
        for mask, reason in ((blown, EndReason.DIVERGED), (dead, EndReason.UNIT_DIED),
                             (done, EndReason.CONVERGED), (out, EndReason.MAX_STEPS)):
            reasons[active[mask]] = reason
        active = active[~(blown | dead | done | out)]
        if not active.size:
            break
        Y3, f4, ratio = _rk_step(W[active], velocity[active], dt[active][:, None, None], slope,
                                 own(projector, active), rtol)
        accept = ratio <= 1.0
        W[active[accept]], velocity[active[accept]] = Y3[accept], f4[accept]
        steps[active] += 1
        dt[active] *= np.clip(0.9 * np.maximum(ratio, 1e-10) ** (-1.0 / 3.0), 0.2, 5.0)
    gradient_norm = np.linalg.norm(velocity.reshape(S, -1), axis=1)
    return FlowBatch(W=W, gradient_norm=gradient_norm, steps=steps, reasons=tuple(reasons))


def _check_positive(name, value, integer=False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not np.isfinite(value) or value <= 0:
        what = "a positive whole number" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def _check_projector(projector, starts, size):
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
    W0, W_teacher = _check_batch(W0, W_teacher)
    tol, rtol = _check_positive("tol", tol), _check_positive("rtol", rtol)
    max_steps = _check_positive("max_steps", max_steps, integer=True)
    projector = _check_projector(projector, W0.shape[0], W0.shape[1] * W0.shape[2])
    handover_tol = tol if handover_tol is None else max(_check_positive("handover_tol", handover_tol), tol)
    return _flow(W0, W_teacher, tol, max_steps, rtol, projector, handover_tol)


# ----------------------------------------------------------------------------- Newton polishing


@dataclass(frozen=True)
class PolishResult:
    """Result of Newton polishing one point.

    Attributes
    ----------
    W : ndarray, shape (K, n)
    gradient_norm : float
    iterations : int
    success : bool
        True if the gradient norm is below the tolerance.
    status : EndReason
        ``CONVERGED``, ``POLISH_FAILED`` or ``UNIT_DIED``.
    message : str
    """

    W: np.ndarray
    gradient_norm: float
    iterations: int
    success: bool
    status: EndReason
    message: str


def _subspace_basis(projector):
    """Orthonormal basis of the range of a (possibly oblique) projector."""
    left, singular, _ = np.linalg.svd(projector)
    return left[:, singular > 0.5]


def _newton_step(W, W_teacher, gradient, basis):
    """Pseudo-inverse Newton step, restricted to the span of ``basis`` (columns) if given."""
    hessian = weight_hessian(W, W_teacher)
    g = gradient.ravel()
    if basis is not None:
        hessian, g = basis.T @ hessian @ basis, basis.T @ g
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    keep = np.abs(eigenvalues) > _RCOND * max(np.max(np.abs(eigenvalues)), _TINY)
    step = -(eigenvectors[:, keep] @ ((eigenvectors[:, keep].T @ g) / eigenvalues[keep]))
    return (step if basis is None else basis @ step).reshape(W.shape)


def _line_search(W, step, norm, gradient_at):
    """Backtracking on the gradient norm; None if no step length lowers it."""
    shortest = _row_norms(W).min()
    for _ in range(30):
        trial = W + step
        # Quasi-flat directions (split units, K > M) give long Newton steps; one that would
        # shrink a unit to a fraction of its length is cut back instead of killing the unit.
        if _row_norms(trial).min() > 0.5 * shortest:
            gradient = gradient_at(trial)
            trial_norm = float(np.linalg.norm(gradient))
            if trial_norm < norm:
                return trial, gradient, trial_norm
        step = 0.5 * step
    return None


def _polish(W, W_teacher, tol, max_iter, projector):
    """Unchecked :func:`newton_polish`."""
    T = W_teacher @ W_teacher.T
    teacher_residual = _rejection_norms(W_teacher, W_teacher)
    dead = DEAD_NORM * float(np.sqrt(np.max(np.diag(T))))

    def gradient_at(X):
        return _gradient(X, W_teacher, T, teacher_residual)

    W = np.array(W, dtype=float)
    basis = None if projector is None else _subspace_basis(projector)
    gradient = gradient_at(W)
    norm, iterations = float(np.linalg.norm(gradient)), 0
    while norm >= tol and iterations < max_iter and _row_norms(W).min() >= dead:
        iterations += 1
        found = _line_search(W, _newton_step(W, W_teacher, gradient, basis), norm, gradient_at)
        if found is None:
            break
        W, gradient, norm = found
    if _row_norms(W).min() < dead:
        return PolishResult(W, norm, iterations, False, EndReason.UNIT_DIED,
                            f"{EndReason.UNIT_DIED.value} during Newton polishing")
    if norm < tol:
        return PolishResult(W, norm, iterations, True, EndReason.CONVERGED,
                            f"gradient norm {norm:.2e} < {tol:.0e} after {iterations} Newton steps")
    return PolishResult(W, norm, iterations, False, EndReason.POLISH_FAILED,
                        f"{EndReason.POLISH_FAILED.value}: gradient norm {norm:.2e} after {iterations} steps")


def _polish_on_rays(W, W_teacher, tol, max_iter):
    """Newton's method with nearly parallel units put on one ray, keeping their shares.

    With ``K > M`` flows end near continua of minima where units split a ray; the angle between
    them is a quartic direction (a vanishing Hessian eigenvalue), and plain Newton steps there can
    collapse a unit. Here the units of each group are set to ``a_i S`` (``S`` the sum of the
    group, ``a_i`` the shares) and stay so: the gradient of units on one ray is one vector ``g``,
    so a critical point of this subspace has ``g = 0``, a critical point of ``L``. Returns None
    if no units are nearly parallel, or if the result is not a critical point below the loss of
    ``W`` (then it cannot be where the flow from ``W`` ends).
    """
    from scipy.sparse.csgraph import connected_components

    norms = _row_norms(W)
    directions = W / np.maximum(norms, _TINY)[:, None]
    count, labels = connected_components(directions @ directions.T > np.cos(_RAY_ANGLE), directed=False)
    if count == W.shape[0]:
        return None
    rays, blocks = np.zeros_like(W), np.zeros((W.shape[0], W.shape[0]))
    for label in range(count):
        group = np.flatnonzero(labels == label)
        shares = norms[group] / norms[group].sum()
        rays[group] = shares[:, None] * W[group].sum(axis=0)
        blocks[np.ix_(group, group)] = np.outer(shares, shares) / np.dot(shares, shares)
    polished = _polish(rays, W_teacher, tol, max_iter, np.kron(blocks, np.eye(W.shape[1])))
    T = W_teacher @ W_teacher.T
    downhill = _loss(polished.W, W_teacher, T) <= _loss(W, W_teacher, T) + 1e-12
    return polished if polished.success and downhill else None


def _loss(W, W_teacher, T):
    residuals = PairResiduals.from_weights(W, W_teacher)
    return float(loss_from_overlaps(W @ W.T, W @ W_teacher.T, T, residuals))


def newton_polish(W, W_teacher, tol=1e-10, max_iter=40, projector=None):
    """Newton's method on ``grad L = 0`` from a point near a critical point.

    Parameters
    ----------
    W : array_like, shape (K, n)
    W_teacher : array_like, shape (M, n)
    tol : float, optional
        Target gradient norm.
    max_iter : int, optional
    projector : array_like, shape (K n, K n), optional
        Projection applied to every Newton step (stay in a fixed-point subspace).

    Returns
    -------
    PolishResult
        Failures are reported in ``status``, never raised.

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite or a parameter is out of range.
    """
    W3, W_teacher = _check_batch(W, W_teacher)
    if np.ndim(W) != 2:
        raise ValueError(f"W must be one point of shape (K, n), got shape {np.shape(W)}")
    tol = _check_positive("tol", tol)
    max_iter = _check_positive("max_iter", max_iter, integer=True)
    projector = _check_projector(projector, 1, W3.shape[1] * W3.shape[2])
    projector = None if projector is None else projector.reshape(W3.shape[1] * W3.shape[2], -1)
    return _polish(W3[0], W_teacher, tol, max_iter, projector)


# ----------------------------------------------------------------------------- many starts


@dataclass(frozen=True)
class StartResults:
    """Flow and Newton polishing from many starts.

    Attributes
    ----------
    W : ndarray, shape (S, K, n)
        Final weights: polished where the start converged, the last flow state otherwise.
    W_teacher : ndarray, shape (M, n)
    reasons : tuple of EndReason
        One per start.
    gradient_norm : ndarray, shape (S,)
        Final gradient norm.
    flow_steps, newton_iterations : ndarray of int, shape (S,)
    success : bool
        True if every start converged.
    message : str
    """

    W: np.ndarray
    W_teacher: np.ndarray
    reasons: tuple
    gradient_norm: np.ndarray
    flow_steps: np.ndarray
    newton_iterations: np.ndarray
    success: bool
    message: str

    @property
    def converged(self):
        """Boolean array: starts that ended at a polished critical point."""
        return np.array([reason is EndReason.CONVERGED for reason in self.reasons], dtype=bool)

    @property
    def failures(self):
        """``{reason code: count}`` for the starts that did not converge."""
        counts = {}
        for reason in self.reasons:
            if reason is not EndReason.CONVERGED:
                counts[reason.code] = counts.get(reason.code, 0) + 1
        return counts


def _search_chunk(W0, projector, W_teacher, flow_tol, tol, max_steps, rtol, handover_tol):
    """Flow then polish one chunk of starts (a module-level function, so worker processes can run it)."""
    flow = _flow(W0, W_teacher, flow_tol, max_steps, rtol, projector, handover_tol)
    W = flow.W.copy()
    reasons = list(flow.reasons)
    gradient_norm = flow.gradient_norm.copy()
    iterations = np.zeros(len(reasons), dtype=int)
    for start in np.flatnonzero(flow.converged):
        own = projector if projector is None or projector.ndim == 2 else projector[start]
        polished = _polish_on_rays(W[start], W_teacher, tol, 40) if own is None else None
        if polished is None:
            polished = _polish(W[start], W_teacher, tol, 40, own)
        W[start], gradient_norm[start], iterations[start] = polished.W, polished.gradient_norm, polished.iterations
        reasons[start] = polished.status
    return W, tuple(reasons), gradient_norm, flow.steps, iterations


def _openblas_controls():
    """``(get, set)`` thread-count functions of every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"), ("openblas_", "")):
            getter = getattr(library, f"{prefix}get_num_threads{suffix}", None)
            setter = getattr(library, f"{prefix}set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                controls.append((getter, setter))
                break
    return controls


@contextlib.contextmanager
def _single_threaded_blas():
    """Run OpenBLAS on one thread: the linear algebra here is on tiny matrices, where BLAS threads
    only add overhead, and with one process per core they oversubscribe the machine (measured
    several times slower). The previous thread counts are restored afterwards."""
    controls = _openblas_controls()
    previous = [getter() for getter, _ in controls]
    for _, setter in controls:
        setter(1)
    try:
        yield
    finally:
        for (_, setter), count in zip(controls, previous):
            setter(count)


def _worker_initialiser():
    for _, setter in _openblas_controls():
        setter(1)


def _worker_count(workers, n_chunks):
    if workers is not None:
        return max(1, min(_check_positive("workers", workers, integer=True), n_chunks))
    if n_chunks < 2 or multiprocessing.current_process().daemon:
        return 1  # daemonic processes (e.g. Dask workers) may not start children
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(2, cores, n_chunks))


def _forked_children(function, chunks, arguments, workers):
    """Fork ``workers - 1`` children; child ``c`` (``1 <= c < workers``) computes chunks ``c, c + workers,
    ...`` and sends ``(number, result, error)`` through a pipe, then exits (the parent takes
    ``0, workers, ...``). Returns ``(pids, reader)``.

    Plain ``os.fork`` with a pipe, not a process pool: no helper threads in the parent (a pool's
    manager thread once deadlocked here) and no import of ``__main__`` in the children.
    """
    reader, writer = multiprocessing.Pipe(duplex=False)
    pids = []
    for child in range(1, workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                reader.close()
                _worker_initialiser()
                for number in range(child, len(chunks), workers):
                    writer.send((number, function(*chunks[number], *arguments), None))
            except BaseException as error:  # noqa: BLE001 - handed to the parent, which raises it
                code = 1
                try:
                    writer.send((None, None, error))
                except Exception:  # noqa: BLE001 - the error itself may not pickle
                    writer.send((None, None, RuntimeError(repr(error))))
            finally:
                os._exit(code)
        pids.append(pid)
    writer.close()
    return pids, reader


def _run_chunks(function, chunks, arguments, workers, progress):
    """``function(*chunk, *arguments)`` for every chunk, in order, shared between ``workers``.

    Each chunk is a tuple of arrays whose first axis runs over starts. Several workers are forked
    processes (a thread pool in multi-threaded hosts, where forking is unsafe).
    """
    workers = _worker_count(workers, len(chunks))
    total = sum(len(chunk[0]) for chunk in chunks)
    results, done = [None] * len(chunks), 0

    def report(number, value):
        nonlocal done
        results[number] = value
        done += len(chunks[number][0])
        if progress is not None:
            progress(done, total)

    with _single_threaded_blas():
        if workers == 1:
            for number, chunk in enumerate(chunks):
                report(number, function(*chunk, *arguments))
        elif threading.active_count() > 1 or not hasattr(os, "fork"):
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(function, *chunk, *arguments) for chunk in chunks]
                for number, future in enumerate(futures):
                    report(number, future.result())
        else:
            _share_with_children(function, chunks, arguments, workers, report)
    return results


def _share_with_children(function, chunks, arguments, workers, report):
    pids, reader = _forked_children(function, chunks, arguments, workers)
    mine = range(0, len(chunks), workers)
    expected = len(chunks) - len(mine)

    def collect(block):
        nonlocal expected
        while expected and reader.poll(None if block else 0):
            try:
                number, value, error = reader.recv()
            except EOFError:
                raise RuntimeError("a worker process ended without sending its results") from None
            if error is not None:
                raise error
            expected -= 1
            report(number, value)

    try:
        for number in mine:
            report(number, function(*chunks[number], *arguments))
            collect(block=False)
        collect(block=True)
    finally:
        reader.close()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)  # already gone unless we are leaving on an error
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def _chunked(*arrays, size=CHUNK_SIZE):
    """Split arrays (first axis = starts; None passes through) into tuples of chunks."""
    count = len(arrays[0])
    return [tuple(None if a is None else a[i:i + size] for a in arrays) for i in range(0, count, size)]


def search_critical_points(W0, W_teacher, flow_tol=1e-6, tol=1e-10, max_steps=20_000, rtol=1e-2,
                           projector=None, workers=None, progress=None, handover_tol=1e-4, chunk_size=CHUNK_SIZE):
    """Gradient flow from every start, then Newton polishing of the flows that converged.

    Starts are processed in chunks of :data:`CHUNK_SIZE` (vectorised inside a chunk); chunks are
    shared between ``workers`` processes. The chunks do not depend on ``workers``, so the result
    is the same, bit for bit, for any number of workers.

    Parameters
    ----------
    W0 : array_like, shape (S, K, n)
        Initial student rows.
    W_teacher : array_like, shape (M, n)
    flow_tol : float, optional
        Gradient norm at which the flow hands over to Newton's method.
    handover_tol : float, optional
        Earlier hand-over where the Hessian has no negative eigenvalue (see :func:`flow_to_critical`).
    tol : float, optional
        Gradient norm required of a polished point.
    max_steps : int, optional
        Flow steps per start.
    rtol : float, optional
        Relative local error of the flow integrator.
    projector : array_like, shape (K n, K n) or (S, K n, K n), optional
        Keep flows and Newton steps in a subspace (see :func:`ansatz_projector`), one for all
        starts or one per start.
    workers : int, optional
        Processes; default 2 on a machine with two or more cores when there are several chunks
        (1 inside a daemonic process such as a Dask worker).
    progress : callable, optional
        ``progress(done, total)`` after each chunk.
    chunk_size : int, optional
        Starts per chunk. The result depends on it (bit for bit), never on ``workers``.

    Returns
    -------
    StartResults

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite or a parameter is out of range.
    """
    W0, W_teacher = _check_batch(W0, W_teacher)
    flow_tol, tol, rtol, handover_tol = (_check_positive(n, v) for n, v in (
        ("flow_tol", flow_tol), ("tol", tol), ("rtol", rtol), ("handover_tol", handover_tol)))
    max_steps = _check_positive("max_steps", max_steps, integer=True)
    projector = _check_projector(projector, W0.shape[0], W0.shape[1] * W0.shape[2])
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(done, total), got {progress!r}")
    chunk_size = _check_positive("chunk_size", chunk_size, integer=True)
    if projector is not None and projector.ndim == 3:
        chunks = _chunked(W0, projector, size=chunk_size)
    else:
        chunks = [(chunk, projector) for (chunk,) in _chunked(W0, size=chunk_size)]
    arguments = (W_teacher, flow_tol, tol, max_steps, rtol, max(handover_tol, flow_tol))
    parts = _run_chunks(_search_chunk, chunks, arguments, workers, progress)
    reasons = tuple(reason for part in parts for reason in part[1])
    n_converged = sum(reason is EndReason.CONVERGED for reason in reasons)
    return StartResults(
        W=np.concatenate([part[0] for part in parts]), W_teacher=W_teacher, reasons=reasons,
        gradient_norm=np.concatenate([part[2] for part in parts]),
        flow_steps=np.concatenate([part[3] for part in parts]),
        newton_iterations=np.concatenate([part[4] for part in parts]),
        success=n_converged == len(reasons),
        message=f"{n_converged} of {len(reasons)} starts converged to a critical point",
    )


# ----------------------------------------------------------------------------- symmetric ansatzes


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
    n = _check_positive("n", n, integer=True)
    if max_count is not None:
        max_count = _check_positive("max_count", max_count, integer=True)

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
    off = T[~np.eye(M, dtype=bool)]
    if np.ptp(np.diag(T)) > 1e-12 or (off.size and np.ptp(off) > 1e-12):
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
    K = _check_positive("K", K, integer=True)
    M, n = W_teacher.shape
    T = validate_teacher(W_teacher @ W_teacher.T)
    off = T[~np.eye(M, dtype=bool)]
    if np.ptp(np.diag(T)) > 1e-12 or (off.size and np.ptp(off) > 1e-12):
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


def ansatz_starts(K, M, blocks, count, rng, W_teacher, paired=True, scale=1.0):
    """Random starts in the fixed-point subspace of :func:`ansatz_projector`.

    Parameters
    ----------
    K, M : int
    blocks : sequence of int
    count : int
        Number of starts.
    rng : numpy.random.Generator
    W_teacher : array_like, shape (M, n)
    paired : bool, optional
    scale : float, optional
        Entries are drawn ``N(0, scale^2 / n)`` (as a random network) and then projected.

    Returns
    -------
    starts : ndarray, shape (count, K, n)
    projector : ndarray, shape (K n, K n)

    Raises
    ------
    ValueError
        As :func:`ansatz_projector`, or if ``count`` is not a positive whole number.
    """
    count = _check_positive("count", count, integer=True)
    projector = ansatz_projector(K, M, blocks, W_teacher, paired)
    n = np.shape(W_teacher)[1]
    starts = scale * rng.standard_normal((count, K, n)) / np.sqrt(n)
    return _project(starts, projector), projector


# ----------------------------------------------------------------------------- finite learning rate


@dataclass(frozen=True)
class FixedPointResult:
    """A fixed point of the summary-statistics ODE at finite learning rate.

    Attributes
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    W : ndarray, shape (K, n)
        Student rows of an embedding with these overlaps (teacher rows ``W_teacher``).
    W_teacher : ndarray, shape (M, n)
    residual : float
        ``|(dQ/dt, dR/dt)| / lr`` (Frobenius), the quantity driven below ``tol``.
    flow_steps, newton_iterations : int
    success : bool
    status : EndReason
    message : str
    """

    Q: np.ndarray
    R: np.ndarray
    W: np.ndarray
    W_teacher: np.ndarray
    residual: float
    flow_steps: int
    newton_iterations: int
    success: bool
    status: EndReason
    message: str


def _gram_safe(Q, R, T_pinv):
    """Clip the Schur complement ``Q - R T^+ R^T`` to be positive semi-definite (Runge-Kutta stages
    can leave the cone of Gram matrices by rounding, and the kernels need real vectors)."""
    spanned = R @ T_pinv @ R.T
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (Q - spanned + (Q - spanned).T))
    if eigenvalues[0] >= 0:
        return 0.5 * (Q + Q.T)
    return spanned + (eigenvectors * np.maximum(eigenvalues, 0.0)) @ eigenvectors.T


def _weight_velocity(W, W_teacher, T, lr, eta2, noise):
    """ODE right-hand side at the overlaps of explicit weights, with exact residuals."""
    Q, R = W @ W.T, W @ W_teacher.T
    residuals = PairResiduals.from_weights(W, W_teacher)
    coefficients = gradient_coefficients(Q, R, T, residuals)
    gradient = coefficients.student @ W + coefficients.teacher @ W_teacher
    product = gradient @ W.T
    dQ = -lr * (product + product.T)
    dR = -lr * gradient @ W_teacher.T
    if eta2:
        dQ = dQ + lr**2 * _finite_lr_expectation(Q, R, T, noise)
    return dQ, dR


def ode_residual(Q, R, T, lr, eta2=True, noise=0.0):
    """``|(dQ/dt, dR/dt)| / lr`` of the full ODE at ``(Q, R)``: zero exactly at its fixed points.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    lr : float
    eta2 : bool, optional
    noise : float, optional

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the overlaps are invalid or ``lr``/``noise`` out of range.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    lr = _check_positive("lr", lr)
    noise = _check_noise(noise)
    dQ, dR = ode_velocity(Q, R, T, lr, bool(eta2), noise)
    return float(np.sqrt(np.sum(dQ**2) + np.sum(dR**2))) / lr


def _check_noise(noise):
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)) \
            or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def _ode_flow(Q, R, T, lr, eta2, noise, tol, max_steps, rtol):
    """Adaptive Runge-Kutta 3(2) in (Q, R), step control as in the weight flow.

    Returns the final ``(Q, R)``, the residual ``|(dQ, dR)| / lr`` there, the steps and the reason.
    """
    T_pinv = np.linalg.pinv(T)
    K, M = R.shape
    bound = DIVERGENCE_NORM * max(1.0, float(np.max(np.diag(T))))

    def unpack(y):
        return _gram_safe(y[: K * K].reshape(K, K), y[K * K:].reshape(K, M), T_pinv), y[K * K:].reshape(K, M)

    def slope(Y):
        dQ, dR = ode_velocity(*unpack(Y[0]), T, lr, eta2, noise)
        return np.concatenate([dQ.ravel(), dR.ravel()])[None]

    y = np.concatenate([Q.ravel(), R.ravel()])[None]
    f1, h, steps = slope(y), np.full((1, 1), 0.05 / lr), 0
    while True:
        residual = float(np.linalg.norm(f1)) / lr
        if residual < tol:
            return *unpack(y[0]), residual, steps, EndReason.CONVERGED
        if steps >= max_steps:
            return *unpack(y[0]), residual, steps, EndReason.MAX_STEPS
        steps += 1
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                y3, f4, ratio = _rk_step(y, f1, h, slope, None, rtol)
        except ValueError:  # a stage left the finite numbers: the overlaps are blowing up
            return *unpack(y[0]), residual, steps, EndReason.DIVERGED
        if not np.all(np.isfinite(y3)) or np.max(np.abs(y3)) > bound:
            return *unpack(y[0]), residual, steps, EndReason.DIVERGED
        if ratio[0] <= 1.0:
            y, f1 = y3, f4
        h *= float(np.clip(0.9 * max(ratio[0], 1e-10) ** (-1.0 / 3.0), 0.2, 5.0))


def _padded_embedding(Q, R, T, seed=1e-4):
    """Rows with overlaps (Q, R, T) in K + M dimensions, with room to leave the span during Newton.

    Directions of the student span outside the teacher span whose squared extent is below
    ``seed^2`` are given that extent: a weight of zero there has zero first derivative (the
    overlaps grow quadratically), so Newton could never grow it, while the ``lr^2`` term of the
    ODE needs it (it inflates the norms out of the teacher span).
    """
    spanned = R @ np.linalg.pinv(T) @ R.T
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (Q - spanned + (Q - spanned).T))
    Q = Q + (eigenvectors * np.maximum(seed**2 - eigenvalues, 0.0)) @ eigenvectors.T
    omega = np.block([[Q, R], [R.T, T]])
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (omega + omega.T))
    rows = eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))
    K = Q.shape[0]
    return rows[:K], rows[K:]


def _ode_newton(W, W_teacher, T, lr, eta2, noise, tol, max_iter):
    """Gauss-Newton on the ODE right-hand side, unknowns the student weights, Jacobian by finite differences."""
    K = W.shape[0]
    upper = np.triu_indices(K)

    def residual(X):
        dQ, dR = _weight_velocity(X, W_teacher, T, lr, eta2, noise)
        return np.concatenate([dQ[upper], dR.ravel()]) / lr

    def norm_of(X):
        dQ, dR = _weight_velocity(X, W_teacher, T, lr, eta2, noise)
        return float(np.sqrt(np.sum(dQ**2) + np.sum(dR**2))) / lr

    F, current = residual(W), norm_of(W)
    iterations = 0
    while current >= tol and iterations < max_iter:
        iterations += 1
        h = 1e-7 * max(1.0, float(np.max(np.abs(W))))
        jacobian = np.empty((F.size, W.size))
        for column in range(W.size):
            shifted = W.copy().ravel()
            shifted[column] += h
            jacobian[:, column] = (residual(shifted.reshape(W.shape)) - F) / h
        step = -np.linalg.lstsq(jacobian, F, rcond=1e-10)[0].reshape(W.shape)
        for _ in range(20):
            trial = W + step
            trial_norm = norm_of(trial)
            if trial_norm < current:
                break
            step = 0.5 * step
        else:
            break
        W, current = trial, trial_norm
        F = residual(W)
    return W, current, iterations


def ode_fixed_point(Q0, R0, T, lr, eta2=True, noise=0.0, tol=1e-10, flow_tol=1e-4, max_steps=20_000,
                    max_iter=30, rtol=1e-2, flow=True):
    """Fixed point of the full summary-statistics ODE reached from ``(Q0, R0)``.

    The ODE (:func:`landscape.ode.ode_velocity`) is integrated until ``|(dQ, dR)| / lr < flow_tol``,
    then Gauss-Newton with a finite-difference Jacobian in the weights of an embedding (see the
    module notes) drives the residual below ``tol``.

    Parameters
    ----------
    Q0 : array_like, shape (K, K)
    R0 : array_like, shape (K, M)
    T : array_like, shape (M, M)
    lr : float
        Learning rate (positive).
    eta2 : bool, optional
        Keep the ``lr^2`` term (default True); without it the fixed points are the critical points of ``L``.
    noise : float, optional
        Label-noise variance.
    tol, flow_tol : float, optional
        Residual ``|(dQ/dt, dR/dt)| / lr`` required at the end, and at the hand-over to Newton.
    max_steps, max_iter : int, optional
        Flow steps and Newton iterations.
    rtol : float, optional
        Relative local error of the flow.
    flow : bool, optional
        Integrate the ODE first (default). False: Newton's method only, to continue a nearby
        fixed point (e.g. a saddle of ``L``, which the flow would leave) to this learning rate.

    Returns
    -------
    FixedPointResult
        Failures (divergence, too many steps, Newton stalling) are in ``status``, never raised.

    Raises
    ------
    ValueError
        If the overlaps are invalid or a parameter is out of range.
    """
    Q0, R0, T = validate_overlaps(Q0, R0, T)
    lr = _check_positive("lr", lr)
    noise = _check_noise(noise)
    tol, flow_tol, rtol = (_check_positive(n, v) for n, v in (("tol", tol), ("flow_tol", flow_tol), ("rtol", rtol)))
    max_steps = _check_positive("max_steps", max_steps, integer=True)
    max_iter = _check_positive("max_iter", max_iter, integer=True)
    if flow:
        Q, R, residual, steps, reason = _ode_flow(Q0, R0, T, lr, bool(eta2), noise, max(flow_tol, tol), max_steps, rtol)
    else:
        Q, R, residual, steps, reason = Q0, R0, np.inf, 0, EndReason.CONVERGED
    W, W_teacher = _padded_embedding(Q, R, T)
    if reason is not EndReason.CONVERGED:
        return FixedPointResult(Q, R, W, W_teacher, residual, steps, 0, False, reason,
                                f"{reason.value} (residual {residual:.2e} after {steps} flow steps)")
    W, residual, iterations = _ode_newton(W, W_teacher, T, lr, bool(eta2), noise, tol, max_iter)
    Q, R = W @ W.T, W @ W_teacher.T
    if residual < tol:
        return FixedPointResult(Q, R, W, W_teacher, residual, steps, iterations, True, EndReason.CONVERGED,
                                f"residual {residual:.2e} < {tol:.0e} after {steps} flow steps and {iterations} Newton steps")
    return FixedPointResult(Q, R, W, W_teacher, residual, steps, iterations, False, EndReason.POLISH_FAILED,
                            f"{EndReason.POLISH_FAILED.value}: residual {residual:.2e} after {iterations} Newton steps")


# ----------------------------------------------------------------------------- symmetries

_SEARCH_BUDGET = 200_000


@dataclass(frozen=True)
class CanonicalForm:
    """A point in canonical form modulo the symmetries of the problem.

    Attributes
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    student_order : ndarray of int, shape (K,)
        ``Q = Q_in[student_order][:, student_order]``.
    teacher_order : ndarray of int, shape (M,)
        ``R = R_in[student_order][:, teacher_order]``; a permutation that leaves ``T`` invariant.
    """

    Q: np.ndarray
    R: np.ndarray
    student_order: np.ndarray
    teacher_order: np.ndarray


def _colour_values(matrices, tol):
    """Integer classes of the entries of several matrices: values closer than ``tol`` (in a chain) share one."""
    values = np.concatenate([m.ravel() for m in matrices])
    order = np.argsort(values, kind="stable")
    scale = max(1.0, float(np.max(np.abs(values))))
    breaks = np.concatenate([[0], np.diff(values[order]) > tol * scale]).cumsum()
    classes = np.empty(values.size, dtype=np.int64)
    classes[order] = breaks
    pieces, offset = [], 0
    for m in matrices:
        pieces.append(classes[offset:offset + m.size].reshape(m.shape))
        offset += m.size
    return pieces


def _structures(points, T, tol):
    """Edge colours ``E`` (n, n) and initial vertex colours of each point ``(Q, R)``."""
    omegas = [np.block([[Q, R], [R.T, T]]) for Q, R in points]
    edges = _colour_values(omegas, tol)
    K = points[0][0].shape[0]
    sort = np.arange(omegas[0].shape[0]) >= K
    result = []
    for E in edges:
        result.append((E, (np.diagonal(E) * 2 + sort).astype(np.int64)))
    return result


def _refine(structures):
    """Colour refinement run jointly on several coloured complete graphs.

    A vertex's new colour is its old colour with the sorted multiset of (edge colour, neighbour
    colour) pairs; the ids are the ranks of these signatures (as bytes), so they depend only on
    the structures, never on the labelling of their vertices.
    """
    colours = [c for _, c in structures]
    classes = len(set(np.concatenate(colours).tolist()))
    while True:
        width = max(int(c.max()) for c in colours) + 1
        keys = []
        for (E, _), c in zip(structures, colours):
            signature = np.ascontiguousarray(np.concatenate([c[:, None], np.sort(E * width + c[None, :], axis=1)], axis=1))
            keys.append([row.tobytes() for row in signature])
        ranks = {key: rank for rank, key in enumerate(sorted(set(k for part in keys for k in part)))}
        colours = [np.array([ranks[k] for k in part], dtype=np.int64) for part in keys]
        if len(ranks) == classes:
            return colours
        classes = len(ranks)


def _individualise(colours, vertex, new_colour):
    colours = colours.copy()
    colours[vertex] = new_colour
    return colours


def _target_cell(colours):
    counts = np.bincount(colours)
    sizes = np.where(counts > 1, counts, np.iinfo(np.int64).max)
    return int(np.argmin(sizes)), int(counts.max())


class _Budget:
    def __init__(self):
        self.left = _SEARCH_BUDGET

    def spend(self):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("the symmetry search exceeded its budget (a highly degenerate point?)")


def _isomorphism(EA, EB, cA, cB, budget):
    """A colour-preserving bijection ``p`` with ``EA[i, j] == EB[p[i], p[j]]``, or None."""
    budget.spend()
    cA, cB = _refine([(EA, cA), (EB, cB)])
    size = int(max(cA.max(), cB.max())) + 1
    if not np.array_equal(np.bincount(cA, minlength=size), np.bincount(cB, minlength=size)):
        return None
    cell, largest = _target_cell(cA)
    if largest == 1:
        mapping = np.empty(cA.size, dtype=int)
        mapping[np.argsort(cA)] = np.argsort(cB)
        return mapping if np.array_equal(EA, EB[np.ix_(mapping, mapping)]) else None
    v = int(np.flatnonzero(cA == cell)[0])
    for w in np.flatnonzero(cB == cell):
        found = _isomorphism(EA, EB, _individualise(cA, v, size), _individualise(cB, int(w), size), budget)
        if found is not None:
            return found
    return None


def _orbit(vertex, generators):
    orbit, frontier = {vertex}, [vertex]
    while frontier:
        image = [int(g[x]) for x in frontier for g in generators]
        frontier = [x for x in set(image) if x not in orbit]
        orbit.update(frontier)
    return orbit


def _automorphism_count(E, colours):
    """Order of the group of colour-preserving automorphisms, along a stabiliser chain."""
    budget, total = _Budget(), 1
    while True:
        colours = _refine([(E, colours)])[0]
        cell, largest = _target_cell(colours)
        if largest == 1:
            return total
        members = np.flatnonzero(colours == cell)
        v, fresh = int(members[0]), int(colours.max()) + 1
        fixed = _individualise(colours, v, fresh)
        orbit, generators = {v}, []
        for w in members[1:]:
            if int(w) in orbit:
                continue
            found = _isomorphism(E, E, fixed, _individualise(colours, int(w), fresh), budget)
            if found is not None:
                generators.append(found)
                orbit = _orbit(v, generators)
        total *= len(orbit)
        colours = fixed


def _check_tol(tol):
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    return float(tol)


def same_orbit(point_a, point_b, T, tol=1e-6):
    """Whether two points are images of each other under the symmetries of the problem.

    Parameters
    ----------
    point_a, point_b : tuple of array_like
        ``(Q, R)`` of each point, shapes (K, K) and (K, M).
    T : array_like, shape (M, M)
    tol : float, optional
        Overlaps closer than ``tol`` (relative to ``max(1, max |overlap|)``) count as equal.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        If the overlaps are invalid or the points have different shapes.
    """
    Qa, Ra, T = validate_overlaps(*point_a, T)
    Qb, Rb, _ = validate_overlaps(*point_b, T)
    if Qa.shape != Qb.shape:
        raise ValueError(f"the points have different widths K: {Qa.shape[0]} and {Qb.shape[0]}")
    (EA, cA), (EB, cB) = _structures([(Qa, Ra), (Qb, Rb)], T, _check_tol(tol))
    return _isomorphism(EA, EB, cA, cB, _Budget()) is not None


def automorphism_count(Q, R, T, tol=1e-6):
    """Number of symmetries that fix the point: pairs (student permutation, teacher permutation
    leaving ``T`` invariant) mapping ``(Q, R)`` to itself.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    ((E, colours),) = _structures([(Q, R)], T, _check_tol(tol))
    return _automorphism_count(E, colours)


def orbit_size(Q, R, T, tol=1e-6):
    """Number of distinct points ``(Q, R)`` obtained from this one by the symmetries of the problem.

    ``K! |Aut(T)| / |Stab(Q, R)|``, where ``Aut(T)`` is the group of teacher permutations leaving
    ``T`` invariant (``M!`` for an orthonormal teacher) and the stabiliser is counted by
    :func:`automorphism_count`.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional

    Returns
    -------
    int
        Exact (a Python integer, possibly large).

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    tol = _check_tol(tol)
    ((E, colours),) = _structures([(Q, R)], T, tol)
    teacher_edges = _colour_values([T], tol)[0]
    teacher_group = _automorphism_count(teacher_edges, np.diagonal(teacher_edges).astype(np.int64))
    return math.factorial(Q.shape[0]) * teacher_group // _automorphism_count(E, colours)


def canonical_form(Q, R, T, tol=1e-6):
    """The point relabelled into a canonical order of students and teachers.

    Colour refinement orders the units by their overlap patterns; ambiguous cells are split by
    individualising their first unit. Teachers come in that order; each student is then placed by
    the teacher it overlaps most (ties in refined order), so aligned pairs sit on the diagonal.
    The teachers are reordered only when ``T`` is invariant under all their permutations
    (orthonormal, equicorrelated); otherwise they keep their order, and the form is canonical for
    the student permutations (deduplication uses :func:`same_orbit`, which allows every symmetry).

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional

    Returns
    -------
    CanonicalForm

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    ((E, colours),) = _structures([(Q, R)], T, _check_tol(tol))
    K, M = R.shape
    off = T[~np.eye(M, dtype=bool)]
    symmetric = np.ptp(np.diag(T)) <= tol and (off.size == 0 or np.ptp(off) <= tol)
    if not symmetric:
        colours[K:] = colours.max() + 1 + np.arange(M)  # teachers fixed in their order
    while True:
        colours = _refine([(E, colours)])[0]
        cell, largest = _target_cell(colours)
        if largest == 1:
            break
        colours = _individualise(colours, int(np.flatnonzero(colours == cell)[0]), int(colours.max()) + 1)
    teacher_order = np.argsort(colours[K:], kind="stable") if symmetric else np.arange(M)
    best = np.argmax(E[:K, K:][:, teacher_order], axis=1)
    student_order = np.lexsort((colours[:K], best))
    return CanonicalForm(Q=Q[np.ix_(student_order, student_order)], R=R[np.ix_(student_order, teacher_order)],
                         student_order=student_order, teacher_order=teacher_order)


def _fixed_point_chunk(Q0, R0, T, lr, eta2, noise, flow):
    return [ode_fixed_point(Q, R, T, lr, eta2, noise, flow=flow) for Q, R in zip(Q0, R0)]


def ode_fixed_points(Q0, R0, T, lr, eta2=True, noise=0.0, flow=True, workers=None, progress=None):
    """:func:`ode_fixed_point` from many starts, shared between processes.

    Parameters
    ----------
    Q0 : array_like, shape (S, K, K)
    R0 : array_like, shape (S, K, M)
    T : array_like, shape (M, M)
    lr : float
    eta2 : bool, optional
    noise : float, optional
    flow : bool, optional
        See :func:`ode_fixed_point`.
    workers : int, optional
        Processes (default: 2 where available, see :func:`search_critical_points`).
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    tuple of FixedPointResult

    Raises
    ------
    ValueError
        If the overlaps are invalid or a parameter is out of range.
    """
    Q0, R0 = np.asarray(Q0, dtype=float), np.asarray(R0, dtype=float)
    if Q0.ndim != 3 or R0.ndim != 3 or len(Q0) != len(R0) or len(Q0) == 0:
        raise ValueError(f"Q0 and R0 must be non-empty stacks (S, K, K) and (S, K, M), got {Q0.shape} and {R0.shape}")
    for Q, R in zip(Q0, R0):
        validate_overlaps(Q, R, T)
    lr, noise = _check_positive("lr", lr), _check_noise(noise)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(done, total), got {progress!r}")
    chunks = _chunked(Q0, R0, size=2)
    parts = _run_chunks(_fixed_point_chunk, chunks, (np.asarray(T, dtype=float), lr, bool(eta2), noise, bool(flow)),
                        workers, progress)
    return tuple(result for part in parts for result in part)
