"""Cost models: the work and memory of each computation a dashboard link can ask for, before it starts.

A hosted demo refuses a request over its budget (``landscape.dashboard.DemoCaps.over_budget``), so
every computation a link can start has a model here that estimates its cost from the request's
parameters alone, before any work. One *operation* is the work of about one nanosecond on one core
of the machine that calibrated the models (a multiply-add in a vectorised kernel, or a share of a
numpy call's fixed overhead, :data:`CALL_OVERHEAD`); ``benchmarks/bench_costs.py`` prints the
estimates against CPU seconds. The SGD overlay has its own model,
:func:`landscape.dynamics.sgd.sgd_cost`.

Each model counts the evaluations of the computation's inner kernel (a batched gradient of the
loss, a right-hand side of the ODE, a Jacobian column) and multiplies by the kernel's cost. The
counts are fits to measured counts (tests/test_costs.py checks them against counts measured in
real runs, to an order of magnitude: that is what a budget needs).
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
#: Gradient evaluations of one random start in a catalogue's search (flow, then Newton polish):
#: ``_SEARCH_GRADIENTS * K**2`` (fit to K = 4 and 8), and gradients per numpy call.
_SEARCH_GRADIENTS, _GRADIENTS_PER_CALL = 23.0, 7.0
#: The ansatz search of a catalogue (whatever the number of starts): ``_ANSATZ_GRADIENTS * K**2`` gradients.
_ANSATZ_GRADIENTS = 830.0
#: Gradient evaluations of one descent out of a saddle (connections): ``_DESCENT_GRADIENTS * K**2.5``.
_DESCENT_GRADIENTS = 25.0
#: Right-hand sides of one ODE flow to convergence: ``_FLOW_EVALUATIONS * K**1.3`` (fit to K = 2..12).
_FLOW_EVALUATIONS = 600.0
#: ``t_max * lr`` beyond which an ``eta^2`` flow may reach the quadrature stretch near the teacher (the
#: handover came at t lr = 70 to 160 in the flows measured).
_HANDOVER_TIME_LR = 50.0
#: One evaluation of the four-point ``eta^2`` term per set of four distinct units (6 pairs x 43 nodes).
_FOUR_POINT_SET = 5e3
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


def velocity_operations(K: int, M: int, eta2: bool) -> float:
    """Operations of one right-hand side of the ODE in overlaps (numpy; with ``eta2`` the four-point term).

    The ``eta^2`` term needs one path integral per set of four distinct units
    (:mod:`landscape.kernels.fourpoint`): ``C(K + M, 4)`` of them, plus a few hundred numpy calls.
    """
    K, M = _widths(K, M)
    base = 3.0 * K * (K + M) ** 2 + CALL_OVERHEAD
    return base + (_FOUR_POINT_SET * comb(K + M, 4) + 20 * CALL_OVERHEAD if eta2 else 0.0)


def flow_cost(config, runs: int = 1) -> Cost:
    """Cost of ``runs`` ODE flows of ``config`` (Flows page: the run and the phase portrait's seeds).

    The compiled solver integrates (``3 K (K + M)^2`` per right-hand side, and with ``eta2`` a
    compiled term per set of four distinct units). With ``eta2``, a flow that comes near the teacher
    (after a time of order ``50 / lr``) hands its last stretch to the four-point quadrature, and that
    stretch takes more right-hand sides the smaller ``lr`` is: at K = M = 4 and t_max = 3000, lr = 0.5
    converged after 4,265 in 4.7 CPU s, lr = 0.1 had used 33,436 quadratures and 51 CPU s and was still
    running. Such flows are priced with every right-hand side by quadrature, ``(0.5 / lr)^2`` times as
    many (a bound for a budget, not a prediction). The trajectory holds 400 output times.
    """
    require_run_config(config)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive whole number, got {runs!r}")
    K, M = config.K, config.M
    evaluations = _FLOW_EVALUATIONS * K ** 1.3
    per_evaluation = velocity_operations(K, M, False) + (200.0 * comb(K + M, 4) if config.eta2 else 0.0)
    if config.eta2 and config.t_max * config.lr > _HANDOVER_TIME_LR:
        evaluations *= (0.5 / min(config.lr, 0.5)) ** 2
        per_evaluation = velocity_operations(K, M, True)
    # 400 output times of Q and R, and the dense output: 8 coefficient rows per accepted step (one in 12 evaluations).
    memory = _FLOAT * (400 * (K * K + K * M) * 4 + evaluations / 12 * 8 * K * (K + M))
    return Cost(runs * evaluations * per_evaluation, memory)


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

    Gradient flow: each start's search takes ``~23 K^2`` batched gradients in the span of dimension
    ``K + M``, the ansatz search ``~830 K^2``, and every distinct point (at most about
    ``min(starts, 2 K) + K``) a Hessian spectrum. Finite lr: each start is an ODE flow with the
    four-point term, then Newton's method with Jacobians by differences (1.5 CPU s measured for 8 starts at
    K = M = 2, estimated 2.5e9).
    """
    require_run_config(config)
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ValueError(f"starts must be a positive whole number, got {starts!r}")
    K, M = config.K, config.M
    n = K + M
    gradient = gradient_operations(K, M, n) + CALL_OVERHEAD / _GRADIENTS_PER_CALL
    search = (starts * _SEARCH_GRADIENTS + _ANSATZ_GRADIENTS) * K ** 2
    points = min(starts, 2 * K) + K
    cost = Cost(search * gradient, _FLOAT * (4 * starts * K * n + 64 * K * n)) + _times(points, spectrum_cost(K, M, n))
    if regime == "gradient_flow":
        return cost
    if regime != "finite_lr":
        raise ValueError(f"regime must be 'gradient_flow' or 'finite_lr', got {regime!r}")
    unknowns = K * (K + 1) // 2 + K * M
    # The flow runs compiled (a tenth of its right-hand sides priced at the quadrature's cost); Newton's
    # method takes up to 20 Jacobians by central differences with the quadrature.
    per_start = (_FLOW_EVALUATIONS * K ** 1.3 / 10 + 20 * 2 * unknowns) * velocity_operations(K, M, True)
    return cost + Cost(starts * per_start, _FLOAT * 4 * unknowns ** 2)


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
    gradient = gradient_operations(wider, M, n) + CALL_OVERHEAD
    per_split = Cost(2 * (_SEARCH_GRADIENTS * wider ** 2 + 1000) * gradient, _FLOAT * 2000 * 2 * wider * n)
    per_split = per_split + _times(3, spectrum_cost(wider, M, n))
    return _times(K, per_split)
