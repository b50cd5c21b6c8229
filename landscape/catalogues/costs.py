"""Cost models: the work and memory of each computation a dashboard link can ask for, before it starts.

A hosted demo refuses a request over its budget (``landscape.dashboard.DemoCaps.over_budget``), so
every computation a link can start has a model here that estimates its cost from the request's
parameters alone, before any work. One *operation* is the work of about one nanosecond on one core
of the machine that calibrated the models (a share of a compiled kernel's work, or of a numpy call's
fixed overhead, :data:`CALL_OVERHEAD`); ``benchmarks/bench_costs.py`` prints the estimates against
CPU seconds. The SGD overlay has its own model, :func:`landscape.dynamics.sgd.sgd_cost`.

Each model counts the evaluations of the computation's inner kernel (a gradient of the loss in the
compiled flow or a numpy-batched one, a right-hand side of the ODE, a Hessian, a Jacobian column)
and multiplies by the kernel's cost. The counts and prices are fits to CPU seconds and counts
measured in real runs with one BLAS thread (2-core machine, load average 3-4): tests/test_costs.py
checks the counts in real runs and the catalogue and flow estimates against CPU seconds, within 3x.
"""

from __future__ import annotations

from math import comb
from typing import NamedTuple

from ..model.config import require_run_config
from .records import Catalogue, PointKind

__all__ = ["Cost", "CALL_OVERHEAD", "gradient_operations", "velocity_operations", "flow_cost", "catalogue_cost",
           "connection_cost", "branch_cost", "spectrum_cost", "add_student_cost"]

#: Fixed cost of one call into numpy (~30 us in Python and dispatch), in operations.
CALL_OVERHEAD = 3e4
#: Gradient evaluations of one descent out of a saddle (connections, numpy-batched):
#: ``_DESCENT_GRADIENTS * K**2.5``, and gradients per numpy call.
_DESCENT_GRADIENTS, _GRADIENTS_PER_CALL = 25.0, 7.0
#: Flow steps of one random start of a catalogue's search: ``_SEARCH_STEPS * max(K, M)**1.6`` (mean steps
#: per start measured at K = M = 4, 6, 8, 12, 16, 20: 107-122, 217, 330-342, 680, 1070, 1450-1465; 1344
#: at K = 8, M = 16). With K > M a start costs about twice as much (flows creeping into the degenerate
#: minima, dead units flowed on, twice the Newton polishing: 1.6-2x measured at (16, 15), (17, 16), (16, 8)).
_SEARCH_STEPS, _WIDER_STUDENT = 13.0, 2.0
#: Newton polishing, hand-over convexity checks and candidates of one start: a fixed part (numpy calls)
#: and a part per entry of the ``K n x K n`` Hessians (2-98 ms a start measured, K n = 16 to 800).
_POLISH_FIXED, _POLISH_PER_ENTRY = 2e6, 150.0
#: The ansatz saddle search of a catalogue costs about as much as this many random starts (40-60 measured).
_ANSATZ_STARTS = 50.0
#: Each distinct point of a catalogue (spectrum, canonical form, family, orbit): ``3e6 + 1e4 (K M)^1.5``.
_POINT_FIXED, _POINT_PER_WIDTH = 3e6, 1e4
#: Right-hand sides of one ODE flow to convergence: ``_FLOW_EVALUATIONS * K**1.3`` (fit to K = 2..12).
_FLOW_EVALUATIONS = 600.0
#: ``t_max * lr`` beyond which an ``eta^2`` flow may reach the quadrature stretch near the teacher (the
#: handover came at t lr = 70 to 440 in the flows measured).
_HANDOVER_TIME_LR = 50.0
#: Right-hand sides by quadrature after the handover (340-1,390 measured at K = M = 3..10, lr = 0.05..0.5).
_QUADRATURE_EVALUATIONS = 1000.0
#: One evaluation of the four-point ``eta^2`` term by quadrature per set of four distinct units (fit to
#: 1.0-39 ms a right-hand side at K = M = 3..10), and one carried compiled evaluation per set (0.10-0.21 us
#: measured at K = M = 4..10, from random starts in d = 1000).
_FOUR_POINT_SET, _CARRIED_SET = 8e3, 150.0
#: One right-hand side of the compiled solver without the four-point term: ``2 K (K + M)^2 + 1500``
#: (2, 6.5, 14 and 29 us measured at K = M = 4, 8, 12, 16, load average 6).
_COMPILED_SIDE, _COMPILED_SIDE_FIXED = 2.0, 1500.0
#: Bytes of one number.
_FLOAT = 8.0


class Cost(NamedTuple):
    """Work and memory of one request, estimated before it starts.

    Attributes
    ----------
    operations : float
        About one nanosecond each on one core.
    bytes : float
        Peak memory of the arrays the computation holds.
    """

    operations: float
    bytes: float

    def __add__(self, other):
        return Cost(self.operations + other[0], self.bytes + other[1])


def _widths(K, M):
    for name, value in (("K", K), ("M", M)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(K), int(M)


def gradient_operations(K: int, M: int, n: int) -> float:
    """Operations of one student's gradient of the loss in the span of dimension ``n`` (batched flows).

    Every student-student and student-teacher pair needs a dot product in ``n`` dimensions and a
    Gaussian kernel (~10 operations); the gradient's rows are one more product of that size.
    """
    K, M = _widths(K, M)
    return float(K * (K + M) * (n + 10))


def _compiled_gradient(K: int, M: int, n: int) -> float:
    """Operations of one student's gradient in the compiled flow of a catalogue's search (span of dimension ``n``).

    :mod:`landscape.critical_points.flow_kernel`: per student-student and student-teacher pair a
    firing probability and kernel (about 8 ns) and vectorised dot products (``n / 8`` ns), plus the
    step's share of the Bogacki-Shampine bookkeeping. Fit to the search's flow time per gradient
    (three a step attempt) at K = M = 4..20, ``n = K`` and ``2 K``: 0.8-11.6 us.
    """
    K, M = _widths(K, M)
    return K * (K + M) * (8.0 + n / 8.0) + 500.0


def velocity_operations(K: int, M: int, eta2: bool) -> float:
    """Operations of one right-hand side of the ODE in overlaps (numpy; with ``eta2`` the four-point term).

    The ``eta^2`` term needs one path integral per set of four distinct units
    (:mod:`landscape.kernels.fourpoint`): ``C(K + M, 4)`` of them, plus a few hundred numpy calls
    (1.0, 1.7, 5.8, 17 and 39 ms measured at K = M = 3, 4, 6, 8, 10).
    """
    K, M = _widths(K, M)
    base = 3.0 * K * (K + M) ** 2 + CALL_OVERHEAD
    return base + (_FOUR_POINT_SET * comb(K + M, 4) + 20 * CALL_OVERHEAD if eta2 else 0.0)


def flow_cost(config, runs: int = 1) -> Cost:
    """Cost of ``runs`` ODE flows of ``config`` (Flows page: the run and the phase portrait's seeds).

    The compiled solver integrates (``2 K (K + M)^2`` per right-hand side, and with ``eta2`` the
    carried four-point term, 0.1-0.2 us per set of four distinct units: 0.27 ms a side measured at
    K = M = 8 from a random start in d = 1000, against 0.03 ms from one in the teacher's span).
    With ``eta2``, a flow that comes near the teacher (after a time of order ``50 / lr``) hands its last
    stretch to the four-point quadrature: about 1,000 right-hand sides by quadrature whatever ``lr``
    (measured at K = M = 3..6 and lr = 0.05..0.5: 340-1,000, 1.0-7.2 CPU s a flow; that stretch's step
    is capped at a multiple of ``1 / lr``). When this model was first written that stretch took
    ``(0.5 / lr)^2`` times as many at small lr (K = M = 4, lr = 0.1, t_max = 3000: 33,436 quadratures,
    over 51 CPU s; now 716 and 1.4 CPU s). Flows with label noise stay off the teacher and
    rarely reach the handover: for them the quadrature stretch is a bound. The trajectory holds 400
    output times.
    """
    require_run_config(config)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive whole number, got {runs!r}")
    K, M = config.K, config.M
    evaluations = _FLOW_EVALUATIONS * K ** 1.3
    side = _COMPILED_SIDE * K * (K + M) ** 2 + _COMPILED_SIDE_FIXED
    operations = evaluations * (side + (_CARRIED_SET * comb(K + M, 4) if config.eta2 else 0.0))
    if config.eta2 and config.t_max * config.lr > _HANDOVER_TIME_LR:
        operations += _QUADRATURE_EVALUATIONS * velocity_operations(K, M, True)
    # 400 output times of Q and R, and the dense output: 8 coefficient rows per accepted step (one in 12 evaluations).
    memory = _FLOAT * (400 * (K * K + K * M) * 4 + evaluations / 12 * 8 * K * (K + M))
    return Cost(runs * operations, memory)


def spectrum_cost(K: int, M: int, d: int) -> Cost:
    """Cost of the exact Hessian spectrum of one point in input dimension ``d``.

    The ``K d`` dimensional Hessian is never formed: the span block (``K r x K r``, ``r <= min(K + M,
    d)``) is diagonalised and the ``K`` bulk eigenvalues carry multiplicity ``d - r``, so the cost
    does not grow with ``d``.
    """
    K, M = _widths(K, M)
    size = K * min(K + M, int(d))
    return Cost(0.2 * size ** 3 + 50 * CALL_OVERHEAD, _FLOAT * 6 * size ** 2)


def catalogue_cost(config, starts: int, regime: str = "gradient_flow") -> Cost:
    """Cost of :func:`landscape.catalogues.build.build_catalogue` for ``starts`` random starts.

    Gradient flow: each start is a compiled flow in the span of
    dimension ``n = min(K + M, max(d, M))`` and Newton's polishing; the ansatz search costs about 50
    starts, and every distinct point (about ``min(starts, K) + K``) its spectrum, canonical form and orbit.
    Measured (one process, load average 3-4): K = M = 16 with 200 starts 8-9 CPU s at d = 16 and 17 CPU s
    at d = 1000, K = M = 20 19-22 and 40 CPU s. Finite lr: each start is an ODE flow with the four-point
    term, then Newton's method with Jacobians by differences (2.1 CPU s measured for 8 starts at
    K = M = 2, 5.8 for 30).
    """
    require_run_config(config)
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ValueError(f"starts must be a positive whole number, got {starts!r}")
    K, M = config.K, config.M
    n = min(K + M, max(config.init.d, M))  # the span of the units (exact for any d)
    search = (starts + _ANSATZ_STARTS) * _search_start(K, M, n)
    points = min(starts, K) + K
    per_point = Cost(_POINT_FIXED + _POINT_PER_WIDTH * (K * M) ** 1.5, spectrum_cost(K, M, n).bytes)
    cost = Cost(search, _FLOAT * (4 * starts * K * n + 64 * K * n)) + _times(points, per_point)
    if regime == "gradient_flow":
        return cost
    if regime != "finite_lr":
        raise ValueError(f"regime must be 'gradient_flow' or 'finite_lr', got {regime!r}")
    unknowns = K * (K + 1) // 2 + K * M
    # The flow (Runge-Kutta 3(2) at rtol 1e-2, the quadrature at every right-hand side) takes about a tenth
    # of a gradient flow's right-hand sides; Newton's method up to 20 Jacobians by differences with the
    # quadrature (0.7-1.5 times the CPU s measured at K = M = 2, 3, 4, load average 4-6).
    per_start = (_FLOW_EVALUATIONS * K ** 1.3 / 10 + 20 * 2 * unknowns) * velocity_operations(K, M, True)
    return cost + Cost(starts * per_start, _FLOAT * 4 * unknowns ** 2)


def _search_start(K: int, M: int, n: int) -> float:
    """Operations of one random start of a catalogue's search in the span of dimension ``n``.

    The compiled flow (``13 max(K, M)^1.6`` steps of three :func:`_compiled_gradient` each),
    then Newton's polishing and the hand-over convexity checks (a fixed part and ``150 (K n)^2``
    for the Hessians); twice that with ``K > M``. See the constants' comments for what was measured.
    """
    K, M = _widths(K, M)
    flow = 3.0 * _SEARCH_STEPS * max(K, M) ** 1.6 * _compiled_gradient(K, M, n)
    polish = _POLISH_FIXED + _POLISH_PER_ENTRY * (K * n) ** 2
    return (flow + polish) * (_WIDER_STUDENT if K > M else 1.0)


def _times(count, cost):
    return Cost(count * cost.operations, cost.bytes)


def connection_cost(catalogue: Catalogue, max_index: int, climb_modes: int) -> Cost:
    """Cost of :func:`landscape.catalogues.connections.connect_catalogue` on ``catalogue``.

    Two descents (``~25 K^2.5`` gradients each, all descents batched) along each unstable direction
    of every saddle of index 1 to ``max_index``; from every minimum ``2 climb_modes`` climbs by
    eigenvector following (about 100 Hessians each); every end a Newton polish and a spectrum.
    """
    if not isinstance(catalogue, Catalogue):
        raise ValueError(f"catalogue must be a Catalogue, got {type(catalogue).__name__}")
    K, M = catalogue.config.K, catalogue.config.M
    n = K + M
    directions = sum(p.index for p in catalogue.points
                     if p.kind is PointKind.SADDLE and 1 <= p.index <= max(1, max_index))
    minima = sum(p.kind is PointKind.MINIMUM for p in catalogue.points)
    descents = 2 * directions
    gradient = gradient_operations(K, M, n) + CALL_OVERHEAD / _GRADIENTS_PER_CALL
    hessian = spectrum_cost(K, M, n)
    climbs = 2 * climb_modes * minima
    cost = Cost(descents * _DESCENT_GRADIENTS * K ** 2.5 * gradient,
                _FLOAT * descents * (K * n) * (1 + _DESCENT_GRADIENTS * K ** 2.5 / 3))
    return cost + _times(100 * climbs + descents + climbs, hessian)


def branch_cost(K: int, M: int, max_steps: int = 400) -> Cost:
    """Cost of a continuation in lr (:func:`landscape.critical_points.continuation.continue_fixed_point`).

    Every step computes one Jacobian (the four-point term's by its compiled Price derivatives, the
    gradient part by ``2 N`` batched gradient differences, ``N = K (K + 1) / 2 + K M`` unknowns) and
    Broyden-updated corrector steps: about 1.3 Jacobians and 7 right-hand sides with the four-point
    quadrature per step (counted at K = 2 and 4), priced here as 10 such right-hand sides. The branch
    keeps every point's Jacobian and eigenvalues.
    """
    K, M = _widths(K, M)
    unknowns = K * (K + 1) // 2 + K * M
    per_step = 10 * velocity_operations(K, M, True) + 2 * unknowns * velocity_operations(K, M, False)
    operations = max_steps * (per_step + 10.0 * unknowns ** 3)
    return Cost(operations, _FLOAT * max_steps * (unknowns * (unknowns + 1) + 3 * unknowns + K * K + K * M))


def add_student_cost(K: int, M: int) -> Cost:
    """Cost of :func:`landscape.critical_points.embedding.add_student` at a width-``K`` point.

    At most ``K`` splits (one per orbit of students), each a spectrum at width ``K + 1``, and for a
    saddle two escapes: a catalogue search of two starts and the drawn paths (~1000 gradients).
    """
    K, M = _widths(K, M)
    wider, n = K + 1, K + 1 + M
    paths = 1000 * (gradient_operations(wider, M, n) + CALL_OVERHEAD)  # drawn by solve_ivp, numpy gradients
    per_split = Cost(2 * (_search_start(wider, M, n) + paths), _FLOAT * 2000 * 2 * wider * n)
    per_split = per_split + _times(3, spectrum_cost(wider, M, n))
    return _times(K, per_split)
