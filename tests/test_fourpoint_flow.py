"""The four-point term carried along the ODE (Price's theorem) against the exact quadrature.

The derivatives and closed forms are the compiled ones of landscape.dynamics.compiled_flow (the only
implementation); the references are finite differences of the path-integral quadrature,
relu_four_point and finite_lr_expectation.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from landscape.dynamics.compiled_flow import (
    _angle_tables,
    _any_exactly_aligned,
    _carried_tables,
    _finite_lr_term,
    _form_value,
    _merged_value,
    _relu_rate,
    _set_terms,
    flow_model,
    velocity,
)
from landscape.dynamics.fourpoint_flow import CarriedFourPoint, _correlations, carried_four_point_applies
from landscape.dynamics.ode import integrate_ode, run_flow
from landscape.dynamics.span import student_rows, teacher_rows
from landscape.dynamics.trajectory import FlowStatus
from landscape.kernels.fourpoint import (
    _TERM_A,
    _TERM_B,
    _TERM_J,
    _TERM_PARTNER,
    _TERM_TO_PAIR,
    _relu4_distinct,
    finite_lr_expectation,
    relu_four_point,
)
from landscape.kernels.orthant import _orthant_probability_4
from landscape.model.config import InitSpec, RunConfig
from landscape.model.initialisation import initial_overlaps

QUADRUPLE = np.array([[0, 1, 2, 3]], dtype=np.int64)


def _derivatives(corr, rate, p4):
    """Compiled ``dP4/dt`` and ``dF/dt`` of the quadruple (0, 1, 2, 3) for correlation rates ``rate``."""
    phi2_w, phi2_k, d_p4 = _set_terms(QUADRUPLE, corr, rate)
    d_f = _relu_rate(QUADRUPLE, 0, corr, rate, float(p4), phi2_w, phi2_k, 0, np.arange(6)[None, :])
    return d_p4[0], d_f


def test_written_out_mixed_terms_equal_the_stein_table():
    # _relu_rate writes the twelve Stein terms out by hand (for speed); the quadrature's
    # landscape.kernels.fourpoint._mixed_terms table is their definition. Random roles and set pairs.
    rng = np.random.default_rng(11)
    for _ in range(20):
        corr = _random_correlation(rng)
        rate = rng.normal(size=(4, 4))
        rate = rate + rate.T
        roles = rng.permutation(4)
        set_w, set_k = rng.uniform(0.0, 1.0, size=(2, 3, 6))
        pair_map = rng.permutation(6)[None, :]
        p4 = rng.uniform()
        labels = roles[None, :].astype(np.int64)
        role_corr, role_rate = corr[np.ix_(roles, roles)], rate[np.ix_(roles, roles)]
        w = set_w[1, pair_map[0]]
        mixed = np.sum(
            role_rate[_TERM_A, _TERM_B]
            * (role_corr[_TERM_PARTNER, _TERM_J] - role_corr[_TERM_PARTNER, _TERM_A] * role_corr[_TERM_A, _TERM_J])
            * (_TERM_TO_PAIR @ w)
        )
        expected = p4 * role_rate[2, 3] + set_k[1, pair_map[0, 0]] * role_rate[0, 1] + mixed
        assert _relu_rate(labels, 0, corr, rate, p4, set_w, set_k, 1, pair_map) == pytest.approx(expected, abs=1e-14)


def _repeated_values(K, M, omega, by_value):
    """Compiled closed forms of the quadruples with a repeated unit, as E[step step relu relu]."""
    sd, corr = _correlations(omega)
    arcsin, root = _angle_tables(corr)
    quadruples, state_index, _, forms, form_of = _carried_tables(K, M)[:5]
    rows = np.flatnonzero(state_index < 0)
    work = np.empty((4, 4), np.bool_), np.empty(4, np.int64), np.empty(4, np.int64), np.empty(4, np.int64)
    if by_value:
        values = [_merged_value(quadruples[row], corr, arcsin, root, *work) for row in rows]
    else:
        values = [_form_value(*forms[form_of[row]], corr, arcsin, root) for row in rows]
    q = quadruples[rows]
    return np.maximum(values, 0.0) * sd[q[:, 2]] * sd[q[:, 3]], q


def _random_correlation(rng, dim=6, near=None, gap=0.0):
    vectors = rng.normal(size=(4, dim))
    if near is not None:
        a, b = near
        vectors[b] = vectors[a] + gap * rng.normal(size=dim)
    cov = vectors @ vectors.T
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return corr


def _overlaps(K, M, seed, dim=40):
    rng = np.random.default_rng(seed)
    W, W_teacher = rng.normal(size=(K, dim)) / np.sqrt(dim), rng.normal(size=(M, dim)) / np.sqrt(dim)
    return W @ W.T, W @ W_teacher.T, W_teacher @ W_teacher.T


@pytest.mark.parametrize("seed", range(4))
def test_price_derivatives_match_finite_differences_of_the_quadrature(seed):
    # Independent route: central differences of the path-integral quadrature in a random
    # symmetric direction of correlation space.
    rng = np.random.default_rng(seed)
    corr = _random_correlation(rng)
    direction = rng.normal(size=(4, 4))
    direction = direction + direction.T
    np.fill_diagonal(direction, 0.0)
    h = 1e-5
    p4 = _orthant_probability_4(corr[None])
    d_p4, d_f = _derivatives(corr, direction, p4[0])
    shifted = np.stack([corr + h * direction, corr - h * direction])
    f_plus, f_minus = _relu4_distinct(shifted)
    p_plus, p_minus = _orthant_probability_4(shifted)
    assert d_p4 == pytest.approx((p_plus - p_minus) / (2 * h), abs=1e-8)
    assert d_f == pytest.approx((f_plus - f_minus) / (2 * h), abs=1e-8)


def test_price_derivatives_near_alignment():
    # Two units 1e-2 apart (1 - rho ~ 1e-4): moving the underlying vectors keeps the matrices
    # valid, so the finite differences stay meaningful.
    rng = np.random.default_rng(7)
    for pair in ((0, 1), (0, 2), (2, 3)):
        vectors = rng.normal(size=(4, 6))
        vectors[pair[1]] = vectors[pair[0]] + 1e-2 * rng.normal(size=6)
        move = rng.normal(size=(4, 6))

        def corr_at(s):
            x = vectors + s * move
            cov = x @ x.T
            sd = np.sqrt(np.diag(cov))
            c = cov / np.outer(sd, sd)
            np.fill_diagonal(c, 1.0)
            return c

        h = 1e-7
        corr = corr_at(0.0)
        rate = (corr_at(h) - corr_at(-h)) / (2 * h)
        p4 = _orthant_probability_4(corr[None])
        d_p4, d_f = _derivatives(corr, rate, p4[0])
        ends = np.stack([corr_at(h), corr_at(-h)])
        assert d_f == pytest.approx(np.diff(_relu4_distinct(ends))[0] / (-2 * h), abs=1e-5)
        assert d_p4 == pytest.approx(np.diff(_orthant_probability_4(ends))[0] / (-2 * h), abs=1e-5)


@pytest.mark.parametrize("K, M, noise", [(2, 1, 0.0), (3, 3, 0.2), (4, 2, 0.0), (5, 5, 0.1)])
def test_carried_expectation_equals_the_quadrature(K, M, noise):
    # The carried state at its exact initial value plus the closed forms for repeated units must
    # give the eta^2 expectation of finite_lr_expectation (itself checked against Monte Carlo).
    Q, R, T = _overlaps(K, M, seed=K + M)
    carrier = CarriedFourPoint(K, M)
    omega = np.block([[Q, R], [R.T, T]])
    sd, corr = _correlations(omega)
    expectation = _finite_lr_term(sd, corr, carrier.initial_state(omega), K, noise, _carried_tables(K, M))
    assert np.allclose(expectation, finite_lr_expectation(Q, R, T, noise), atol=1e-12, rtol=0)


@pytest.mark.parametrize("by_value", [False, True])
def test_repeated_unit_closed_forms_equal_relu_four_point(by_value):
    # The reductions chosen from the labels, and the general one by value, on generic overlaps.
    Q, R, T = _overlaps(3, 2, seed=5)
    omega = np.block([[Q, R], [R.T, T]])
    values, quadruples = _repeated_values(3, 2, omega, by_value)
    direct = relu_four_point(omega[quadruples[:, :, None], quadruples[:, None, :]])
    assert np.allclose(values, direct, atol=1e-13, rtol=0)


def test_carried_state_tracks_the_exact_quadrature_along_a_trajectory():
    # Integrate the augmented ODE, then recompute P4 and F at the final overlaps by quadrature:
    # the Price derivatives, integrated, must reproduce them.
    config = RunConfig(K=3, M=3, lr=0.6, t_max=15.0, init=InitSpec(d=500, seed=2, scale=0.7))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    carrier = CarriedFourPoint(3, 3)
    model = flow_model(T, config.lr, 0.0, 3, 1e6, True)

    def rhs(_t, y):
        out = np.empty_like(y)
        velocity(y, model, out, False)
        return out

    # The state: student rows in the span of the units (K, K + M), then the carried (P4, F).
    V = teacher_rows(T, 3)
    U0, _ = student_rows(Q0, R0, V)
    y0 = np.concatenate([U0.ravel(), carrier.initial_state(np.block([[Q0, R0], [R0.T, T]]))])
    final = solve_ivp(rhs, (0.0, 15.0), y0, method="DOP853", rtol=1e-10, atol=1e-13).y[:, -1]
    U = final[:18].reshape(3, 6)
    Q, R = U @ U.T, U @ V.T
    assert np.max(np.abs(R - R0)) > 0.1  # the overlaps did move
    exact = carrier.initial_state(np.block([[Q, R], [R.T, T]]))
    assert np.allclose(final[18:], exact, atol=1e-9, rtol=0)


@pytest.mark.parametrize("K, M, lr", [(3, 3, 0.5), (4, 2, 0.4)])
def test_carried_and_quadrature_trajectories_agree(K, M, lr):
    config = RunConfig(K=K, M=M, lr=lr, t_max=20.0, init=InitSpec(d=1000, seed=1, scale=0.5))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    carried = integrate_ode(Q0, R0, T, lr, 20.0, four_point="carried", rtol=1e-9, atol=1e-12)
    quadrature = integrate_ode(Q0, R0, T, lr, 20.0, four_point="quadrature", rtol=1e-9, atol=1e-12)
    assert carried.status is quadrature.status is FlowStatus.T_MAX
    assert np.allclose(carried.Q, quadrature.Q, atol=1e-8)
    assert np.allclose(carried.R, quadrature.R, atol=1e-8)


def test_flow_converging_onto_the_global_minimum_hands_over_to_the_quadrature():
    # Units align with the teacher (1 - rho -> 0): the carried derivatives lose their accuracy,
    # so "auto" finishes with the quadrature and converges; "carried" alone says it cannot.
    T = np.eye(2)
    Q = np.array([[1.1, 0.05], [0.05, 0.9]])
    R = np.array([[1.0, 0.05], [0.02, 0.93]])
    assert carried_four_point_applies(Q, R, T)
    trajectory = integrate_ode(Q, R, T, 0.5, 5000.0)
    assert trajectory.status is FlowStatus.CONVERGED
    # At alignment the loss is sqrt-sensitive to the overlaps (sqrt(q t - r^2) terms): overlaps
    # within ~1e-9 of the minimum (the tolerances) give a loss near 1e-9, not below it (the
    # quadrature-only run ends on a loss rounded to 0, a compiled run on 8e-13 or 8e-10 by how
    # rounding falls). The minimum itself is checked on the overlaps.
    assert trajectory.loss[-1] < 1e-8
    assert np.allclose(trajectory.R[-1], T, atol=1e-5)
    quadrature = integrate_ode(Q, R, T, 0.5, 5000.0, four_point="quadrature")
    assert quadrature.t[-1] == pytest.approx(trajectory.t[-1], rel=0.05)
    # Near alignment the velocity is not smooth in the overlaps ((1 - rho)^(3/2) terms): there the
    # order-7 interpolant of either run can ring between accurate step ends, by up to 1.3e-5 in R
    # here (seen when a change of rounding moved the handover). Tighter tolerances in that tail
    # smooth it but, at rtol 1e-10, run into the quadrature's own accuracy and crawl (the plateau
    # preset below took minutes), so the comparison allows for it.
    for k in range(2):  # close to the end the overlaps' 1e-9 errors are sqrt-amplified in the loss
        for m in range(2):
            expected = np.interp(trajectory.t, quadrature.t, quadrature.R[:, k, m])
            assert np.allclose(trajectory.R[:, k, m], expected, atol=3e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot finish this run: two units came within 1e-8 of alignment"):
        integrate_ode(Q, R, T, 0.5, 5000.0, four_point="carried")


def test_plateau_escape_to_the_global_minimum_finishes():
    # Regression: K = M = 3 from a d = 10^6 start (the dashboard's Saad-Solla preset) with the eta^2
    # term. At t ~ 367 a student came within rounding of its teacher (rho = 1 exactly) while the
    # eta^2 term still moved rho: the carried derivatives phi2(rho) d rho / dt became noise of
    # size 1e-2, the step size collapsed to 1e-4 and the compiled loop accepted such steps
    # without end (the test run hung with 7 GB of step history). The run now hands over to the
    # quadrature at 1 - rho = 1e-8 and converges.
    config = RunConfig(K=3, M=3, t_max=1000.0, init=InitSpec(d=1_000_000, seed=0, scale=1.0))
    trajectory = run_flow(config)
    assert trajectory.status is FlowStatus.CONVERGED
    assert trajectory.loss[-1] < 1e-8
    plateau = trajectory.loss[(trajectory.t > 25) & (trajectory.t < 50)]
    assert np.ptp(plateau) < 2e-3 * plateau[0]  # the plateau is still there before the escape


def test_aligned_start_uses_the_quadrature():
    # Student equal to the teacher: 0/0 derivatives, so "auto" takes the quadrature and "carried"
    # says why it cannot.
    T = np.array([[1.0, 0.3], [0.3, 1.2]])
    assert not carried_four_point_applies(T, T, T)
    trajectory = integrate_ode(T, T, T, 0.5, 10.0)
    assert trajectory.status is FlowStatus.CONVERGED
    with pytest.raises(ValueError, match="exactly aligned"):
        integrate_ode(T, T, T, 0.5, 10.0, four_point="carried")


def test_bad_four_point_method_is_named():
    T = np.eye(2)
    with pytest.raises(ValueError, match="four_point must be one of auto, carried, quadrature; got 'fast'"):
        integrate_ode(0.5 * T, 0.1 * T, T, 0.5, 10.0, four_point="fast")


def test_repeated_unit_closed_forms_merge_units_aligned_by_value():
    # Regression: a flow converging onto the teacher rounds a student-teacher correlation to
    # exactly 1. The closed forms, chosen from the labels alone, then divided by
    # sqrt(1 - rho^2) = 0 and gave E[step(l_0)(f - y)^2] = -1/pi, which stalled the integrator.
    rng = np.random.default_rng(11)
    W_teacher = rng.normal(size=(2, 9)) / 3.0
    W = np.vstack([W_teacher[0], rng.normal(size=9) / 3.0])
    Q, R, T = W @ W.T, W @ W_teacher.T, W_teacher @ W_teacher.T
    R[0, 1] += 1e-15  # rounding: the aligned pair's overlaps with a third unit differ by an ulp
    omega = np.block([[Q, R], [R.T, T]])
    assert _any_exactly_aligned(_correlations(omega)[1])
    values, quadruples = _repeated_values(2, 2, omega, by_value=True)
    direct = relu_four_point(omega[quadruples[:, :, None], quadruples[:, None, :]])
    assert np.all(np.isfinite(values))
    assert np.allclose(values, direct, atol=1e-12, rtol=0)
