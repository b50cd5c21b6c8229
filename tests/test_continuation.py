"""Continuation of ODE fixed points in lr: the fold of the global-minimum branch (K = M = 2, orthonormal
teacher, label noise 0.1) against flows, branch points against direct SGD at finite d."""

import numpy as np
import pytest

from landscape import FlowStatus, RunConfig, integrate_ode, simulate_sgd
from landscape.critical_points.continuation import (
    BranchStatus,
    EventKind,
    continue_fixed_point,
    continue_fixed_points,
)
from landscape.critical_points.fixed_points import ode_fixed_point
from landscape.critical_points.stability import fixed_point_stability

T2, NOISE = np.eye(2), 0.1


@pytest.fixture(scope="module")
def start():
    fixed = ode_fixed_point(T2, T2, T2, 0.5, True, NOISE)
    assert fixed.success
    return fixed


@pytest.fixture(scope="module")
def branch(start):
    return continue_fixed_point(start.Q, start.R, T2, 0.5, 2.0, True, NOISE, max_steps=260)


def _fold(branch):
    folds = [e for e in branch.events if e.kind is EventKind.FOLD]
    assert folds, branch.message
    return folds[0]


def test_the_global_minimum_branch_folds_between_the_issues_bounds(branch):
    # Issue 14: at lr 1.2 the flow still settles (slowly), at lr 1.5 it diverges.
    fold = _fold(branch)
    assert 1.2 < fold.lr < 1.5
    before = branch.lr[: fold.after + 1]
    assert np.all(np.diff(before) > 0) and np.all(branch.stable[: fold.after + 1])
    # Past the fold the branch comes back in lr, unstable (a saddle-node).
    assert branch.lr[fold.after + 1] < fold.lr and not branch.stable[fold.after + 1]


def test_fold_located_by_the_tangent_and_by_the_eigenvalue_agree_to_1e6(branch):
    # Two criteria located separately: the tangent's lr component vanishing, and the real
    # eigenvalue crossing zero (at a fold the Jacobian is singular).
    fold = _fold(branch)
    change = [e for e in branch.events if e.kind is EventKind.STABILITY_CHANGE and e.after == fold.after]
    assert change and abs(change[0].lr - fold.lr) < 1e-6
    # Beyond the fold there is no fixed point nearby: Newton from the fold point fails at lr_fold + 1e-3.
    beyond = ode_fixed_point(fold.Q, fold.R, T2, fold.lr + 1e-3, True, NOISE, flow=False, max_iter=30)
    below = ode_fixed_point(fold.Q, fold.R, T2, fold.lr - 1e-3, True, NOISE, flow=False, max_iter=30)
    assert below.success and not beyond.success


def _bounded(start, lr):
    trajectory = integrate_ode(start.Q, start.R, T2, lr, 4000.0, True, NOISE, tol=1e-7)
    assert trajectory.status is not FlowStatus.T_MAX, trajectory.message
    return trajectory.status is FlowStatus.CONVERGED


def test_fold_agrees_with_bisection_on_flows_bounded_against_diverging(branch, start):
    # Flows from the lr = 0.5 fixed point: they settle below the fold and run away above it. The
    # bisection is limited by critical slowing down near the fold (the passage time diverges).
    fold = _fold(branch)
    low, high = 1.2, 1.5
    assert _bounded(start, low) and not _bounded(start, high)
    for _ in range(7):
        middle = 0.5 * (low + high)
        if _bounded(start, middle):
            low = middle
        else:
            high = middle
    assert low <= fold.lr <= high and high - low < 0.003


def _sgd_average(Q, R, lr, d, seed, t_max):
    W, W_teacher = _embedding(Q, R)
    padded = np.zeros((2, d)), np.zeros((2, d))
    padded[0][:, : W.shape[1]], padded[1][:, : W.shape[1]] = W, W_teacher
    config = RunConfig.from_dict({"K": 2, "M": 2, "lr": float(lr), "noise": NOISE, "t_max": t_max})
    trajectory = simulate_sgd(config, d, seed=seed, weights=padded, n_points=300)
    late = trajectory.t > 1.0
    t, loss = trajectory.t[late], trajectory.loss[late]
    return np.trapezoid(loss, t) / (t[-1] - t[0])


def _stable_point_near(branch, target):
    """Index of the attractive branch point with lr closest to ``target``. The branch folds back
    (at lr 1.22, then again at 1.13): the point nearest lr = 1.15 by lr alone lay on the returning,
    unstable stretch (loss 3.0, where direct SGD wanders off), and the d = 2000 check failed."""
    stable = np.flatnonzero(branch.stable)
    return int(stable[np.argmin(np.abs(branch.lr[stable] - target))])


def _embedding(Q, R):
    omega = np.block([[Q, R], [R.T, T2]])
    values, vectors = np.linalg.eigh(omega)
    rows = vectors * np.sqrt(np.maximum(values, 0.0))
    return rows[:2], rows[2:]


@pytest.mark.parametrize("target", [0.5, 1.0])
def test_branch_points_match_time_averages_of_direct_sgd(branch, target):
    # Direct one-pass SGD at d = 1000 started on the branch point stays there: its time-averaged loss
    # equals the branch's (the issue measured 0.0204 vs 0.0203 at lr 0.5, d = 2000).
    i = _stable_point_near(branch, target)
    average = _sgd_average(branch.Q[i], branch.R[i], branch.lr[i], 1000, seed=7, t_max=20.0)
    assert average == pytest.approx(branch.loss[i], rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("target", [0.5, 1.0, 1.15])
def test_branch_points_match_direct_sgd_at_d_2000(branch, target):
    i = _stable_point_near(branch, target)
    averages = [_sgd_average(branch.Q[i], branch.R[i], branch.lr[i], 2000, seed=s, t_max=60.0) for s in (1, 2)]
    assert np.mean(averages) == pytest.approx(branch.loss[i], rel=0.02)


def test_stability_along_the_branch_is_that_of_the_point(branch):
    for i in (0, len(branch.lr) // 2, len(branch.lr) - 1):
        again = fixed_point_stability(branch.Q[i], branch.R[i], T2, branch.lr[i], True, NOISE)
        assert again.attractive == branch.stable[i]
        assert again.max_real_eigenvalue == pytest.approx(branch.max_real_eigenvalue[i], abs=1e-7)


def test_a_branch_reaches_lr_max_when_there_is_no_fold(start):
    short = continue_fixed_point(start.Q, start.R, T2, 0.5, 0.8, True, NOISE)
    assert short.status is BranchStatus.REACHED_LR_MAX and short.success
    assert short.lr[-1] == pytest.approx(0.8, abs=1e-12) and np.all(short.stable) and not short.events


def test_many_branches_on_two_workers_equal_one_at_a_time(start):
    Q0, R0 = np.array([start.Q, start.Q]), np.array([start.R, start.R])
    both = continue_fixed_points(Q0, R0, T2, 0.5, 0.7, NOISE, workers=2)
    alone = continue_fixed_point(start.Q, start.R, T2, 0.5, 0.7, True, NOISE)
    assert len(both) == 2
    for result in both:
        assert np.array_equal(result.lr, alone.lr) and np.array_equal(result.loss, alone.loss)


def test_bad_starts_are_refused_with_a_reason(start):
    with pytest.raises(ValueError, match="not a fixed point"):
        continue_fixed_point(start.Q * 1.01, start.R, T2, 0.5, 1.0, True, NOISE)
    with pytest.raises(ValueError, match="lr_max"):
        continue_fixed_point(start.Q, start.R, T2, 0.5, 0.4, True, NOISE)
    with pytest.raises(ValueError, match="boundary"):
        continue_fixed_point(T2, T2, T2, 0.5, 1.0, True, 0.0)  # realisable global minimum, no noise
    with pytest.raises(ValueError, match="eta2"):
        continue_fixed_point(start.Q, start.R, T2, 0.5, 1.0, False, NOISE)
    # In a batch the realisable minimum without noise gets its own branch (tests/test_realisable.py);
    # with K > M it lies on the boundary at every lr and cannot start.
    outcome = continue_fixed_points(np.array([T2]), np.array([T2]), T2, 0.5, 1.0, 0.0, workers=1)
    assert outcome[0].status is BranchStatus.REACHED_LR_MAX and np.all(outcome[0].loss == 0)
    shares = np.array([[1.0, 0.0], [0.0, 0.5], [0.0, 0.5]])
    outcome = continue_fixed_points(np.array([shares @ shares.T]), np.array([shares]), T2, 0.5, 1.0, 0.0, workers=1)
    assert isinstance(outcome[0], str) and "boundary" in outcome[0]


def test_a_continuation_stops_when_its_visitor_leaves(start):
    # Issue 18: a visitor who closed the Learning rate page left the server continuing the branch
    # to its end (752 s at K = M = 8). The dashboard passes should_stop, checked before every step.
    from landscape.status import Stopped

    calls = []

    def leave_after_three():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Stopped):
        continue_fixed_point(start.Q, start.R, T2, 0.5, 2.0, True, NOISE, max_steps=260, should_stop=leave_after_three)
    assert len(calls) == 4  # three steps, then stopped (the full branch takes over a hundred)
    quiet = continue_fixed_point(start.Q, start.R, T2, 0.5, 0.6, True, NOISE, should_stop=lambda: False)
    assert quiet.success
    with pytest.raises(ValueError, match="should_stop must be callable"):
        continue_fixed_point(start.Q, start.R, T2, 0.5, 0.6, True, NOISE, should_stop=3)
