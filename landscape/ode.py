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
from . import dop853
from .compiled_flow import flow_model, velocity
from .fourpoint_flow import CarriedFourPoint, carried_four_point_applies
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


class _CarriedFailed(Exception):
    pass


_FOUR_POINT_METHODS = ("auto", "carried", "quadrature")


class _QuadratureDynamics:
    """Right-hand side on the flat state ``(Q, R)`` with the four-point term by quadrature.

    For :func:`scipy.integrate.solve_ivp`: the quadrature is numpy code that the compiled
    integrator cannot call. Remembers its last evaluation: the convergence event asks for the
    velocity at the point where the Runge-Kutta step has just evaluated it.
    """

    def __init__(self, Q0, R0, T, lr, noise, bound):
        self.K, self.M = R0.shape
        self.T, self.lr, self.noise, self.bound = T, lr, noise, bound
        self.n_overlaps = self.K * (self.K + self.M)
        self.y0 = np.concatenate([Q0.ravel(), R0.ravel()])
        self._last = (None, None)

    def unpack(self, y):
        return _unpack(y, self.K, self.M)

    def __call__(self, _t, y):
        if self._last[0] is not None and np.array_equal(self._last[0], y):
            return self._last[1]
        if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > self.bound:
            # A trial stage left the range. NaN makes the solver reject the step and retry a
            # smaller one; divergence proper shows at accepted steps (event) or as a failed solve.
            return np.full_like(y, np.nan)
        dQ, dR = ode_velocity(*self.unpack(y), self.T, self.lr, True, self.noise)
        velocity = np.concatenate([dQ.ravel(), dR.ravel()])
        self._last = (y.copy(), velocity)
        return velocity


def _unpack(states, K, M):
    """``Q`` (..., K, K), symmetrised, and ``R`` (..., K, M) from flat states (..., n)."""
    Q = states[..., : K * K].reshape(states.shape[:-1] + (K, K))
    R = states[..., K * K : K * (K + M)].reshape(states.shape[:-1] + (K, M))
    return 0.5 * (Q + np.swapaxes(Q, -1, -2)), R


def _time_grid(t_end, n_points):
    if t_end <= 0:
        return np.array([0.0])
    first = min(1e-3, t_end / n_points)
    return np.unique(np.concatenate([[0.0], np.geomspace(first, t_end, n_points - 1)]))


def integrate_ode(Q0, R0, T, lr, t_max, eta2=True, noise=0.0, tol=1e-8, n_points=400, rtol=None, atol=None,
                  four_point="auto"):
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
        off; ``1e-6, 1e-9`` with ``eta2`` on, where every evaluation is several times dearer (the
        global error stays near ``1e-9`` in the loss).
    four_point : {"auto", "carried", "quadrature"}, optional
        How the ``eta^2`` term is evaluated. ``"carried"``: the four-point expectations join the
        state and are integrated along the trajectory by Price's theorem
        (:mod:`landscape.fourpoint_flow`; exact initial values, about ten times cheaper per step).
        ``"quadrature"``: the exact quadrature at every evaluation. ``"auto"`` (default) carries
        them unless two units start exactly aligned or a unit starts dead, and falls back to the
        quadrature if that happens during the run.

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        If the overlaps are invalid or ``lr``, ``t_max``, ``noise``, ``tol`` or ``four_point``
        are out of range, or ``four_point="carried"`` is impossible from these overlaps.
    """
    Q0, R0, T = validate_overlaps(Q0, R0, T)
    for name, value in (("lr", lr), ("t_max", t_max), ("tol", tol)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    if four_point not in _FOUR_POINT_METHODS:
        raise ValueError(f"four_point must be one of {', '.join(_FOUR_POINT_METHODS)}; got {four_point!r}")
    applies = bool(eta2) and carried_four_point_applies(Q0, R0, T)
    if four_point == "carried" and eta2 and not applies:
        raise ValueError(
            "four_point='carried' needs all units alive and no two exactly aligned at the start; "
            "use four_point='quadrature' or 'auto'"
        )
    carried = applies and four_point != "quadrature"
    if carried:
        try:
            return _integrate(Q0, R0, T, lr, t_max, eta2, noise, tol, n_points, rtol, atol, carried=True)
        except _CarriedFailed:
            if four_point == "carried":
                raise ValueError(
                    "four_point='carried' failed: two units became exactly aligned or a unit died "
                    "during the run; use four_point='quadrature' or 'auto'"
                ) from None
    return _integrate(Q0, R0, T, lr, t_max, eta2, noise, tol, n_points, rtol, atol, carried=False)


def _integrate(Q0, R0, T, lr, t_max, eta2, noise, tol, n_points, rtol, atol, carried):
    if rtol is None:
        rtol = 1e-6 if eta2 else 1e-8
    if atol is None:
        atol = 1e-9 if eta2 else 1e-11
    bound = DIVERGENCE_BOUND * max(1.0, float(np.max(np.diag(T))), float(np.max(np.diag(Q0))))
    if eta2 and not carried:
        return _integrate_quadrature(Q0, R0, T, lr, t_max, noise, tol, n_points, rtol, atol, bound)
    K, M = R0.shape
    n_overlaps = K * (K + M)
    parts = [Q0.ravel(), R0.ravel()]
    carrier = CarriedFourPoint(K, M) if carried else None
    if carried:
        parts.append(carrier.initial_state(np.block([[Q0, R0], [R0.T, T]])))
    y0 = np.concatenate(parts)
    model = flow_model(T, lr, noise, K, bound, carrier)
    f0 = np.empty_like(y0)
    velocity(y0, model, f0)
    if np.linalg.norm(f0[:n_overlaps]) / lr <= tol:
        return _trajectory(np.array([0.0]), y0[None, :], K, T, FlowStatus.CONVERGED, 0.0)
    status, t_end, y_end, steps, n_steps, _ = dop853.integrate(
        y0, float(t_max), float(rtol), float(atol), n_overlaps, float(lr), float(tol), bound, model
    )
    if status == dop853.STEP_TOO_SMALL:
        if carried:
            # The carried derivatives are 0/0 where a unit dies or two units coincide exactly:
            # the solver stalls there. The quadrature decides what really happens.
            raise _CarriedFailed
        # The solver could not continue: the overlaps blew up between two accepted steps.
        times = np.append(steps[0][:n_steps], t_end)
        states = np.vstack([steps[2][:n_steps], y_end[None, :]])
        return _trajectory(times, states, K, T, FlowStatus.DIVERGED, t_end)
    flow_status = {
        dop853.CONVERGED: FlowStatus.CONVERGED, dop853.DIVERGED: FlowStatus.DIVERGED,
        dop853.REACHED_END: FlowStatus.T_MAX,
    }[status]
    times = _time_grid(t_end, n_points)
    states = dop853.dense_values(times, steps, n_steps)
    states[-1] = y_end
    return _trajectory(times, states, K, T, flow_status, t_end)


def _integrate_quadrature(Q0, R0, T, lr, t_max, noise, tol, n_points, rtol, atol, bound):
    """:func:`_integrate` with the four-point term by quadrature, on :func:`scipy.integrate.solve_ivp`."""
    dynamics = _QuadratureDynamics(Q0, R0, T, lr, noise, bound)
    K = dynamics.K

    def speed(y):
        return float(np.linalg.norm(dynamics(0.0, y))) / lr

    def converged(_t, y):
        return np.log(speed(y) + 1e-300) - np.log(tol)

    def diverged(_t, y):
        return np.max(np.abs(y)) - 0.5 * bound

    converged.terminal, converged.direction = True, -1
    diverged.terminal, diverged.direction = True, 1
    y0 = dynamics.y0
    if speed(y0) <= tol:
        return _trajectory(np.array([0.0]), y0[None, :], K, T, FlowStatus.CONVERGED, 0.0)
    try:
        solution = solve_ivp(
            dynamics, (0.0, float(t_max)), y0, method="DOP853", dense_output=True,
            events=(converged, diverged), rtol=rtol, atol=atol,
        )
    except (FloatingPointError, OverflowError):
        solution = None
    if solution is None or solution.status == -1:
        # The solver could not continue: the overlaps blew up between two accepted steps.
        t_last = 0.0 if solution is None else float(solution.t[-1])
        times = np.array([0.0]) if solution is None else solution.t
        states = y0[None, :] if solution is None else solution.y.T
        return _trajectory(times, states, K, T, FlowStatus.DIVERGED, t_last)
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
    return _trajectory(times, states, K, T, status, t_end)


def _trajectory(times, states, K, T, status, t_end):
    Q, R = _unpack(np.asarray(states), K, T.shape[0])
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
