"""The two solvers behind :func:`landscape.dynamics.ode.integrate_ode`, each returning a stretch of trajectory.

- :func:`solve_compiled`: the compiled DOP853 loop (:mod:`landscape.dynamics.dop853`) on the compiled
  right-hand side (:mod:`landscape.dynamics.compiled_flow`): gradient flow, or the ``eta^2`` term with
  the carried four-point state. Milliseconds per run.
- :func:`solve_numpy`: :func:`scipy.integrate.solve_ivp` (DOP853) on :func:`ode_velocity`, with
  the four-point term by quadrature. For starts the carried state cannot handle (aligned or dead
  units) and for the end of a run after the carried state has stopped being reliable (units
  within ~1e-8 of alignment, a flow converging onto a teacher).

Both integrate the student rows in the span of the units (:mod:`landscape.dynamics.span`), so
the overlaps are a Gram matrix at every step. Both use the same method, tolerances and events (converged when ``|d(Q, R)/dt| /
lr`` falls to
``tol``, diverged when an overlap passes half of ``bound``), so a run can start with one and
finish with the other.

Eqs. (3.2)-(3.4) and (3.7) of docs/theory.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.integrate import solve_ivp

from ..kernels.fourpoint import unchecked_finite_lr_expectation
from ..model.loss import PairResiduals, gradient_coefficients, gradient_flow_velocity
from .fourpoint_flow import ALIGNMENT_MARGIN, carried_four_point
from .span import overlap_speed, overlaps_from_rows, teacher_rows

__all__ = ["ode_velocity"]

# The compiled run hands over to solve_numpy after this many steps (a safety net: typical runs
# take tens to hundreds), or when two units come within ALIGNMENT_MARGIN of (anti-)alignment.
_MAX_COMPILED_STEPS = 200_000


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
        dQ = dQ + lr**2 * unchecked_finite_lr_expectation(Q, R, T, noise)
    return dQ, dR


@dataclass(frozen=True)
class Piece:
    """A stretch ``[t0, t_end]`` of a trajectory.

    ``layout`` is ``"span"`` (the flat student rows ``U`` (K, p) of :mod:`landscape.dynamics.span`)
    or ``"overlaps"`` (the flat ``(Q, R)``; only for the ``eta^2`` term from a start whose
    orthogonal part is singular). ``status`` is one of ``"t_max"``, ``"converged"``,
    ``"diverged"``, ``"handover"`` (the solver stopped where another must take over) and
    ``"failed"`` (it could not continue; ``reason`` says why); ``evaluate(times)`` gives the
    states (n_times, n) at times within the stretch, and ``steps_t``, ``steps_y`` the accepted
    steps (for a failed run); ``state_end`` the solver's whole final state (with, for the compiled
    solver with the carried four-point term, the carried state), to continue the run with the
    same solver; ``accepted``, ``rejected``, ``nfev`` the solver's counts and ``solver`` its name.
    """

    t0: float
    t_end: float
    status: str
    y_end: np.ndarray
    evaluate: Callable[[np.ndarray], np.ndarray] | None
    steps_t: np.ndarray
    steps_y: np.ndarray
    state_end: np.ndarray | None = None
    accepted: int = 0
    rejected: int = 0
    nfev: int = 0
    solver: str = "compiled"
    layout: str = "span"
    reason: str = ""


def unpack(states, K, M):
    """``Q`` (..., K, K), symmetrised, and ``R`` (..., K, M) from flat states (..., n)."""
    Q = states[..., : K * K].reshape(states.shape[:-1] + (K, K))
    R = states[..., K * K : K * (K + M)].reshape(states.shape[:-1] + (K, M))
    return 0.5 * (Q + np.swapaxes(Q, -1, -2)), R


def _at_rest(y, t, **fields):
    """A run that is converged where it starts."""
    return Piece(float(t), float(t), "converged", y, lambda times: np.tile(y, (len(times), 1)),
                 np.array([float(t)]), y[None, :], **fields)


def initial_state(U0, Q0, R0, T, carried):
    """The compiled solver's state: the flat student rows ``U0`` (K, p), then the carried
    four-point expectations at ``(Q0, R0)`` when ``carried``."""
    K, M = R0.shape
    parts = [U0.ravel()]
    if carried:
        parts.append(carried_four_point(K, M).initial_state(np.block([[Q0, R0], [R0.T, T]])))
    return np.concatenate(parts)


def solve_compiled(y0, t0, K, T, lr, t_max, noise, tol, rtol, atol, bound, carried):
    """Run the compiled solver from the state ``y0`` (see :func:`initial_state`) at ``t0``."""
    # Imported here: numba takes a second to import, which commands that never integrate skip.
    from . import dop853
    from .compiled_flow import flow_model, overlap_events, velocity

    model = flow_model(T, lr, noise, K, bound, carried)
    n = K * model.V.shape[1]
    y0 = np.ascontiguousarray(y0, dtype=float)
    f0 = np.empty_like(y0)
    velocity(y0, model, f0, True)
    if overlap_events(y0, f0, model)[0] / lr <= tol:
        return replace(_at_rest(y0[:n], t0, nfev=1), state_end=y0.copy())
    # The system is autonomous: the compiled loop runs from 0 and its times are shifted by t0.
    status, t_end, y_end, steps, n_steps, nfev, n_rejected = dop853.integrate(
        y0, float(t_max - t0), float(rtol), float(atol), n, float(lr), float(tol), bound, model,
        ALIGNMENT_MARGIN if carried else 0.0, _MAX_COMPILED_STEPS,
    )
    names = {dop853.REACHED_END: "t_max", dop853.CONVERGED: "converged", dop853.DIVERGED: "diverged",
             dop853.HANDOVER: "handover", dop853.STEP_TOO_SMALL: "failed"}
    return Piece(
        t0=float(t0), t_end=float(t0 + t_end), status=names[status], y_end=y_end[:n].copy(),
        evaluate=lambda times: dop853.dense_values(np.asarray(times, dtype=float) - t0, steps, n_steps, n),
        steps_t=t0 + steps[0][:n_steps], steps_y=steps[2][:n_steps, :n].copy(), state_end=y_end.copy(),
        accepted=int(n_steps), rejected=int(n_rejected), nfev=int(nfev + 1), solver="compiled",
        reason="the step size fell below the spacing of floating-point numbers (compiled DOP853)"
        if status == dop853.STEP_TOO_SMALL else "",
    )


class _NumpyDynamics:
    """The right-hand side on the flat state, for :func:`scipy.integrate.solve_ivp`.

    ``layout="span"``: student rows ``U`` (K, p) (gradient with the residuals of the rows, the
    ``eta^2`` term by quadrature as ``dS = lr^2 Phi S^{-T} / 2``); ``"overlaps"``: :func:`ode_velocity`
    on ``(Q, R)``. Remembers its last evaluation: the convergence event asks for the velocity at
    the point where the Runge-Kutta step has just evaluated it.
    """

    def __init__(self, K, T, lr, eta2, noise, bound, layout):
        self.K, self.M, self.T, self.lr, self.eta2, self.noise = K, T.shape[0], T, lr, eta2, noise
        self.bound, self.layout = bound, layout
        self.V = teacher_rows(T, K)
        self.limit = np.sqrt(bound) if layout == "span" else bound
        self._last = (None, None)
        self.nfev = 0

    def overlaps(self, y):
        if self.layout == "span":
            return overlaps_from_rows(y.reshape(self.K, -1), self.V)
        return unpack(y, self.K, self.M)

    def _span_velocity(self, y):
        U = y.reshape(self.K, -1)
        Q, R = overlaps_from_rows(U, self.V)
        coefficients = gradient_coefficients(Q, R, self.T, PairResiduals.from_weights(U, self.V))
        dU = -self.lr * (coefficients.student @ U + coefficients.teacher @ self.V)
        if self.eta2:
            S = U[:, U.shape[1] - self.K:]
            term = 0.5 * self.lr**2 * unchecked_finite_lr_expectation(Q, R, self.T, self.noise)
            try:
                dU[:, U.shape[1] - self.K:] += np.linalg.solve(S, term).T
            except np.linalg.LinAlgError:
                return np.full_like(y, np.nan)
        return dU.ravel()

    def __call__(self, _t, y):
        if self._last[0] is not None and np.array_equal(self._last[0], y):
            return self._last[1]
        self.nfev += 1
        if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > self.limit:
            # A trial stage left the range. NaN makes the solver reject the step and retry a
            # smaller one; divergence proper shows at accepted steps (event) or as a failed solve.
            return np.full_like(y, np.nan)
        if self.layout == "span":
            velocity = self._span_velocity(y)
        else:
            dQ, dR = ode_velocity(*unpack(y, self.K, self.M), self.T, self.lr, self.eta2, self.noise)
            velocity = np.concatenate([dQ.ravel(), dR.ravel()])
        self._last = (y.copy(), velocity)
        return velocity

    def speed(self, y):
        """``|d(Q, R)/dt|`` at ``y``."""
        velocity = self(0.0, y)
        if self.layout == "span":
            return overlap_speed(y.reshape(self.K, -1), velocity.reshape(self.K, -1), self.V)
        return float(np.linalg.norm(velocity))


def solve_numpy(y0, t0, K, T, lr, t_max, eta2, noise, tol, rtol, atol, bound, layout="span"):
    """Run :func:`scipy.integrate.solve_ivp` from the flat state ``y0`` (``layout``, see
    :class:`Piece`) at ``t0``."""
    dynamics = _NumpyDynamics(K, T, lr, eta2, noise, bound, layout)

    def converged(_t, y):
        return np.log(dynamics.speed(y) / lr + 1e-300) - np.log(tol)

    def diverged(_t, y):
        Q, R = dynamics.overlaps(y)
        return max(np.max(np.abs(Q)), np.max(np.abs(R))) - 0.5 * bound

    converged.terminal, converged.direction = True, -1
    diverged.terminal, diverged.direction = True, 1
    fields = dict(solver="scipy", layout=layout)
    if converged(t0, y0) <= 0:
        return _at_rest(y0, t0, nfev=dynamics.nfev, **fields)
    try:
        solution = solve_ivp(dynamics, (float(t0), float(t_max)), y0, method="DOP853", dense_output=True,
                             events=(converged, diverged), rtol=rtol, atol=atol)
    except (FloatingPointError, OverflowError) as error:
        solution, reason = None, f"{type(error).__name__}: {error}"
    if solution is None or solution.status == -1:
        steps_t = np.array([t0]) if solution is None else solution.t
        steps_y = y0[None, :] if solution is None else solution.y.T
        reason = reason if solution is None else f"solve_ivp (DOP853): {solution.message}"
        return Piece(t0, float(steps_t[-1]), "failed", steps_y[-1], None, steps_t, steps_y,
                     accepted=steps_t.size - 1, nfev=dynamics.nfev, reason=reason, **fields)
    if solution.status == 1:
        status = "diverged" if len(solution.t_events[1]) else "converged"
    else:
        status = "t_max"
    accepted = solution.t.size - 1
    # solve_ivp does not count rejections: its DOP853 evaluates 12 stages per trial step, 3 more
    # per accepted step for the dense output, and 2 at the start.
    rejected = max(0, (int(solution.nfev) - 2 - 15 * accepted) // 12)
    return Piece(
        t0=float(t0), t_end=float(solution.t[-1]), status=status, y_end=solution.y[:, -1].copy(),
        evaluate=lambda times: solution.sol(times).T, steps_t=solution.t, steps_y=solution.y.T,
        accepted=accepted, rejected=rejected, nfev=dynamics.nfev, **fields,
    )
