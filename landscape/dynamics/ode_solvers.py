"""The two solvers behind :func:`landscape.dynamics.ode.integrate_ode`, each returning a stretch of trajectory.

- :func:`solve_compiled`: the compiled DOP853 loop (:mod:`landscape.dynamics.dop853`) on the compiled
  right-hand side (:mod:`landscape.dynamics.compiled_flow`): gradient flow, or the ``eta^2`` term with
  the carried four-point state. Milliseconds per run.
- :func:`solve_numpy`: :func:`scipy.integrate.solve_ivp` (DOP853) on the same gradient, with the
  four-point term by quadrature. For starts the carried state cannot handle (aligned or dead
  units), for the end of a run after the carried state has stopped being reliable (units
  within ~1e-8 of alignment, a flow converging onto a teacher), and until numba has compiled.

Gradient flow integrates the student rows in the span of the units (:mod:`landscape.dynamics.span`),
so the overlaps are a Gram matrix at every step. With the ``eta^2`` term the compiled solver
does too (``dS = lr^2 Phi S^{-T} / 2``); the quadrature, accurate to ~1e-12 absolute, would make
that division noisy where ``S`` shrinks onto the teacher, so :func:`solve_numpy` integrates the
teacher-span coordinates ``A`` and the orthogonal part ``C = S S^T`` instead, where ``Phi`` enters
additively (``"schur"`` layout). Both use the same method, tolerances and events (converged when
``|d(Q, R)/dt| / lr`` falls to ``tol``, diverged when an overlap passes half of ``bound``), so a
run can start with one and finish with the other.

Eqs. (3.2)-(3.4), (3.7), (3.8) and (3.8b) of docs/theory.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.integrate import solve_ivp

from ..kernels.fourpoint import unchecked_finite_lr_expectation
from ..model.loss import PairResiduals, gradient_coefficients, gradient_flow_velocity
from .fourpoint_flow import ALIGNMENT_MARGIN, carried_four_point
from .span import (
    overlap_speed,
    overlaps_from_rows,
    overlaps_from_schur,
    rows_from_schur,
    split_schur,
    teacher_rows,
)
from .warmup import discard_stale_cache

__all__ = ["ode_velocity"]

# The compiled run hands over to solve_numpy after this many steps (a safety net: typical runs
# take tens to hundreds), or when two units come within ALIGNMENT_MARGIN of (anti-)alignment.
_MAX_COMPILED_STEPS = 200_000

# Absolute tolerance on the orthogonal part C of the "schur" layout. C shrinks to the size of the
# loss at the end of a converging run (~1e-13): with the overlaps' 1e-9 its smallest eigenvalue
# reached -1.3e-8 (default RunConfig(), between steps), with 1e-11 -1.3e-12 at no extra cost; at
# 1e-13 the correlated-teacher run's tail took 8000 steps on the quadrature's rounding instead of
# 500 (it grows like 1e-16 / angle as units align).
_ORTHOGONAL_ATOL = 1e-11

# Whether this process has checked numba's cache of the solver for staleness (warmup.discard_stale_cache).
_cache_checked = False

# Longest step of the "schur" layout, times lr (the rates scale with lr). Near alignment the
# velocity depends on C through sqrt(C) (the residuals, (1 - rho)^(1/2)): where C ~ 1e-11 the
# error estimate at the end of a 20-unit step passed while the dense output between its ends
# dipped to a Gram eigenvalue of -3.6e-8 (Saad-Solla preset). Steps of at most 5 units keep the
# margins >= -1e-13 for ~15% more right-hand sides.
_SCHUR_MAX_STEP_TIMES_LR = 2.5


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
    or ``"schur"`` (the flat ``(A, C)`` of :func:`landscape.dynamics.span.split_schur`; the
    ``eta^2`` term by quadrature). ``status`` is one of ``"t_max"``, ``"converged"``,
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
    global _cache_checked
    if not _cache_checked:  # before numba first loads the solver's cache in this process
        discard_stale_cache()
        _cache_checked = True
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

    ``layout="span"``: student rows ``U = [A | S]`` (K, p), gradient flow (the residuals from the
    rows); ``"schur"``: ``A`` and the orthogonal part ``C = S S^T`` (eq. (3.8b) of
    docs/theory.md: the same gradient, and ``dC = -lr (alpha C + C alpha^T) + lr^2 Phi`` with
    ``Phi`` by quadrature, no division), for the ``eta^2`` term. Remembers its last evaluation:
    the convergence event asks for the velocity at the point where the Runge-Kutta step has just
    evaluated it.
    """

    def __init__(self, K, T, lr, eta2, noise, bound, layout):
        self.K, self.M, self.T, self.lr, self.eta2, self.noise = K, T.shape[0], T, lr, eta2, noise
        self.bound, self.layout = bound, layout
        self.V = teacher_rows(T, K)
        self.r = self.V.shape[1] - K
        # Coordinates beyond sqrt(bound), or orthogonal parts beyond bound, are overlaps beyond it.
        self.limit = np.sqrt(bound) if layout == "span" else np.concatenate(
            [np.full(K * self.r, np.sqrt(bound)), np.full(K * K, bound)])
        self._last = (None, None)
        self.nfev = 0

    def overlaps(self, y):
        if self.layout == "span":
            return overlaps_from_rows(y.reshape(self.K, -1), self.V)
        return overlaps_from_schur(*split_schur(y, self.K), self.V)

    def _gradient(self, U):
        """``dU = -lr (alpha U + beta V)`` (K, p), ``alpha`` (K, K), ``Q``, ``R`` of rows ``U``."""
        Q, R = overlaps_from_rows(U, self.V)
        coefficients = gradient_coefficients(Q, R, self.T, PairResiduals.from_weights(U, self.V))
        dU = -self.lr * (coefficients.student @ U + coefficients.teacher @ self.V)
        return dU, coefficients.student, Q, R

    def _schur_velocity(self, y):
        A, C = split_schur(y, self.K)
        # The rows (C's rounding-level negative eigenvalues clipped) give the residuals and the
        # coefficients; the linear part acts on C itself, so such an eigenvalue decays with it.
        dU, alpha, Q, R = self._gradient(rows_from_schur(A, C))
        dC = -self.lr * (alpha @ C)
        dC = dC + dC.T
        if self.eta2:
            # Phi is a Gram matrix (of step(lambda_k) (f - y) in L^2); its quadrature is accurate to
            # ~1e-12 absolute, and clipping that rounding's negative eigenvalues keeps the exact
            # solution of the Lyapunov equation positive semi-definite where C is singular.
            term = self.lr**2 * unchecked_finite_lr_expectation(Q, R, self.T, self.noise)
            if not np.all(np.isfinite(term)):
                return np.full_like(y, np.nan)
            eigenvalues, eigenvectors = np.linalg.eigh(term)
            dC += (eigenvectors * np.maximum(eigenvalues, 0.0)) @ eigenvectors.T
        return np.concatenate([dU[:, : self.r].ravel(), dC.ravel()])

    def __call__(self, _t, y):
        if self._last[0] is not None and np.array_equal(self._last[0], y):
            return self._last[1]
        self.nfev += 1
        if not np.all(np.isfinite(y)) or np.any(np.abs(y) > self.limit):
            # A trial stage left the range. NaN makes the solver reject the step and retry a
            # smaller one; divergence proper shows at accepted steps (event) or as a failed solve.
            return np.full_like(y, np.nan)
        if self.layout == "span":
            velocity = self._gradient(y.reshape(self.K, -1))[0].ravel()
        else:
            velocity = self._schur_velocity(y)
        self._last = (y.copy(), velocity)
        return velocity

    def speed(self, y):
        """``|d(Q, R)/dt|`` at ``y``."""
        velocity = self(0.0, y)
        if self.layout == "span":
            return overlap_speed(y.reshape(self.K, -1), velocity.reshape(self.K, -1), self.V)
        A, _ = split_schur(y, self.K)
        dA, dC = split_schur(velocity, self.K)
        dQ = dA @ A.T
        dQ = dQ + dQ.T + dC
        dR = dA @ self.V[:, : self.r].T
        return float(np.sqrt(np.sum(dQ * dQ) + np.sum(dR * dR)))


def solve_numpy(y0, t0, K, T, lr, t_max, eta2, noise, tol, rtol, atol, bound, layout="span"):
    """Run :func:`scipy.integrate.solve_ivp` from the flat state ``y0`` (``layout``, see
    :class:`Piece`) at ``t0``."""
    dynamics = _NumpyDynamics(K, T, lr, eta2, noise, bound, layout)
    max_step = np.inf
    if layout == "schur":
        max_step = _SCHUR_MAX_STEP_TIMES_LR / lr
        atol = np.concatenate([np.full(y0.size - K * K, atol), np.full(K * K, min(atol, _ORTHOGONAL_ATOL))])

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
                             events=(converged, diverged), rtol=rtol, atol=atol, max_step=max_step)
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
