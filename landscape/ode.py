"""Deterministic ODEs of one-pass SGD in summary-statistics space (Saad-Solla scaling).

``dR/dt = lr * (gradient-flow velocity of R)``, ``dQ/dt = lr * (gradient-flow velocity of Q)
+ lr^2 E[relu'(lambda_k) relu'(lambda_l) (f - y)^2]`` (THEORY.md section 3). With ``eta2`` off
this is exactly gradient flow of the population loss seen through ``(Q, R)``.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from .config import RunConfig
from .fourpoint import _finite_lr_expectation
from .initialisation import initial_overlaps
from .loss import gradient_flow_velocity, loss_from_overlaps
from .teacher import validate_overlaps
from .trajectory import FlowStatus, Trajectory, final_time_message

__all__ = ["ode_velocity", "integrate_ode", "run_flow"]

#: Overlaps larger than this (relative to the teacher scale) count as divergence.
DIVERGENCE_BOUND = 1e6


def ode_velocity(Q, R, T, lr, eta2=True, noise=0.0):
    """Right-hand side of the summary-statistics ODE (no validation).

    Parameters
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    T : ndarray, shape (M, M)
    lr : float
        Learning rate.
    eta2 : bool
        Include the ``lr^2`` finite-learning-rate term.
    noise : float
        Label-noise variance (enters only the ``lr^2`` term).

    Returns
    -------
    dQ : ndarray, shape (K, K)
    dR : ndarray, shape (K, M)
    """
    dQ, dR = gradient_flow_velocity(Q, R, T)
    dQ, dR = lr * dQ, lr * dR
    if eta2:
        dQ = dQ + lr**2 * _finite_lr_expectation(Q, R, T, noise)
    return dQ, dR


class _Diverged(Exception):
    pass


def _time_grid(t_end, n_points):
    if t_end <= 0:
        return np.array([0.0])
    first = min(1e-3, t_end / n_points)
    return np.unique(np.concatenate([[0.0], np.geomspace(first, t_end, n_points - 1)]))


def integrate_ode(Q0, R0, T, lr, t_max, eta2=True, noise=0.0, tol=1e-8, n_points=400, rtol=None, atol=None):
    """Integrate the summary-statistics ODE until a fixed point, divergence or ``t_max``.

    Parameters
    ----------
    Q0 : array_like, shape (K, K)
        Initial student-student overlaps.
    R0 : array_like, shape (K, M)
        Initial student-teacher overlaps.
    T : array_like, shape (M, M)
        Teacher overlaps.
    lr : float
        Learning rate (positive).
    t_max : float
        Time horizon in steps / d (positive).
    eta2 : bool, optional
        Include the ``lr^2`` term (default True).
    noise : float, optional
        Label-noise variance (default 0).
    tol : float, optional
        Convergence threshold on ``|dQ/dt| + |dR/dt|`` divided by ``lr``.
    n_points : int, optional
        Number of output times (log-spaced, plus ``t = 0`` and the final time).
    rtol, atol : float, optional
        Tolerances of the Runge-Kutta integrator (DOP853). Default ``1e-8, 1e-11`` with ``eta2``
        off; ``1e-6, 1e-9`` with ``eta2`` on, because each evaluation of the four-point term costs
        milliseconds and the term itself is accurate to about ``1e-8`` only.

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        If the overlaps are invalid or ``lr``, ``t_max``, ``noise`` or ``tol`` are out of range.
    """
    Q0, R0, T = validate_overlaps(Q0, R0, T)
    for name, value in (("lr", lr), ("t_max", t_max), ("tol", tol)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    if rtol is None:
        rtol = 1e-6 if eta2 else 1e-8
    if atol is None:
        atol = 1e-9 if eta2 else 1e-11
    K, M = R0.shape
    bound = DIVERGENCE_BOUND * max(1.0, float(np.max(np.diag(T))), float(np.max(np.diag(Q0))))

    def unpack(y):
        Q = y[: K * K].reshape(K, K)
        return 0.5 * (Q + Q.T), y[K * K :].reshape(K, M)

    def rhs(_t, y):
        if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > bound:
            raise _Diverged
        dQ, dR = ode_velocity(*unpack(y), T, lr, eta2, noise)
        return np.concatenate([dQ.ravel(), dR.ravel()])

    def speed(y):
        return float(np.linalg.norm(rhs(0.0, y))) / lr

    def converged(_t, y):
        return np.log(speed(y) + 1e-300) - np.log(tol)

    def diverged(_t, y):
        return np.max(np.abs(y)) - 0.5 * bound

    converged.terminal, converged.direction = True, -1
    diverged.terminal, diverged.direction = True, 1
    y0 = np.concatenate([Q0.ravel(), R0.ravel()])

    if speed(y0) <= tol:
        return _trajectory(np.array([0.0]), y0[None, :], unpack, T, FlowStatus.CONVERGED, 0.0)
    try:
        solution = solve_ivp(
            rhs, (0.0, float(t_max)), y0, method="DOP853", dense_output=True,
            events=(converged, diverged), rtol=rtol, atol=atol,
        )
    except (_Diverged, FloatingPointError, OverflowError):
        solution = None
    if solution is None or solution.status == -1:
        # The solver could not continue: the overlaps blew up between two accepted steps.
        t_last = 0.0 if solution is None else float(solution.t[-1])
        times = np.array([0.0]) if solution is None else solution.t
        states = y0[None, :] if solution is None else solution.y.T
        return _trajectory(times, states, unpack, T, FlowStatus.DIVERGED, t_last)
    t_end = float(solution.t[-1])
    if solution.status == 1 and len(solution.t_events[1]):
        status = FlowStatus.DIVERGED
    elif solution.status == 1:
        status = FlowStatus.CONVERGED
    else:
        status = FlowStatus.T_MAX
    times = _time_grid(t_end, n_points)
    states = solution.sol(times).T
    states[-1] = solution.y[:, -1]
    return _trajectory(times, states, unpack, T, status, t_end)


def _trajectory(times, states, unpack, T, status, t_end):
    pairs = [unpack(y) for y in states]
    Q = np.array([pair[0] for pair in pairs])
    R = np.array([pair[1] for pair in pairs])
    with np.errstate(all="ignore"):
        loss = loss_from_overlaps(Q, R, T)
    return Trajectory(
        t=np.asarray(times, dtype=float), Q=Q, R=R, T=T, loss=loss,
        status=status, message=final_time_message(status, t_end), method="ode",
    )


def run_flow(config, tol=1e-8, n_points=400):
    """Integrate the ODE of a :class:`RunConfig` from its initial condition.

    Parameters
    ----------
    config : RunConfig
    tol : float, optional
        Convergence threshold (see :func:`integrate_ode`).
    n_points : int, optional
        Number of output times.

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        If ``config`` is not a RunConfig.
    """
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
    Q0, R0 = initial_overlaps(config)
    return integrate_ode(
        Q0, R0, config.teacher_matrix(), config.lr, config.t_max,
        eta2=config.eta2, noise=config.noise, tol=tol, n_points=n_points,
    )
