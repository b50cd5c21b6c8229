"""Cost models (issue 18): each estimate, made before any work, against the work a real run does.

The work is measured by counting the inner kernel's evaluations in a real run (the batched
gradient with its batch size, the ODE right-hand side, the Hessians), each at the model's price
per evaluation, and the memory with tracemalloc. A budget needs the order of magnitude: each
estimate must be within a factor of 10 of the measurement (not a timing: CPU seconds are in
benchmarks/bench_costs.py).
"""

import tracemalloc

import numpy as np
import pytest

from landscape.catalogues import connections as connections_module
from landscape.catalogues.build import build_catalogue
from landscape.catalogues.connections import ConnectOptions, connect_catalogue
from landscape.catalogues.costs import (
    CALL_OVERHEAD,
    branch_cost,
    catalogue_cost,
    connection_cost,
    flow_cost,
    gradient_operations,
    spectrum_cost,
    velocity_operations,
)
from landscape.critical_points import batch_flow, continuation, search, transition
from landscape.critical_points.continuation import continue_fixed_point
from landscape.critical_points.fixed_points import ode_fixed_point
from landscape.critical_points.hessian import hessian_spectrum
from landscape.dashboard import DemoCaps
from landscape.dynamics.ode import run_flow
from landscape.model.config import InitSpec, RunConfig


def _within_ten(estimate, measured):
    assert measured > 0
    assert 0.1 <= estimate / measured <= 10.0, f"estimate {estimate:.3g}, measured {measured:.3g}"


@pytest.fixture
def gradients(monkeypatch):
    """Counts of batched gradients (students, numpy calls), wherever the flows call them."""
    counts = {"students": 0, "calls": 0, "hessians": 0}
    original = batch_flow.unchecked_batch_gradient

    def counted(W, W_teacher, *args, **kwargs):
        counts["students"] += W.shape[0] if W.ndim == 3 else 1
        counts["calls"] += 1
        return original(W, W_teacher, *args, **kwargs)

    for module in (batch_flow, search, connections_module):
        monkeypatch.setattr(module, "unchecked_batch_gradient", counted)
    flow_batch = batch_flow.flow_batch

    def counted_flow(W, *args, **kwargs):
        # The compiled flow: one gradient per start, then three per step attempt, in one call.
        result = flow_batch(W, *args, **kwargs)
        counts["students"] += W.shape[0] + 3 * int(result.steps.sum())
        counts["calls"] += 1
        return result

    monkeypatch.setattr(search, "flow_batch", counted_flow)
    for module in (transition, connections_module):
        hessian = module.weight_hessian

        def counted_hessian(*args, _hessian=hessian, **kwargs):
            counts["hessians"] += 1
            return _hessian(*args, **kwargs)

        monkeypatch.setattr(module, "weight_hessian", counted_hessian)
    return counts


def _measured_gradient_work(counts, K, M, n, spectra=0):
    return (counts["students"] * gradient_operations(K, M, n) + counts["calls"] * CALL_OVERHEAD
            + (counts["hessians"] + spectra) * spectrum_cost(K, M, n).operations)


@pytest.mark.parametrize("K, starts", [(3, 8), (5, 16)])
def test_a_catalogues_estimate_is_the_order_of_its_measured_work(gradients, K, starts):
    config = RunConfig(K=K, M=K, eta2=False, init=InitSpec(d=K, seed=0))
    estimate = catalogue_cost(config, starts)
    catalogue = build_catalogue(config, starts, 0, workers=1)
    _within_ten(estimate.operations, _measured_gradient_work(gradients, K, K, 2 * K, spectra=len(catalogue.points)))


def test_the_estimate_of_connections_is_the_order_of_their_measured_work(gradients):
    config = RunConfig(K=4, M=4, eta2=False, init=InitSpec(d=4, seed=0))
    catalogue = build_catalogue(config, 12, 0, workers=1)
    estimate = connection_cost(catalogue, max_index=6, climb_modes=2)
    for key in gradients:
        gradients[key] = 0
    connect_catalogue(catalogue, ConnectOptions(max_index=6, climb_modes=2))
    _within_ten(estimate.operations, _measured_gradient_work(gradients, 4, 4, 8))


def test_the_estimate_of_a_continuation_is_the_order_of_its_right_hand_sides(monkeypatch):
    # The continuation's Jacobian became compiled (Price derivatives) after the cost model was first written
    # for 2 N differenced right-hand sides per step: the model went stale, and this test now counts the
    # right-hand sides the continuation really evaluates.
    calls = {"jacobian": 0, "velocity": 0}
    original = continuation.right_hand_side

    def counted(*args, **kwargs):
        calls["jacobian" if kwargs.get("jacobian", True) else "velocity"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(continuation, "right_hand_side", counted)
    for K in (2, 4):
        calls.update(jacobian=0, velocity=0)
        T = np.eye(K)
        start = ode_fixed_point(T, T, T, 0.3, True, 0.1)
        branch = continue_fixed_point(start.Q, start.R, T, 0.3, 2.0, True, 0.1, max_steps=40)
        assert len(branch.lr) == 40  # the branch used every step, as the estimate assumes
        unknowns = K * (K + 1) // 2 + K * K
        measured = (calls["jacobian"] + calls["velocity"]) * velocity_operations(K, K, True) \
            + calls["jacobian"] * 2 * unknowns * velocity_operations(K, K, False)
        _within_ten(branch_cost(K, K, max_steps=40).operations, measured)


@pytest.mark.parametrize("K, eta2", [(3, False), (6, False), (2, True)])
def test_the_estimate_of_a_flow_is_the_order_of_its_right_hand_sides(K, eta2):
    config = RunConfig(K=K, M=K, eta2=eta2, lr=0.5, noise=0.1 if eta2 else 0.0, t_max=1000.0)
    run = run_flow(config)
    measured = run.stats.rhs_evaluations * velocity_operations(K, K, False)
    estimate = flow_cost(config).operations
    if eta2:  # an upper bound: every right-hand side priced with the four-point quadrature
        assert estimate >= measured
        _within_ten(estimate, run.stats.rhs_evaluations * velocity_operations(K, K, True))
    else:
        _within_ten(estimate, measured)


def test_eta2_flows_at_a_small_learning_rate_are_priced_by_their_quadrature_stretch():
    # Issue 18: /flows?eta2=true&lr=0.1&tmax=3000 at the default K = M = 4 ran for over 51 CPU s
    # (33,436 four-point quadratures, unfinished): near the teacher the flow hands over to the
    # quadrature, and that stretch grows as lr shrinks. lr = 0.5 converged in 4.7 CPU s, and
    # lr = 0.1 up to t = 1000 (before the handover) took 0.4 CPU s.
    caps = DemoCaps()
    slow = RunConfig(K=4, M=4, eta2=True, lr=0.1, t_max=3000.0)
    assert caps.over_budget("", flow_cost(slow))
    assert not caps.over_budget("", flow_cost(slow.replace(lr=0.5)))
    assert not caps.over_budget("", flow_cost(slow.replace(t_max=100.0)))
    assert flow_cost(slow).operations > 10 * flow_cost(slow.replace(lr=0.5)).operations


def test_a_spectrum_costs_the_same_at_every_d_and_its_memory_is_estimated():
    # The exact spectrum never forms the K d x K d Hessian (the bulk is one eigenvalue with
    # multiplicity d - r): d = 1e9 must cost what d = 100 costs.
    K = 6
    rng = np.random.default_rng(0)
    W, W_teacher = rng.normal(size=(K, 2 * K)) / np.sqrt(2 * K), np.eye(K, 2 * K)
    T, Q, R = W_teacher @ W_teacher.T, W @ W.T, W @ W_teacher.T
    assert spectrum_cost(K, K, 10**9) == spectrum_cost(K, K, 100)
    tracemalloc.start()
    try:
        spectrum = hessian_spectrum(Q, R, T, 10**9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert spectrum.multiplicities.sum() == K * 10**9
    _within_ten(spectrum_cost(K, K, 10**9).bytes, peak)


def test_over_budget_says_what_is_allowed_and_how_to_change_it():
    caps = DemoCaps(max_operations=1e9, max_bytes=2**20)
    (sentence,) = caps.over_budget("a catalogue of 200 starts at K = 16, M = 16", (3.7e10, 1e5))
    assert "3.7e+10 operations" in sentence and "1.0e+09 operations" in sentence
    assert "LANDSCAPE_MAX_OPERATIONS" in sentence and "LANDSCAPE_MAX_BYTES" in sentence
    assert caps.over_budget("x", (1e9, 2**20)) == ()
    assert "LANDSCAPE_MAX_BYTES" in caps.over_budget("x", (1.0, 2.0**21))[0]
    assert DemoCaps(enabled=False).over_budget("x", (1e20, 1e20)) == ()
    env = {"LANDSCAPE_DEMO": "1", "LANDSCAPE_MAX_OPERATIONS": "5e11", "LANDSCAPE_MAX_BYTES": "1e9"}
    assert DemoCaps.from_env(env).max_operations == 5e11 and DemoCaps.from_env(env).max_bytes == 1e9
    with pytest.raises(ValueError, match="LANDSCAPE_MAX_OPERATIONS"):
        DemoCaps.from_env({"LANDSCAPE_DEMO": "1", "LANDSCAPE_MAX_OPERATIONS": "lots"})


def test_the_default_budget_admits_the_default_views_and_refuses_the_hostile_ones():
    caps = DemoCaps()
    default = RunConfig(K=4, M=4, eta2=False)
    assert not caps.over_budget("", catalogue_cost(default, 50))
    assert not caps.over_budget("", flow_cost(default, 4))
    assert not caps.over_budget("", branch_cost(2, 2))  # the Learning rate page's preset
    widest = RunConfig(K=16, M=16, eta2=False)
    # Measured: 29 CPU s at d = 16 before the compiled flow, 11 CPU s since (the estimate still prices a
    # numpy call per batched step: up to 4x over at K = 16).
    assert caps.over_budget("", catalogue_cost(widest, 200))
    assert caps.over_budget("", catalogue_cost(RunConfig(K=8, M=8), 20, "finite_lr"))  # > 150 s here
    assert caps.over_budget("", branch_cost(8, 8))  # measured: 752 s


def test_cost_models_refuse_bad_input_in_one_line():
    with pytest.raises(ValueError, match="starts must be a positive whole number"):
        catalogue_cost(RunConfig(), 0)
    with pytest.raises(ValueError, match="regime must be"):
        catalogue_cost(RunConfig(), 5, "fast")
    with pytest.raises(ValueError, match="K must be a positive whole number"):
        spectrum_cost(0, 2, 10)
    with pytest.raises(ValueError, match="catalogue must be a Catalogue"):
        connection_cost("catalogue", 2, 2)
