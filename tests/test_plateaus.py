"""Plateau detection on loss curves whose plateaus are known by construction, and the run caption."""

import numpy as np
import pytest

from landscape.dashboard.run_summary import loss_curve_caption
from landscape.dynamics.plateaus import find_plateaus
from landscape.dynamics.trajectory import FlowStatus, Trajectory

GRID = np.concatenate([[0.0], np.logspace(-3, 3, 400)])


def _step_curve(t):
    return np.where(t < 1.0, 1.0, np.where(t < 100.0, 0.2, 1e-3))


def test_a_step_plateau_is_found_with_its_exact_edges_and_level():
    (plateau,) = find_plateaus(GRID, _step_curve(GRID))
    inside = GRID[(GRID >= 1.0) & (GRID < 100.0)]
    assert plateau.t_start == inside[0] and plateau.t_end == inside[-1]
    assert plateau.low == plateau.high == plateau.loss == 0.2
    assert plateau.decades == pytest.approx(np.log10(inside[-1] / inside[0]))


def test_a_slow_drift_is_one_plateau_spanning_all_of_it():
    # The loss drifts by 9% per decade between t = 1 and 100 (18% in all): more than the 10%
    # band, so the detector finds several stretches, which must be merged into one plateau.
    t = GRID
    loss = np.where(t < 1.0, 1.0, np.where(t < 100.0, 0.2 * np.maximum(t, 1.0) ** -0.04, 1e-3))
    (plateau,) = find_plateaus(t, loss)
    inside = t[(t >= 1.0) & (t < 100.0)]
    assert plateau.t_start == inside[0] and plateau.t_end == inside[-1]
    assert plateau.high == pytest.approx(0.2 * inside[0] ** -0.04)
    assert plateau.low == pytest.approx(0.2 * inside[-1] ** -0.04)
    assert plateau.high / plateau.low > 1.1


def test_two_plateaus_in_time_order():
    t = GRID
    loss = np.select([t < 0.5, t < 5.0, t < 20.0, t < 200.0], [1.0, 0.3, 0.05, 0.01], 1e-4)
    found = find_plateaus(t, loss)
    assert [p.loss for p in found] == [0.3, 0.05, 0.01]
    assert [p.t_start for p in found] == [t[t >= edge][0] for edge in (0.5, 5.0, 20.0)]


def test_what_is_not_a_plateau():
    t = GRID
    assert find_plateaus(t, np.exp(-t)) == ()  # the flat start of a log axis: nothing has moved yet
    assert find_plateaus(t[1:], t[1:] ** -2.0) == ()  # a power law never stalls
    short = np.where(t < 1.0, 1.0, np.where(t < 1.8, 0.2, 1e-3))  # 0.26 decades < 0.3
    assert find_plateaus(t, short) == ()
    converged = np.where(t < 1.0, 1.0, 0.2)  # a fixed point at the end is not a stall
    assert find_plateaus(t, converged) == ()
    gap = _step_curve(t).copy()
    gap[(t > 9.0) & (t < 11.0)] = np.nan  # before a hole it is unknown whether the loss escaped
    (after,) = find_plateaus(t, gap)
    assert after.t_start == t[t >= 11.0][0]


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="t must be a 1-D array"):
        find_plateaus([1.0], [1.0])
    with pytest.raises(ValueError, match="loss must have the shape of t"):
        find_plateaus([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        find_plateaus([0.0, 2.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="band must be a positive number, got -1"):
        find_plateaus(GRID, _step_curve(GRID), band=-1)
    with pytest.raises(ValueError, match="run must be a Trajectory, got dict"):
        loss_curve_caption({})


def _trajectory(t, loss):
    n, K = t.size, 1
    return Trajectory(t=t, Q=np.ones((n, K, K)), R=np.ones((n, K, K)), T=np.eye(K), loss=loss,
                      status=FlowStatus.T_MAX, message="", method="ode")


def test_caption_states_the_constructed_numbers():
    t = GRID
    caption = loss_curve_caption(_trajectory(t, _step_curve(t)))
    inside = t[(t >= 1.0) & (t < 100.0)]
    assert caption.startswith("Loss 1 at t = 0. ")
    assert f"Plateau from t = {inside[0]:.3g} to {inside[-1]:.3g}" in caption
    assert "the loss stays between 0.2 and 0.2." in caption
    assert caption.endswith("At t = 1e+03: 0.001.")
    assert "No plateau" in loss_curve_caption(_trajectory(t[1:], t[1:] ** -2.0))
