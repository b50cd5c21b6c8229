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


class _Dynamics:
    """Right-hand side on the flat state ``(Q, R[, carried four-point state])``.

    Remembers its last evaluation: the convergence event asks for the velocity at the point where
    the Runge-Kutta step has just evaluated it.
    """

    def __init__(self, Q0, R0, T, lr, eta2, noise, carried, bound):
        self.K, self.M = R0.shape
        self.T, self.lr, self.eta2, self.noise, self.bound = T, lr, eta2, noise, bound
        self.n_overlaps = self.K * (self.K + self.M)
        parts = [Q0.ravel(), R0.ravel()]
        self.carrier = None
        if eta2 and carried:
            self.carrier = CarriedFourPoint(self.K, self.M)
            parts.append(self.carrier.initial_state(self._omega(Q0, R0)))
        self.y0 = np.concatenate(parts)
        self._last = (None, None)

    def _omega(self, Q, R):
        return np.block([[Q, R], [R.T, self.T]])

    def unpack(self, y):
        K = self.K
        Q = y[: K * K].reshape(K, K)
        return 0.5 * (Q + Q.T), y[K * K : self.n_overlaps].reshape(K, self.M)

    def __call__(self, _t, y):
        if self._last[0] is not None and np.array_equal(self._last[0], y):
            return self._last[1]
        if not np.all(np.isfinite(y)) or np.max(np.abs(y[: self.n_overlaps])) > self.bound:
            # A trial stage left the range. NaN makes the solver reject the step and retry a
            # smaller one; divergence proper shows at accepted steps (event) or as a failed solve.
            return np.full_like(y, np.nan)
        Q, R = self.unpack(y)
        if self.carrier is None:
            dQ, dR = ode_velocity(Q, R, self.T, self.lr, self.eta2, self.noise)
            velocity = np.concatenate([dQ.ravel(), dR.ravel()])
        else:
            velocity = self._carried_velocity(Q, R, y[self.n_overlaps :])
        self._last = (y.copy(), velocity)
        return velocity

    def _carried_velocity(self, Q, R, state):
        # Trial stages outside the overlaps of real vectors give NaN, which rejects the step.
        with np.errstate(all="ignore"):
            dQ, dR, d_state = self.carrier.velocity(Q, R, self.T, self.lr, self.noise, state)
        return np.concatenate([dQ.ravel(), dR.ravel(), d_state])


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
    dynamics = _Dynamics(Q0, R0, T, lr, bool(eta2), noise, carried, bound)
    n_overlaps = dynamics.n_overlaps

    def speed(y):
        return float(np.linalg.norm(dynamics(0.0, y)[:n_overlaps])) / lr

    def converged(_t, y):
        return np.log(speed(y) + 1e-300) - np.log(tol)

    def diverged(_t, y):
        return np.max(np.abs(y[:n_overlaps])) - 0.5 * bound

    converged.terminal, converged.direction = True, -1
    diverged.terminal, diverged.direction = True, 1
    y0 = dynamics.y0
    unpack = dynamics.unpack

    if speed(y0) <= tol:
        return _trajectory(np.array([0.0]), y0[None, :], unpack, T, FlowStatus.CONVERGED, 0.0)
    try:
        solution = solve_ivp(
            dynamics, (0.0, float(t_max)), y0, method="DOP853", dense_output=True,
            events=(converged, diverged), rtol=rtol, atol=atol,
        )
    except (FloatingPointError, OverflowError):
        solution = None
    if carried and (solution is None or solution.status == -1):
        # The carried derivatives are 0/0 where a unit dies or two units coincide exactly: the
        # solver stalls there. The quadrature decides what really happens.
        raise _CarriedFailed
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
