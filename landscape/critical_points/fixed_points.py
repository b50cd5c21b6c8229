"""Fixed points of the summary-statistics ODE at finite learning rate.

Methods
-------
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

Eqs. (3.3) and (3.6) of docs/theory.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dynamics.ode import integrate_ode, ode_velocity
from ..kernels.fourpoint import unchecked_finite_lr_expectation
from ..kernels.overlaps import validate_overlaps
from ..model.config import require_run_config
from ..model.loss import PairResiduals, gradient_coefficients
from .batch_flow import DIVERGENCE_NORM, EndReason, check_positive, rk_step
from .hessian import hessian_spectrum
from .parallel import chunked, run_chunks

__all__ = [
    "FixedPointResult",
    "ode_fixed_point",
    "ode_fixed_points",
    "ode_residual",
    "UnspecialisedFixedPoint",
    "unspecialised_fixed_point",
]


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
        dQ = dQ + lr**2 * unchecked_finite_lr_expectation(Q, R, T, noise)
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
    lr = check_positive("lr", lr)
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
                y3, f4, ratio = rk_step(y, f1, h, slope, None, rtol)
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

    The ODE (:func:`landscape.dynamics.ode.ode_velocity`) is integrated until ``|(dQ, dR)| / lr < flow_tol``,
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
    lr = check_positive("lr", lr)
    noise = _check_noise(noise)
    tol, flow_tol, rtol = (check_positive(n, v) for n, v in (("tol", tol), ("flow_tol", flow_tol), ("rtol", rtol)))
    max_steps = check_positive("max_steps", max_steps, integer=True)
    max_iter = check_positive("max_iter", max_iter, integer=True)
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
        Processes (default: 2 where available, see :func:`landscape.critical_points.search.search_critical_points`).
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
    lr, noise = check_positive("lr", lr), _check_noise(noise)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(done, total), got {progress!r}")
    chunks = chunked(Q0, R0, size=2)
    parts = run_chunks(_fixed_point_chunk, chunks, (np.asarray(T, dtype=float), lr, bool(eta2), noise, bool(flow)),
                        workers, progress)
    return tuple(result for part in parts for result in part)


@dataclass(frozen=True)
class UnspecialisedFixedPoint:
    """The fixed point reached from a permutation-symmetric start (the Saad-Solla plateau's saddle).

    Attributes
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    T : ndarray, shape (M, M)
    loss : float
    index : int or None
        Index of the Hessian of the loss at the config's ``init.d``; None with the ``eta^2`` term on
        (the loss's Hessian does not classify fixed points of the full ODE) or where ``d`` is below
        the rank of the point.
    is_minimum : bool or None
        ``index == 0``; None where ``index`` is None.
    """

    Q: np.ndarray
    R: np.ndarray
    T: np.ndarray
    loss: float
    index: int | None
    is_minimum: bool | None


def unspecialised_fixed_point(config):
    """Follow the ODE from a permutation-symmetric start of an orthonormal teacher to its fixed point.

    For an orthonormal teacher the ODE keeps the symmetric states ``R_km = r``, ``Q_kk = q``,
    ``Q_kl = c`` invariant, so a symmetric start flows to the unspecialised fixed point (the
    saddle behind the Saad-Solla plateau) instead of escaping it.

    Parameters
    ----------
    config : RunConfig
        Its teacher, ``lr``, ``eta2``, ``noise``, ``t_max`` (capped at 5000) and ``init.scale``,
        ``init.d`` (the start's overlaps ``R_km = scale / sqrt(d)``, and the Hessian's ``d``).

    Returns
    -------
    UnspecialisedFixedPoint or None
        None for a teacher that is not orthonormal or when the run does not settle on a
        symmetric fixed point.

    Raises
    ------
    ValueError
        If ``config`` is not a RunConfig.
    """
    require_run_config(config)
    if config.teacher.kind != "orthonormal":
        return None
    K, M = config.K, config.M
    r = config.init.scale / np.sqrt(config.init.d)
    if r * np.sqrt(K * M) >= 0.5 * config.init.scale:
        r = 0.1 * config.init.scale / np.sqrt(K * M)
    run = integrate_ode(config.init.scale**2 * np.eye(K), np.full((K, M), r), config.teacher_matrix(), config.lr,
                        min(config.t_max, 5000.0), eta2=config.eta2, noise=config.noise)
    Q, R = run.Q[-1], run.R[-1]
    if not run.success or np.ptp(R) > 1e-6 * max(1.0, np.abs(R).max()):
        return None
    index = None
    if not config.eta2:
        try:
            index = hessian_spectrum(Q, R, run.T, config.init.d).index
        except ValueError:  # d below the rank of the point: leave it unclassified
            index = None
    return UnspecialisedFixedPoint(Q=Q, R=R, T=run.T, loss=float(run.loss[-1]), index=index,
                                   is_minimum=None if index is None else index == 0)
