"""Without label noise: the realisable global minimum is a fixed point at every lr and stops attracting at
lr_c (checked against flows and the Hessian), and the spurious minima, which the noise-free eta^2 term
pushes inside the cone, are continued like the noisy ones (checked against flows)."""

import numpy as np
import pytest

from landscape import FlowStatus, RunConfig, build_catalogue, integrate_ode
from landscape.catalogues.bifurcation import catalogue_bifurcation, global_minimum_branch
from landscape.critical_points.continuation import BranchStatus, EventKind
from landscape.critical_points.realisable import critical_lr, out_of_span_operator, realisable_branch, realisable_spectrum
from landscape.critical_points.stability import gradient_flow_eigenvalues

T2 = np.eye(2)


def test_single_unit_threshold_is_that_of_linear_regression():
    # K = M = 1: dS/dt = lr (-S + lr S / 2) by hand (P2 = P4 = 1/2), the lr < 2 of least squares with the
    # Saad-Solla scaling (the relu halves both the curvature and the gradient noise).
    assert critical_lr(np.eye(1)) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("T", [np.eye(3), np.array([[1.0, 0.3], [0.3, 1.2]])])
def test_out_of_span_drift_is_the_hessians_bulk(T):
    # -D (from orthant probabilities) against the bulk pairs of the exact Hessian (a separate computation):
    # the lr -> 0 limit of the out-of-span block.
    D, _ = out_of_span_operator(T)
    K = T.shape[0]
    bulk = gradient_flow_eigenvalues(T, T, T, 1.0)[K * K:]
    assert np.allclose(np.sort(np.linalg.eigvals(-D).real), np.sort(bulk), atol=1e-10)


def _converges(lr, t_max=600.0):
    # Noise 0, from the minimum with the students pushed out of the teacher span (S = 1e-3 I). Close to
    # lr_c the flow neither settles nor diverges by t_max (critical slowing down): then the sign of the
    # late slope of log L says which way it goes.
    trajectory = integrate_ode(T2 + 1e-3 * np.eye(2), T2.copy(), T2, lr, t_max, True, 0.0, tol=1e-10)
    if trajectory.status is FlowStatus.T_MAX:
        late = trajectory.t > 0.5 * t_max
        return np.polyfit(trajectory.t[late], np.log(trajectory.loss[late]), 1)[0] < 0, trajectory
    return trajectory.status is FlowStatus.CONVERGED, trajectory


def test_threshold_agrees_with_flows_that_settle_below_it_and_run_away_above_it():
    threshold = critical_lr(T2)
    low, high = 1.15, 1.4
    assert _converges(low)[0] and not _converges(high)[0]
    for _ in range(5):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if _converges(middle)[0] else (low, middle)
    assert low <= threshold <= high and high - low < 0.01
    assert 1.25 < low and high < 1.29  # the bracket the CLI and page tests quote


def test_decay_rate_of_a_perturbed_flow_is_the_top_eigenvalue():
    # Near lr_c the slowest mode is the out-of-span one the flow excites: its loss decays at that rate.
    lr = 0.95 * critical_lr(T2)
    _, trajectory = _converges(lr)
    window = (trajectory.t > 50) & (trajectory.t < 150)
    rate = np.polyfit(trajectory.t[window], np.log(trajectory.loss[window]), 1)[0]
    assert rate == pytest.approx(np.max(realisable_spectrum(T2, lr).real), rel=0.02)


def test_branch_marks_the_stability_change_and_cannot_start_elsewhere():
    branch = global_minimum_branch(RunConfig.from_dict({"K": 2, "M": 2, "lr": 0.5, "noise": 0.0}), 2.0)
    (event,) = branch.events
    assert event.kind is EventKind.STABILITY_CHANGE and event.lr == pytest.approx(critical_lr(T2))
    assert np.all(branch.loss == 0) and np.all(branch.stable == (branch.lr < event.lr))
    assert branch.status is BranchStatus.REACHED_LR_MAX
    with pytest.raises(ValueError, match="realisable"):
        realisable_branch(T2 * 1.1, T2, T2, 0.5, 1.0)


def test_spurious_minima_without_noise_are_continued_and_their_points_attract_flows():
    # K = 1, M = 2: the student averaging the two teachers is a minimum of L with loss > 0; without label
    # noise the eta^2 term still inflates it into the cone, where it is continued.
    config = RunConfig.from_dict({"K": 1, "M": 2, "lr": 0.1, "noise": 0.0, "eta2": False})
    catalogue = build_catalogue(config, 8, seed=0)
    result = catalogue_bifurcation(catalogue, 1.0, workers=1)
    assert result.success and not result.skipped
    (branch,) = result.branches
    i = int(np.argmin(np.abs(branch.lr - 0.5)))
    assert branch.stable[i] and branch.loss[i] > catalogue.points[result.points[0]].loss
    # The flow from a nearby point settles on the branch point (an attractive fixed point at that lr).
    Q, R = branch.Q[i] * 1.05, branch.R[i] * 0.98
    trajectory = integrate_ode(Q, R, np.eye(2), float(branch.lr[i]), 2000.0, True, 0.0, tol=1e-10)
    assert trajectory.status is FlowStatus.CONVERGED
    assert np.allclose(trajectory.Q[-1], branch.Q[i], atol=1e-6) and np.allclose(trajectory.R[-1], branch.R[i], atol=1e-6)
