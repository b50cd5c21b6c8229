"""Stability of ODE fixed points: the Jacobian against finite differences of the quadrature right-hand
side, the gradient-flow relation to the Hessian, and the paper's claim on a catalogue."""

import numpy as np
import pytest

from landscape.critical_points.fixed_points import ode_fixed_point
from landscape.critical_points.hessian import hessian_spectrum
from landscape.critical_points.stability import (
    Stability,
    fixed_point_stability,
    gradient_flow_eigenvalues,
    ode_jacobian,
    overlaps_from_state,
    state_vector,
)
from landscape.dynamics.jacobian import right_hand_side
from landscape.dynamics.ode import ode_velocity


def _quadrature_jacobian(Q, R, T, lr, noise, h=1e-5):
    """Central differences of the numpy right-hand side (four-point term by quadrature)."""
    K, M = R.shape
    x = state_vector(Q, R)
    columns = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        plus = state_vector(*ode_velocity(*overlaps_from_state(x + e, K, M), T, lr, True, noise))
        minus = state_vector(*ode_velocity(*overlaps_from_state(x - e, K, M), T, lr, True, noise))
        columns.append((plus - minus) / (2 * h))
    return np.array(columns).T


@pytest.mark.parametrize("K, M, lr, noise", [(2, 2, 0.7, 0.1), (3, 2, 0.4, 0.05), (4, 3, 0.3, 0.0)])
def test_jacobian_matches_finite_differences_of_the_quadrature_right_hand_side(K, M, lr, noise):
    # A generic interior point (not a fixed point): the carried (Price) derivatives of the four-point
    # term, compiled (landscape.dynamics.jacobian), must agree with differencing the quadrature, a
    # separate implementation. (For a while the Jacobian itself differenced the quadrature, and this
    # test compared a computation with itself.)
    rng = np.random.default_rng(3)
    W, W_teacher = rng.standard_normal((K, K + M)) / 2, np.eye(M, K + M)
    Q, R, T = W @ W.T, W @ W_teacher.T, np.eye(M)
    jacobian = ode_jacobian(Q, R, T, lr, True, noise)
    reference = _quadrature_jacobian(Q, R, T, lr, noise)
    assert jacobian.shape == (K * (K + 1) // 2 + K * M,) * 2
    assert np.max(np.abs(jacobian - reference)) < 1e-8 * max(1.0, np.max(np.abs(reference)))
    # The velocity at the point (quadrature of distinct quadruples, closed forms, compiled sum) is the
    # quadrature right-hand side's.
    velocity = right_hand_side(Q, R, T, lr, True, noise, jacobian=False).velocity
    assert np.allclose(velocity, state_vector(*ode_velocity(Q, R, T, lr, True, noise)), rtol=0, atol=1e-13)


def test_gradient_flow_jacobian_is_minus_lr_times_hessian_blocks_in_the_small_lr_limit():
    # The noisy global-minimum branch tends to Q = R = T (on the cone's boundary) as lr -> 0; the
    # Jacobian of the full ODE divided by lr tends to minus the span-block Hessian eigenvalues and
    # minus the pair sums h_i + h_j of the bulk ones (docs/theory.md, stability section).
    T = np.eye(2)
    fixed = ode_fixed_point(T, T, T, 1e-3, True, 0.1)
    assert fixed.success
    limit = np.sort(np.linalg.eigvals(ode_jacobian(fixed.Q, fixed.R, T, 1e-3, True, 0.1)).real / 1e-3)
    spectrum = hessian_spectrum(T, T, T, 4)
    span, bulk = spectrum.span_eigenvalues, spectrum.bulk_eigenvalues
    expected = np.sort(-np.concatenate([span, [bulk[0] * 2, bulk[0] + bulk[1], bulk[1] * 2]]))
    assert np.allclose(limit, expected, atol=1e-2)
    # ... and the Hessian-built linearisation is that limit exactly (1/4 - 1/(2 pi) of the literature
    # is the smallest span eigenvalue for the orthonormal teacher).
    assert np.allclose(np.sort(gradient_flow_eigenvalues(T, T, T, 1.0)), expected, atol=1e-12)
    assert np.isclose(np.max(gradient_flow_eigenvalues(T, T, T, 1.0)), -(0.25 - 1 / (2 * np.pi)))


def test_linearisation_predicts_the_decay_of_a_small_perturbation():
    # Independent of any derivative: integrate the ODE from a perturbed fixed point and compare the
    # late decay rate of the distance with the largest real eigenvalue.
    T, lr, noise = np.eye(2), 0.8, 0.1
    fixed = ode_fixed_point(T, T, T, lr, True, noise)
    stability = fixed_point_stability(fixed.Q, fixed.R, T, lr, True, noise)
    assert stability.attractive and np.all(stability.eigenvalues.imag == 0)
    from landscape.dynamics.ode import integrate_ode

    rng = np.random.default_rng(0)
    x = state_vector(fixed.Q, fixed.R) + 1e-4 * rng.standard_normal(7)
    trajectory = integrate_ode(*overlaps_from_state(x, 2, 2), T, lr, 150.0, True, noise, tol=1e-14, rtol=1e-10,
                               atol=1e-13)
    distance = np.array([np.linalg.norm(state_vector(Q, R) - state_vector(fixed.Q, fixed.R))
                         for Q, R in zip(trajectory.Q, trajectory.R)])
    late = (trajectory.t > 60) & (trajectory.t < 120)
    rate = np.polyfit(trajectory.t[late], np.log(distance[late]), 1)[0]
    assert rate == pytest.approx(stability.max_real_eigenvalue, rel=0.03)


@pytest.mark.parametrize("K, M", [(4, 4), (4, 3)])
def test_gradient_flow_catalogue_minima_are_attractive_and_saddles_are_not(K, M):
    # The paper's claim where it must hold (lr -> 0); K = 4 > M = 3 has flat minima (split units),
    # whose flat directions are exact zero modes.
    from landscape import RunConfig, build_catalogue

    config = RunConfig.from_dict({"K": K, "M": M, "init": {"kind": "random", "d": M, "scale": 1.0}})
    catalogue = build_catalogue(config, starts=24, seed=1)
    kinds = {point.kind.value for point in catalogue.points}
    assert kinds == {"minimum", "saddle"}
    for point in catalogue.points:
        assert point.stability.attractive == (point.kind.value == "minimum"), point.to_dict()
        assert len(point.stability.eigenvalues) + point.stability.n_zero_modes == K * (K + 1) // 2 + K * M
        assert point.to_dict()["stability"]["attractive"] == point.stability.attractive


def test_stability_record_round_trips_through_json():
    record = Stability(np.array([-1.0, -0.5 + 0.25j, -0.5 - 0.25j]), -0.5, True, 0, True,
                       fixed_point_stability(np.eye(1), np.eye(1), np.eye(1), 1.0, False).status, "x").to_dict()
    assert record["eigenvalues"] == [-1.0, [-0.5, 0.25], [-0.5, -0.25]]
    assert Stability.from_dict(record).to_dict() == record


def test_bad_input_is_refused_with_the_argument_named():
    T = np.eye(2)
    with pytest.raises(ValueError, match="lr"):
        fixed_point_stability(T, T, T, -1.0)
    with pytest.raises(ValueError, match="noise"):
        fixed_point_stability(T, T, T, 1.0, True, float("nan"))
    with pytest.raises(ValueError, match="boundary"):
        ode_jacobian(T, T, T, 1.0)  # students inside the teacher span
    outcome = fixed_point_stability(T, T, T, 1.0, True, 0.0)
    assert not outcome.success and np.isnan(outcome.max_real_eigenvalue)
