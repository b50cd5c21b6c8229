"""Deterministic ODEs of one-pass SGD in summary-statistics space (Saad-Solla scaling).

``dR/dt = lr * (gradient-flow velocity of R)``, ``dQ/dt = lr * (gradient-flow velocity of Q)
+ lr^2 E[relu'(lambda_k) relu'(lambda_l) (f - y)^2]`` (eqs. (3.2)-(3.4) of docs/theory.md). With ``eta2`` off
this is exactly gradient flow of the population loss seen through ``(Q, R)``.

:func:`integrate_ode` integrates the student rows in the span of the units
(:mod:`landscape.dynamics.span`): the overlaps are a Gram matrix at every step, the pair
residuals are exact near alignment and the loss is evaluated in extended precision, so a
gradient flow's loss never increases and follows weight-space gradient flow down to ~1e-13. It
runs the compiled solver (numba; the four-point expectations of the ``eta^2`` term carried along
the trajectory) and finishes with scipy's ``solve_ivp`` and the exact quadrature where the
carried derivatives stop being reliable (then on the teacher-span coordinates and the Schur
complement ``C = Q - R T^+ R^T``, positive semi-definite to the integration's tolerance; the
output's overlaps are those of the rows ``[A | C_+^(1/2)]``, a Gram matrix again); see
:mod:`landscape.dynamics.ode_solvers`.
Until numba has compiled the solver for this machine it uses ``solve_ivp`` throughout while a
background process compiles (:mod:`landscape.dynamics.warmup`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from ..model.config import RunConfig

import numpy as np

from ..kernels.overlaps import validate_overlaps
from ..model.config import require_run_config
from ..model.initialisation import initial_overlaps
from ..model.loss import loss_from_overlaps
from .fourpoint_flow import carried_four_point_applies
from .ode_solvers import initial_state, ode_velocity, solve_compiled, solve_numpy
from .span import (
    SINGULAR_ORTHOGONAL_PART,
    loss_from_rows,
    overlaps_from_rows,
    rows_from_schur,
    schur_from_rows,
    split_schur,
    student_rows,
    teacher_rows,
)
from .trajectory import FlowStatus, SolverStats, Trajectory, final_time_message
from .warmup import compiled_solver_ready, mark_compiled, start_background_compilation

__all__ = ["ode_velocity", "integrate_ode", "run_flow", "compile_ode", "MAX_OUTPUT_POINTS"]

#: Most output times of one trajectory (each holds K^2 + K M numbers; 1e9 of them would be ~60 GB).
MAX_OUTPUT_POINTS = 100_000

#: Overlaps larger than this (relative to the teacher scale) count as divergence.
DIVERGENCE_BOUND = 1e6


class _CarriedFailed(Exception):
    pass


_FOUR_POINT_METHODS = ("auto", "carried", "quadrature")


def _time_grid(t_end, n_points):
    if t_end <= 0:
        return np.array([0.0])
    first = min(1e-3, t_end / n_points)
    times = np.empty(n_points)
    times[0] = 0.0
    times[1:] = first * (t_end / first) ** _grid_exponents(n_points)
    times[-1] = t_end
    return times


@functools.lru_cache(maxsize=8)
def _grid_exponents(n_points):
    # The same for every run with n_points output times (linspace's own overhead was a few
    # percent of a short gradient flow).
    exponents = np.linspace(0.0, 1.0, n_points - 1)
    exponents.setflags(write=False)
    return exponents


def integrate_ode(Q0: ArrayLike, R0: ArrayLike, T: ArrayLike, lr: float, t_max: float, eta2: bool = True,
                  noise: float = 0.0, tol: float = 1e-8, n_points: int = 400, rtol: float | None = None,
                  atol: float | None = None, four_point: str = "auto", solver: str = "auto") -> Trajectory:
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
        Tolerances of the Runge-Kutta integrator (DOP853) on the student rows in the span of the
        units (:mod:`landscape.dynamics.span`). Default ``3e-9, 1e-12`` with ``eta2`` off (the
        loss within 1% of weight-space gradient flow down to 1e-13, through the plateau of a
        correlated teacher, whose escape amplifies earlier errors: 0.3% at ``3e-9`` and at
        ``1e-9``, 0.6-0.9% at ``4e-9`` to ``6e-9``, 10% at ``1e-8``); ``1e-6, 1e-9`` with ``eta2``
        on (the global error stays near ``1e-9`` in the loss).
    four_point : {"auto", "carried", "quadrature"}, optional
        How the ``eta^2`` term is evaluated. ``"carried"``: the four-point expectations join the
        state and are integrated along the trajectory by Price's theorem
        (:mod:`landscape.dynamics.fourpoint_flow`; exact initial values, compiled, milliseconds per run).
        ``"quadrature"``: the exact quadrature at every evaluation (scipy's ``solve_ivp``,
        seconds per run). ``"auto"`` (default) carries them, and uses the quadrature from the
        start if two units start within ``1e-8`` of alignment or a unit starts dead, and from the
        point where that happens if it happens during the run (a flow converging onto a teacher).
    solver : {"auto", "compiled", "numpy"}, optional
        ``"compiled"``: the compiled solver (numba; compiles for this machine first if its disk
        cache is empty, 30-45 s once). ``"numpy"``: scipy's ``solve_ivp`` (the same DOP853
        method and tolerances) on the same right-hand side, with the ``eta^2`` term by
        quadrature (then on the Schur complement, eq. (3.8b) of docs/theory.md).
        ``"auto"`` (default): the compiled solver if it is ready without compiling, else the
        numpy one while a background process compiles (:mod:`landscape.dynamics.warmup`); with
        ``four_point="carried"``, which only the compiled solver has, the compiled one. The
        results agree to the integration tolerances (test).

    Returns
    -------
    Trajectory
        Overlaps and loss at the output times, the status (``FAILED`` with the integrator's
        reason when it could not continue, ``DIVERGED`` when the overlaps grew without bound) and
        the solvers' statistics (:class:`landscape.dynamics.trajectory.SolverStats`).

    Raises
    ------
    ValueError
        If the overlaps are invalid or ``lr``, ``t_max``, ``noise``, ``tol``, ``n_points``,
        ``four_point`` or ``solver`` are out of range, or ``four_point="carried"`` cannot be used
        from these overlaps, to the end of this run or with ``solver="numpy"``.
    """
    Q0, R0, T = validate_overlaps(Q0, R0, T)
    for name, value in (("lr", lr), ("t_max", t_max), ("tol", tol)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    if (isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer))
            or not 2 <= n_points <= MAX_OUTPUT_POINTS):
        raise ValueError(f"n_points must be a whole number from 2 (t = 0 and the final time) to "
                         f"{MAX_OUTPUT_POINTS:,}, got {n_points!r}")
    if four_point not in _FOUR_POINT_METHODS:
        raise ValueError(f"four_point must be one of {', '.join(_FOUR_POINT_METHODS)}; got {four_point!r}")
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(_SOLVERS)}; got {solver!r}")
    if four_point == "carried" and solver == "numpy":
        raise ValueError("four_point='carried' needs the compiled solver; use solver='auto' or 'compiled'")
    compiled = _compiled_serves(solver, four_point)
    applies = bool(eta2) and carried_four_point_applies(Q0, R0, T)
    if four_point == "carried" and eta2 and not applies:
        raise ValueError(
            "four_point='carried' needs all units alive and no two exactly aligned at the start; "
            "use four_point='quadrature' or 'auto'"
        )
    carried = applies and four_point != "quadrature" and compiled
    try:
        return _integrate(Q0, R0, T, lr, t_max, bool(eta2), noise, tol, n_points, rtol, atol, carried,
                          strict=four_point == "carried", compiled=compiled)
    except _CarriedFailed:
        raise ValueError(
            "four_point='carried' cannot finish this run: two units came within 1e-8 of alignment or a "
            "unit died, where the carried derivatives lose their accuracy; use four_point='auto', "
            "which continues with the quadrature from there"
        ) from None


_SOLVERS = ("auto", "compiled", "numpy")


def _compiled_serves(solver, four_point):
    """Whether the compiled solver runs this integration (see ``solver`` of :func:`integrate_ode`)."""
    if solver == "compiled" or four_point == "carried":
        return True
    if solver == "numpy":
        return False
    if compiled_solver_ready():
        return True
    start_background_compilation()
    return False


_STATUS = {"t_max": FlowStatus.T_MAX, "converged": FlowStatus.CONVERGED, "diverged": FlowStatus.DIVERGED,
           "failed": FlowStatus.FAILED}

# A failed solve whose overlaps grew this much (relative to the start and the teacher) was a
# blow-up between two accepted steps: diverged, not failed.
_GROWTH_OF_DIVERGENCE = 1e3


# The convergence time is where the speed falls to tol; near a fixed point approached at rate lam
# a state error e moves it by about e / tol. The run therefore goes to _APPROACH * tol with the
# given tolerances and finishes with tolerances _TIGHTEN times tighter, so that the reported time
# is accurate to ~1e-4 relative (test) for little extra work (a few decay times at the end).
_APPROACH, _TIGHTEN = 100.0, 100.0


def _integrate(Q0, R0, T, lr, t_max, eta2, noise, tol, n_points, rtol, atol, carried, strict, compiled=True):
    if rtol is None:
        rtol = 1e-6 if eta2 else 3e-9
    if atol is None:
        atol = 1e-9 if eta2 else 1e-12
    bound = DIVERGENCE_BOUND * max(1.0, float(np.max(np.diag(T))), float(np.max(np.diag(Q0))))
    K = Q0.shape[0]
    settings = dict(lr=lr, t_max=t_max, noise=noise, rtol=rtol, atol=atol, bound=bound)
    tail = dict(settings, rtol=max(rtol / _TIGHTEN, 1e-13), atol=atol / _TIGHTEN, tol=tol)
    settings["tol"] = _APPROACH * tol
    U0, orthogonal = student_rows(Q0, R0, teacher_rows(T, K))
    # The eta^2 term by quadrature (no carried state), or from a start with (nearly) all students
    # in the teacher span (where dS = Phi S^-T / 2 is unbounded), runs on the Schur complement
    # (A, C): the quadrature's rounding (~1e-12), divided by S, made the step size collapse.
    layout = "schur" if eta2 and (orthogonal < SINGULAR_ORTHOGONAL_PART or not carried) else "span"
    if layout == "schur":
        pieces = [solve_numpy(schur_from_rows(U0, K), 0.0, K, T, eta2=True, layout=layout, **settings)]
    elif not compiled:
        # Not compiled yet (landscape.dynamics.warmup): scipy's solver on the same rows.
        pieces = [solve_numpy(U0.ravel(), 0.0, K, T, eta2=False, **settings)]
    else:
        pieces = [solve_compiled(initial_state(U0, Q0, R0, T, carried), 0.0, K, T, carried=carried, **settings)]
        pieces += _continue(pieces[-1], K, T, eta2, carried, strict, settings)
    last = pieces[-1]
    if last.status == "converged":
        if last.state_end is not None:  # a compiled piece: continue with its whole state
            pieces.append(solve_compiled(last.state_end, last.t_end, K, T, carried=carried, **tail))
            pieces += _continue(pieces[-1], K, T, eta2, carried, strict, tail)
        else:
            pieces.append(solve_numpy(last.y_end, last.t_end, K, T, eta2=eta2, layout=last.layout, **tail))
    return _trajectory(pieces, K, T, n_points, Q0)


def _continue(piece, K, T, eta2, carried, strict, settings):
    """The numpy solver's continuation of a compiled piece that stopped where it is no longer
    reliable, as a list of zero or one piece."""
    if not (piece.status == "handover" or (carried and piece.status == "failed")):
        return []
    # The compiled run stopped where it stops being reliable (units within 1e-8 of alignment,
    # a collapsing step): the numpy solver, with the exact quadrature, continues from the last
    # accepted step.
    if strict:
        raise _CarriedFailed
    if not eta2:
        return [solve_numpy(piece.y_end, piece.t_end, K, T, eta2=False, **settings)]
    # With the eta^2 term by quadrature the orthogonal factor is no help here: the quadrature's
    # rounding (~1e-12), divided by an orthogonal part that shrinks onto the teacher, made the
    # step size collapse (3569 steps for the default run's tail instead of 78). The Schur
    # complement C = S S^T carries on, where that rounding enters additively.
    return [solve_numpy(schur_from_rows(piece.y_end.reshape(K, -1), K), piece.t_end, K, T, eta2=True,
                        layout="schur", **settings)]


# Losses below this are evaluated in extended precision: double precision is accurate to ~1e-16
# absolute, i.e. 1e-6 relative here, and only differences of consecutive output times far below
# that (none above the floor in the benchmark's runs) could show as an increase.
_EXTENDED_BELOW = 1e-10


def _overlaps_and_loss(states, layout, K, T):
    """``Q``, ``R`` and the loss at flat states (n_times, n) of a ``layout``; small losses from
    student rows in extended precision (:func:`landscape.dynamics.span.loss_from_rows`)."""
    V = teacher_rows(T, K)
    if layout == "schur":
        # The overlaps of the rows [A | C_+^(1/2)]: C projected onto the positive semi-definite
        # cone (its negative eigenvalues clipped), as the right-hand side already sees it. The
        # integrated C is a free symmetric matrix, accurate to its tolerance (1e-11 absolute)
        # where the exact C is ~1e-10 and positive semi-definite: the correlated-teacher tail
        # reported Gram eigenvalues of -5e-11. The exact C lies in the cone, so the projection
        # (the nearest point of a convex set) is never farther from it than the integrated C
        # (a projection method; Hairer, Lubich & Wanner, Geometric Numerical Integration, IV.4).
        U = rows_from_schur(*split_schur(states, K))
    else:
        U = states.reshape(states.shape[0], K, -1)
    Q, R = overlaps_from_rows(U, V)
    with np.errstate(all="ignore"):
        loss = loss_from_overlaps(Q, R, T)
        # Double precision leaves a floor of ~1e-16 (the loss is a difference of sums of order
        # one); extended precision, ten times slower, only where that floor shows.
        small = ~(loss > _EXTENDED_BELOW)
        if np.any(small):
            loss[small] = loss_from_rows(U[small], V)
        return Q, R, loss


def _stats(pieces):
    handover = next((after.t0 for before, after in zip(pieces, pieces[1:])
                     if before.solver == "compiled" and after.solver == "scipy"), None)
    return SolverStats(
        accepted_steps=sum(piece.accepted for piece in pieces), rejected_steps=sum(piece.rejected for piece in pieces),
        rhs_evaluations=sum(piece.nfev for piece in pieces), handover_time=handover,
        variables=", then ".join(dict.fromkeys(piece.layout for piece in pieces)),
    )


def _trajectory(pieces, K, T, n_points, Q0):
    last = pieces[-1]
    M = T.shape[0]
    if last.status == "failed":
        parts = [(piece.steps_t, _overlaps_and_loss(piece.steps_y, piece.layout, K, T)) for piece in pieces]
        times = np.concatenate([part[0] for part in parts])
        Q, R, loss = (np.concatenate([part[1][i] for part in parts]) for i in range(3))
    else:
        times = _time_grid(last.t_end, n_points)
        Q, R, loss = np.empty((times.size, K, K)), np.empty((times.size, K, M)), np.empty(times.size)
        # The states of each layout, the last one ending with the final state, then one
        # evaluation of the overlaps and the loss per layout (each costs as much for one time as
        # for a few hundred).
        states = {}
        for piece in pieces:
            inside = (times >= piece.t0) & (times <= piece.t_end)
            if piece is last:
                inside[-1] = False
            if np.any(inside):
                states.setdefault(piece.layout, []).append((np.flatnonzero(inside), piece.evaluate(times[inside])))
        states.setdefault(last.layout, []).append((np.array([times.size - 1]), last.y_end[None, :]))
        for layout, parts in states.items():
            where = np.concatenate([part[0] for part in parts])
            Q[where], R[where], loss[where] = _overlaps_and_loss(np.concatenate([part[1] for part in parts]), layout, K, T)
    status = _STATUS[last.status]
    message = final_time_message(status, last.t_end)
    if status is FlowStatus.FAILED:
        size = max(1.0, float(np.max(np.abs(Q0))), float(np.max(np.abs(T))))
        if not np.all(np.isfinite(Q[-1])) or np.max(np.abs(Q[-1])) > _GROWTH_OF_DIVERGENCE * size:
            status = FlowStatus.DIVERGED
            message = final_time_message(status, last.t_end)
        else:
            message = f"{message}: {last.reason}"
    return Trajectory(
        t=np.asarray(times, dtype=float), Q=Q, R=R, T=T, loss=loss,
        status=status, message=message, method="ode", stats=_stats(pieces),
    )


def run_flow(config: RunConfig, tol: float = 1e-8, n_points: int = 400, solver: str = "auto") -> Trajectory:
    """Integrate the ODE of a :class:`RunConfig` from its initial condition.

    Parameters
    ----------
    config : RunConfig
    tol : float, optional
        Convergence threshold (see :func:`integrate_ode`).
    n_points : int, optional
        Number of output times.
    solver : {"auto", "compiled", "numpy"}, optional
        Which solver integrates (see :func:`integrate_ode`).

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        If ``config`` is not a RunConfig, or ``tol``, ``n_points`` or ``solver`` are out of range.
    """
    require_run_config(config)
    Q0, R0 = initial_overlaps(config)
    return integrate_ode(
        Q0, R0, config.teacher_matrix(), config.lr, config.t_max,
        eta2=config.eta2, noise=config.noise, tol=tol, n_points=n_points, solver=solver,
    )


def compile_ode():
    """Compile the ODE solver now instead of at the first :func:`integrate_ode` call.

    The right-hand side and the integrator are compiled by numba for this machine: about 40
    seconds the first time, after which numba's on-disk cache (next to the package) loads them in
    about a second per process. :func:`integrate_ode` does not wait for this: until the cache is
    filled it integrates with the numpy solver while :mod:`landscape.dynamics.warmup` compiles in
    a background process.

    Returns
    -------
    Trajectory
        A short run that exercised both right-hand sides (with and without the ``eta^2`` term).
    """
    T = np.eye(2)
    Q0, R0 = np.array([[0.5, 0.1], [0.1, 0.4]]), np.array([[0.2, 0.05], [0.03, 0.3]])
    integrate_ode(Q0, R0, T, 0.5, 1.0, eta2=False, solver="compiled")
    trajectory = integrate_ode(Q0, R0, T, 0.5, 1.0, eta2=True, four_point="carried", solver="compiled")
    mark_compiled()  # numba's cache now holds every compiled function (landscape.dynamics.warmup)
    return trajectory
