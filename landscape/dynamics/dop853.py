"""Compiled DOP853 integrator of the summary-statistics ODE, with its convergence and divergence events.

Hairer's explicit Runge-Kutta method of order 8 (embedded error estimators of orders 5 and 3,
dense output of order 7) as :class:`scipy.integrate.DOP853` implements it -- same coefficients,
step-size control and initial step -- run as one compiled loop over
:func:`landscape.dynamics.compiled_flow.velocity`. For the few dozen state variables of the ODE,
scipy's per-step Python work costs more than the right-hand side itself; here the whole run
is a single call. ``solve_ivp`` on the same right-hand side stays the reference in the tests.
Two differences. The error norm measures what
:func:`landscape.dynamics.compiled_flow.error_sums` says (the state's coordinates, as scipy does,
or, with the ``eta^2`` term, the overlaps the student rows give). The interpolant is of order 7 for the overlaps
only (the monitored components); the carried four-point state, which is never output, gets the
cubic Hermite interpolant of its step ends, which spares the carried rates at the last
interpolation stage.

The events are those of :func:`landscape.dynamics.ode.integrate_ode`: *converged* when the speed
``|d(Q, R)/dt| / lr`` falls to ``tol`` (located on the dense output, as ``solve_ivp`` locates
terminal events), *diverged* when an overlap exceeds half the bound.

Eq. (3.7) of docs/theory.md; the method is Hairer, Norsett & Wanner, Solving ODEs I, section II.10.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.integrate import DOP853

from .compiled_flow import carried_margin, error_sums, overlap_events, velocity

__all__ = []  # internal to the ODE


def _tableau():
    """The Butcher tableau as one (16, 16) matrix and (16,) nodes, from the public attributes of
    :class:`scipy.integrate.DOP853`: the 12 stages, the FSAL stage (row ``B``, node 1) that
    evaluates the velocity at the step's end, and the 3 extra stages of the dense output."""
    n = DOP853.n_stages
    A = np.zeros((n + 1 + DOP853.A_EXTRA.shape[0], DOP853.A_EXTRA.shape[1]))
    A[:n, :n] = DOP853.A
    A[n, :n] = DOP853.B
    A[n + 1:] = DOP853.A_EXTRA
    C = np.concatenate([DOP853.C, [1.0], DOP853.C_EXTRA])
    return np.ascontiguousarray(A), np.ascontiguousarray(C)


_N_STAGES = DOP853.n_stages
_A, _C = _tableau()
_B = np.ascontiguousarray(DOP853.B)
_E3 = np.ascontiguousarray(DOP853.E3)
_E5 = np.ascontiguousarray(DOP853.E5)
_D = np.ascontiguousarray(DOP853.D)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1.0 / 8.0  # error estimator of order 7
# Longest step, as a multiple of the stiffest rate seen (Hairer's estimate, see integrate): the
# stability interval of DOP853 on the negative axis ends near h lambda = -6.3. Near a fixed point
# the error estimate lets the step grow to that edge, where the amplification factor is about
# -1: the state then alternates around the fixed point at the tolerance's amplitude, the speed
# stops falling, and a run that should converge hovers until t_max (seen: K = 1, M = 2 near a
# spurious minimum with the eta^2 term, tol 1e-10). At h lambda = 4 the factor is 0.013 (exp(-4) =
# 0.018): the fast modes decay as they should.
_STIFF_LIMIT = 4.0
_EPS = np.finfo(float).eps

# A run whose accepted steps stay this short (relative to max(1, t)) this many times in a row has
# stalled: seen where rounding makes a correlation exactly 1 and the carried derivatives noisy.
_STALL_FRACTION, _STALL_STEPS = 1e-5, 50

#: Integration statuses (``solve_ivp``'s, with the terminal events named). HANDOVER: the run stopped
#: where the compiled right-hand side stops being reliable (see :func:`integrate`).
REACHED_END, CONVERGED, DIVERGED, HANDOVER, STEP_TOO_SMALL = 0, 1, 2, 3, -1

_jit = njit(cache=True, error_model="numpy")


@_jit
def _rms(x, y, rtol, atol, model):
    """Root mean square of ``x`` (n,), a displacement of the state ``y`` (a velocity, a change of
    velocity, or ``y`` itself for its size), scaled as the error norm scales errors
    (:func:`landscape.dynamics.compiled_flow.error_sums`; on the overlaps, ``y`` itself counts as
    ``(2 Q, R)``, which the starting step's heuristic does not mind)."""
    total, _, n_terms = error_sums(x, x, y, y, rtol, atol, model)
    return math.sqrt(total / n_terms)


@_jit
def _first_trial_step(y0, f0, t_bound, rtol, atol, model):
    """Hairer's trial step ``h0`` of :func:`scipy.integrate._ivp.common.select_initial_step`, with
    the norm of the error control: the same starting step for any basis of the orthogonal factor."""
    d0, d1 = _rms(y0, y0, rtol, atol, model), _rms(f0, y0, rtol, atol, model)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    return min(h0, t_bound)


@_jit
def _initial_step(y0, f0, f1, h0, t_bound, rtol, atol, model):
    """Hairer's starting step from ``f1``, the velocity at ``y0 + h0 f0``."""
    d1 = _rms(f0, y0, rtol, atol, model)
    d2 = _rms(f1 - f0, y0, rtol, atol, model) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
    return min(100.0 * h0, h1, t_bound)


@_jit
def _trial_point(y, h, stages, s, trial):
    """Write ``y + h sum_r A[s, r] k_r`` into ``trial`` and return it: where stage ``s``
    evaluates the velocity (written element by element: array expressions allocate)."""
    for a in range(y.size):
        total = 0.0
        for r in range(s):
            total += _A[s, r] * stages[r, a]
        trial[a] = y[a] + h * total
    return trial


@_jit
def _error_norm(stages, h, y, y_new, rtol, atol, model, error5, error3):
    """DOP853's error norm of a step from ``y`` to ``y_new`` (``error5``, ``error3``: work arrays
    (n,) for the two embedded estimates; what is measured: :func:`error_sums`)."""
    for a in range(y.size):
        e5 = 0.0
        e3 = 0.0
        for s in range(_N_STAGES + 1):
            e5 += stages[s, a] * _E5[s]
            e3 += stages[s, a] * _E3[s]
        error5[a], error3[a] = e5, e3
    err5_squared, err3_squared, n_terms = error_sums(error5, error3, y, y_new, rtol, atol, model)
    if err5_squared == 0.0 and err3_squared == 0.0:
        return 0.0
    return abs(h) * err5_squared / math.sqrt((err5_squared + 0.01 * err3_squared) * n_terms)


@_jit
def _stiffness_cap(y_new, f_new, y_last_stage, f_last_stage):
    """The longest next step the stiffness allows: ``_STIFF_LIMIT / lambda``, with Hairer's estimate
    of the stiffest rate ``lambda = |f(y_new) - f(y_12)| / |y_new - y_12|`` from the two
    approximations of the state at the end of the step (the last stage's and the solution), whose
    difference the stiffest modes dominate (inf when it is zero)."""
    numerator, denominator = 0.0, 0.0
    for a in range(y_new.size):
        numerator += (f_new[a] - f_last_stage[a]) ** 2
        denominator += (y_new[a] - y_last_stage[a]) ** 2
    if numerator == 0.0 or denominator == 0.0:
        return math.inf
    return _STIFF_LIMIT / math.sqrt(numerator / denominator)


@_jit
def _dense_coefficients(y_old, y_new, f_new, h, stages, n_exact):
    """The interpolant of an accepted step, shape (7, n): of order 7 for the first ``n_exact``
    components, from all 16 stages; cubic Hermite for the others."""
    n = y_old.size
    out = np.zeros((7, n))
    for a in range(n):
        delta = y_new[a] - y_old[a]
        out[0, a] = delta
        out[1, a] = h * stages[0, a] - delta
        out[2, a] = 2.0 * delta - h * (f_new[a] + stages[0, a])
        if a >= n_exact:
            continue
        for row in range(4):
            total = 0.0
            for s in range(stages.shape[0]):
                total += _D[row, s] * stages[s, a]
            out[3 + row, a] = h * total
    return out


@_jit
def _interpolate(coefficients, y_old, x):
    """Dense output at the fraction ``x`` of a step, as ``Dop853DenseOutput``."""
    y = np.zeros_like(y_old)
    for i in range(7):
        y += coefficients[6 - i]
        y *= x if i % 2 == 0 else 1.0 - x
    return y + y_old


@_jit
def _events(y, f, model, lr, tol, bound):
    """Values of the convergence (falls through 0) and divergence (rises through 0) events, on
    the overlaps ``(Q, R)`` of the state (see :func:`landscape.dynamics.compiled_flow.overlap_events`)."""
    speed, largest = overlap_events(y, f, model)
    return math.log(speed / lr + 1e-300) - math.log(tol), largest - 0.5 * bound


@_jit
def _event_root(which, coefficients, y_old, t_old, h, g_old, g_new, n_monitor, lr, tol, bound, model):
    """Fraction of an accepted step where event ``which`` changes sign from ``g_old`` at its start
    to ``g_new`` at its end (Illinois regula falsi on the dense output)."""
    f = np.empty_like(y_old)
    low, high = 0.0, 1.0
    g_low, g_high = g_old, g_new
    side = 0
    for _ in range(200):
        if (high - low) * abs(h) <= 4.0 * _EPS * (1.0 + abs(t_old + low * h)):
            break
        x = high - g_high * (high - low) / (g_high - g_low) if g_high != g_low else 0.5 * (low + high)
        if not (low < x < high):
            x = 0.5 * (low + high)
        y = _interpolate(coefficients, y_old, x)
        velocity(y, model, f, True)
        g = _events(y, f, model, lr, tol, bound)[which]
        if (g >= 0.0) == (g_low >= 0.0):
            low, g_low = x, g
            if side == -1:
                g_high *= 0.5
            side = -1
        else:
            high, g_high = x, g
            if side == 1:
                g_low *= 0.5
            side = 1
    return high


@_jit
def integrate(y0, t_bound, rtol, atol, n_monitor, lr, tol, bound, model, margin_limit, max_steps):
    """Integrate ``dy/dt = velocity(y)`` from ``t = 0`` until ``t_bound``, an event or a failure.

    Steps are chosen by the error control, and no longer than ``_STIFF_LIMIT`` over the stiffest
    rate the last step saw (:func:`_stiffness_cap`). Stops with ``HANDOVER`` after an accepted
    step where :func:`carried_margin` is below ``margin_limit`` (0 never), after ``max_steps``
    steps, or when the step size has stalled (``_STALL_STEPS`` steps in a row shorter than
    ``_STALL_FRACTION`` of ``max(1, t)``): the caller continues from there with another solver.

    Returns ``(status, t_end, y_end, steps, n_steps, nfev, n_rejected)`` with ``steps = (starts, lengths,
    states, interpolants)``: every accepted step's start time, length, starting state and
    interpolant (the last step may be cut short by an event at ``t_end``), to evaluate the
    trajectory anywhere in ``[0, t_end]`` with :func:`dense_values`; ``nfev`` right-hand sides
    were evaluated and ``n_rejected`` trial steps rejected.
    """
    n = y0.size
    stages, trial = np.empty((_A.shape[0], n)), np.empty(n)
    error5, error3 = np.empty(n), np.empty(n)
    capacity = 64
    starts, lengths = np.empty(capacity), np.empty(capacity)
    states, interpolants = np.empty((capacity, n)), np.empty((capacity, 7, n))
    t, y = 0.0, y0.copy()
    f = np.empty(n)
    velocity(y, model, f, False)
    # The right-hand side is called from this function (and the event search) only: every
    # compiled caller re-optimises its whole call tree, which sets the compile time.
    h0 = _first_trial_step(y, f, t_bound, rtol, atol, model)
    f1 = np.empty(n)
    velocity(y + h0 * f, model, f1, False)
    nfev = 2
    h_abs = _initial_step(y, f, f1, h0, t_bound, rtol, atol, model)
    g = _events(y, f, model, lr, tol, bound)
    n_steps = 0
    n_rejected = 0
    short_steps = 0
    while True:
        min_step = 10.0 * abs(np.nextafter(t, np.inf) - t)
        h_abs = max(h_abs, min_step)
        rejected = False
        while True:
            if h_abs < min_step or not math.isfinite(h_abs):
                return STEP_TOO_SMALL, t, y, (starts, lengths, states, interpolants), n_steps, nfev, n_rejected
            t_new = min(t + h_abs, t_bound)
            h = t_new - t
            stages[0] = f
            for s in range(1, _N_STAGES):
                velocity(_trial_point(y, h, stages, s, trial), model, stages[s], False)
            y_new = np.empty(n)
            for a in range(n):
                total = 0.0
                for s in range(_N_STAGES):
                    total += _B[s] * stages[s, a]
                y_new[a] = y[a] + h * total
            velocity(y_new, model, stages[_N_STAGES], False)
            nfev += _N_STAGES
            error = _error_norm(stages, h, y, y_new, rtol, atol, model, error5, error3)
            # A trial stage out of range gives NaN: reject and retry smaller, as solve_ivp does.
            if math.isfinite(error) and error < 1.0:
                factor = _MAX_FACTOR if error == 0.0 else min(_MAX_FACTOR, _SAFETY * error**_ERROR_EXPONENT)
                h_abs *= min(1.0, factor) if rejected else factor
                break
            factor = _SAFETY * error**_ERROR_EXPONENT if math.isfinite(error) else _MIN_FACTOR
            h_abs *= max(_MIN_FACTOR, factor)
            rejected = True
            n_rejected += 1
        f_new = stages[_N_STAGES].copy()
        # trial still holds the last stage's point (c = 1: the step's end), stages[-2] its velocity.
        h_abs = min(h_abs, _stiffness_cap(y_new, f_new, trial, stages[_N_STAGES - 1]))
        if n_steps == capacity:
            capacity *= 2
            starts = np.concatenate((starts, np.empty(capacity - n_steps)))
            lengths = np.concatenate((lengths, np.empty(capacity - n_steps)))
            states = np.concatenate((states, np.empty((capacity - n_steps, n))))
            interpolants = np.concatenate((interpolants, np.empty((capacity - n_steps, 7, n))))
        # Three more stages for the interpolant. The last enters nothing but the interpolant, and
        # the carried state's interpolant serves only the event search: that stage is evaluated
        # for the overlaps alone (the carried rates are most of the cost of a velocity) and the
        # carried state gets the cubic Hermite interpolant (see _dense_coefficients).
        for s in range(_N_STAGES + 1, stages.shape[0]):
            overlaps_only = s == stages.shape[0] - 1
            velocity(_trial_point(y, h, stages, s, trial), model, stages[s], overlaps_only)
        nfev += stages.shape[0] - _N_STAGES - 1
        coefficients = _dense_coefficients(y, y_new, f_new, h, stages, n_monitor)
        starts[n_steps], lengths[n_steps], states[n_steps], interpolants[n_steps] = t, h, y, coefficients
        n_steps += 1
        g_new = _events(y_new, f_new, model, lr, tol, bound)
        crossed_converged = g[0] >= 0.0 and g_new[0] <= 0.0
        crossed_diverged = g[1] <= 0.0 and g_new[1] >= 0.0
        if crossed_converged or crossed_diverged:
            x_converged = x_diverged = 2.0
            if crossed_converged:
                x_converged = _event_root(0, coefficients, y, t, h, g[0], g_new[0], n_monitor, lr, tol, bound, model)
            if crossed_diverged:
                x_diverged = _event_root(1, coefficients, y, t, h, g[1], g_new[1], n_monitor, lr, tol, bound, model)
            x = min(x_converged, x_diverged)
            status = DIVERGED if x_diverged <= x_converged else CONVERGED
            steps = (starts, lengths, states, interpolants)
            return status, t + x * h, _interpolate(coefficients, y, x), steps, n_steps, nfev, n_rejected
        short_steps = short_steps + 1 if h < _STALL_FRACTION * max(1.0, t) else 0
        t, y, f, g = t_new, y_new, f_new, g_new
        stalled = short_steps >= _STALL_STEPS or n_steps >= max_steps
        if t < t_bound and (stalled or (margin_limit > 0 and carried_margin(y, model) < margin_limit)):
            return HANDOVER, t, y, (starts, lengths, states, interpolants), n_steps, nfev, n_rejected
        if t >= t_bound:
            return REACHED_END, t, y, (starts, lengths, states, interpolants), n_steps, nfev, n_rejected


@_jit
def dense_values(times, steps, n_steps, n_components):
    """The first ``n_components`` of the state at ``times`` (ascending, within ``[0, t_end]``),
    shape (len(times), n_components)."""
    starts, lengths, states, interpolants = steps
    out = np.empty((times.size, n_components))
    step = 0
    for a in range(times.size):
        while step + 1 < n_steps and starts[step + 1] <= times[a]:
            step += 1
        x = (times[a] - starts[step]) / lengths[step]
        out[a] = _interpolate(interpolants[step, :, :n_components], states[step, :n_components], x)
    return out
