"""The compiled ODE (numba right-hand side and DOP853 loop) against numpy, quadrature and solve_ivp."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from landscape.dynamics import dop853, ode, ode_solvers
from landscape.dynamics.compiled_flow import (
    _angle,
    _carried_tables,
    _correlations,
    _finite_lr_term,
    error_sums,
    flow_model,
    velocity,
)
from landscape.dynamics.fourpoint_flow import CarriedFourPoint
from landscape.dynamics.ode import integrate_ode, ode_velocity
from landscape.dynamics.span import overlap_speed, overlaps_from_rows, student_rows, teacher_rows
from landscape.dynamics.trajectory import FlowStatus
from landscape.kernels.fourpoint import finite_lr_expectation
from landscape.model.config import InitSpec, RunConfig
from landscape.model.initialisation import initial_overlaps


def _overlaps(K, M, seed, dim=40, aligned=None, gap=0.0):
    rng = np.random.default_rng(seed)
    W, W_teacher = rng.normal(size=(K, dim)) / np.sqrt(dim), rng.normal(size=(M, dim)) / np.sqrt(dim)
    if aligned is not None:  # student k close to teacher m
        k, m = aligned
        W[k] = W_teacher[m] + gap * rng.normal(size=dim)
    return W @ W.T, W @ W_teacher.T, W_teacher @ W_teacher.T


def _span_state(Q, R, T, state=None):
    """The compiled solver's state at ``(Q, R)``: student rows in the span, then ``state``."""
    U, _ = student_rows(Q, R, teacher_rows(T, Q.shape[0]))
    return np.concatenate([U.ravel()] + ([] if state is None else [state])), U


def _compiled(Q, R, T, lr, noise=0.0, carrier=None, state=None):
    """The compiled velocity at ``(Q, R)`` as ``(dQ, dR, carried rates)`` (flat): the rows' velocity
    ``dU`` seen through ``dQ = dU U^T + U dU^T``, ``dR = dU V^T``."""
    y, U = _span_state(Q, R, T, state)
    out = np.empty_like(y)
    velocity(y, flow_model(T, lr, noise, Q.shape[0], 1e6, carrier is not None), out, False)
    V = teacher_rows(T, Q.shape[0])
    dU = out[: U.size].reshape(U.shape)
    dQ = dU @ U.T
    return np.concatenate([(dQ + dQ.T).ravel(), (dU @ V.T).ravel(), out[U.size:]])


@pytest.mark.parametrize("K, M, seed", [(1, 1, 0), (3, 5, 1), (6, 2, 2), (10, 10, 3)])
def test_gradient_flow_velocity_equals_numpy(K, M, seed):
    Q, R, T = _overlaps(K, M, seed)
    dQ, dR = ode_velocity(Q, R, T, 0.7, eta2=False)
    assert np.allclose(_compiled(Q, R, T, 0.7), np.concatenate([dQ.ravel(), dR.ravel()]), atol=1e-14, rtol=1e-12)


def test_gradient_flow_velocity_with_a_dead_student_equals_numpy():
    Q, R, T = _overlaps(3, 2, seed=4)
    Q[1, :] = Q[:, 1] = 0.0
    R[1, :] = 0.0
    dQ, dR = ode_velocity(Q, R, T, 0.5, eta2=False)
    assert np.allclose(_compiled(Q, R, T, 0.5), np.concatenate([dQ.ravel(), dR.ravel()]), atol=1e-14, rtol=1e-12)


@pytest.mark.parametrize(
    "K, M, noise, aligned, gap, atol",
    [(3, 2, 0.0, None, 0.0, 1e-7), (4, 4, 0.3, None, 0.0, 1e-7), (2, 5, 0.1, None, 0.0, 1e-7),
     (3, 3, 0.0, (0, 1), 1e-2, 1e-5)],
)
def test_carried_velocity_is_the_time_derivative_of_the_quadrature(K, M, noise, aligned, gap, atol):
    # The overlaps' velocity against the numpy ODE with the eta^2 term by quadrature; the carried
    # state's velocity against central differences of the exact (P4, F) along that motion.
    Q, R, T = _overlaps(K, M, seed=5, aligned=aligned, gap=gap)
    carrier = CarriedFourPoint(K, M)
    omega = np.block([[Q, R], [R.T, T]])
    compiled = _compiled(Q, R, T, 0.6, noise, carrier, carrier.initial_state(omega))
    dQ, dR = ode_velocity(Q, R, T, 0.6, eta2=True, noise=noise)
    assert np.allclose(compiled[: K * (K + M)], np.concatenate([dQ.ravel(), dR.ravel()]), atol=1e-12, rtol=0)
    motion = np.block([[dQ, dR], [dR.T, np.zeros((M, M))]])
    h = 1e-5
    expected = (carrier.initial_state(omega + h * motion) - carrier.initial_state(omega - h * motion)) / (2 * h)
    assert np.allclose(compiled[K * (K + M):], expected, atol=atol, rtol=0)


@pytest.mark.parametrize("aligned", [None, (1, 0)])
def test_eta2_term_from_exact_state_equals_the_quadrature(aligned):
    # The compiled closed forms for quadruples with a repeated unit and the carried values for
    # the others, against finite_lr_expectation (path-integral quadrature of every quadruple).
    K, M, lr, noise = 3, 3, 0.5, 0.2
    Q, R, T = _overlaps(K, M, seed=6, aligned=aligned, gap=1e-3)
    carrier = CarriedFourPoint(K, M)
    state = carrier.initial_state(np.block([[Q, R], [R.T, T]]))
    with_term = _compiled(Q, R, T, lr, noise, carrier, state)[: K * K].reshape(K, K)
    without = _compiled(Q, R, T, lr)[: K * K].reshape(K, K)
    expected = finite_lr_expectation(Q, R, T, noise)
    assert np.allclose((with_term - without) / lr**2, expected, atol=1e-12, rtol=0)


def test_units_aligned_by_rounding_are_merged_by_value():
    # Regression (numpy version fixed earlier, compiled version must follow): a student equal to a
    # teacher up to rounding has correlation exactly 1, and the label-chosen closed forms divided
    # by sqrt(1 - rho^2) = 0. They must be merged by value and agree with the quadrature.
    rng = np.random.default_rng(11)
    W_teacher = rng.normal(size=(2, 9)) / 3.0
    W = np.vstack([W_teacher[0], rng.normal(size=9) / 3.0])
    Q, R, T = W @ W.T, W @ W_teacher.T, W_teacher @ W_teacher.T
    R[0, 1] += 1e-15
    carrier = CarriedFourPoint(2, 2)
    # The carried state is irrelevant here: only quadruples with a repeated unit touch the
    # aligned pair (0, student) ~ (2, teacher 0) in the sum, plus carried ones given exactly.
    # The student lies in the teacher span, where the eta^2 term cannot move the orthogonal
    # factor (the ODE keeps the overlaps as variables from such starts): the term itself is
    # evaluated here.
    omega = np.block([[Q, R], [R.T, T]])
    state = carrier.initial_state(omega)
    sd, corr = _correlations(omega)
    term = _finite_lr_term(sd, corr, state, 2, 0.0, _carried_tables(2, 2))
    assert np.all(np.isfinite(term))
    assert np.allclose(term, finite_lr_expectation(Q, R, T), atol=1e-10, rtol=0)


def test_out_of_range_state_gives_nan():
    Q, R, T = _overlaps(2, 2, seed=7)
    model = flow_model(T, 0.5, 0.0, 2, 10.0)
    out = np.empty(8)
    for bad in (np.nan, 11.0):
        y = np.concatenate([Q.ravel(), R.ravel()])
        y[5] = bad
        velocity(y, model, out, False)
        assert np.all(np.isnan(out))


def _rhs(model):
    """The compiled right-hand side as a function of ``(t, y)`` for solve_ivp."""
    def rhs(_t, y):
        out = np.empty_like(y)
        velocity(y, model, out, False)
        return out

    return rhs


def _reference_solution(y0, model, t_max, rtol, atol):
    return solve_ivp(_rhs(model), (0.0, t_max), y0, method="DOP853", rtol=rtol, atol=atol, dense_output=True)


def _reference_event(y0, model, n_overlaps, lr, tol, rtol, atol):
    """solve_ivp's time where the overlaps' speed / lr falls to ``tol`` (the convergence event);
    ``n_overlaps`` entries of the state are the student rows."""
    rhs = _rhs(model)
    V = model.V

    def speed(_t, y):
        U, dU = y[:n_overlaps].reshape(-1, V.shape[1]), rhs(0.0, y)[:n_overlaps].reshape(-1, V.shape[1])
        return np.log(overlap_speed(U, dU, V) / lr + 1e-300) - np.log(tol)

    speed.terminal, speed.direction = True, -1
    reference = solve_ivp(rhs, (0.0, 1e4), y0, method="DOP853", rtol=rtol, atol=atol, events=speed)
    assert reference.status == 1
    return reference.t_events[0][0]


@pytest.mark.parametrize("carried", [False, True])
def test_compiled_dop853_follows_solve_ivp(carried):
    # Same method, coefficients and step-size control as scipy's DOP853. The step sizes come from
    # error estimates that are small differences of the stages, so rounding moves them by ~1e-5
    # relative; the solutions, both within the tolerances, agree far more closely.
    config = RunConfig(K=3, M=3, lr=0.5, init=InitSpec(d=500, seed=1, scale=0.6))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    carrier = CarriedFourPoint(3, 3) if carried else None
    y0, _ = _span_state(Q0, R0, T, carrier.initial_state(np.block([[Q0, R0], [R0.T, T]])) if carried else None)
    # solve_ivp's error norm is entry by entry (the default with the eta^2 term measures the
    # overlaps: tests below).
    model = flow_model(T, 0.5, 0.0, 3, 1e6, carried, overlap_error=False)
    rtol, atol, t_max = 1e-8, 1e-11, 30.0
    status, t_end, y_end, steps, n_steps, _, _ = dop853.integrate(y0, t_max, rtol, atol, 18, 0.5, 1e-14, 1e6, model, 0.0, 10**6)
    reference = _reference_solution(y0, model, t_max, rtol, atol)
    assert status == dop853.REACHED_END and t_end == t_max
    assert n_steps == reference.t.size - 1
    assert np.allclose(steps[0][:n_steps], reference.t[:-1], rtol=1e-3, atol=0)
    times = np.linspace(0.0, t_max, 97)
    # The order-7 interpolant is exact for the overlaps (the carried state gets a cubic Hermite
    # one, for the event search only; the step ends carry it exactly).
    assert np.allclose(dop853.dense_values(times, steps, n_steps, 18), reference.sol(times).T[:, :18], atol=1e-10, rtol=0)
    assert np.allclose(y_end, reference.y[:, -1], atol=1e-10, rtol=0)


def test_overlap_error_sums_are_the_errors_of_q_and_r_and_of_the_orthogonal_rows():
    # error_sums maps the rows' error estimate onto the overlaps with loops over index pairs;
    # here the same with matrix products (dQ = dU U^T + U dU^T, dR = dU V^T), then the orthogonal
    # factor S against the norm of each of its rows, then the carried coordinates entry by entry.
    rng = np.random.default_rng(5)
    K, M = 3, 2
    T = np.array([[1.0, 0.3], [0.3, 0.8]])
    model = flow_model(T, 0.5, 0.0, K, 1e6, True)
    V = model.V
    p = V.shape[1]
    n = K * p + 7
    y, y_new, error5, error3 = (rng.normal(size=n) for _ in range(4))
    rtol, atol = 1e-6, 1e-9
    U, U_new = y[: K * p].reshape(K, p), y_new[: K * p].reshape(K, p)
    row_sizes = np.maximum(np.linalg.norm(U[:, p - K :], axis=1), np.linalg.norm(U_new[:, p - K :], axis=1))
    expected = []
    for error in (error5, error3):
        dU = error[: K * p].reshape(K, p)
        errors = np.concatenate([(dU @ U.T + U @ dU.T).ravel(), (dU @ V.T).ravel(), dU[:, p - K :].ravel(),
                                 error[K * p :]])
        sizes = np.concatenate([
            np.maximum(np.abs(U @ U.T), np.abs(U_new @ U_new.T)).ravel(),
            np.maximum(np.abs(U @ V.T), np.abs(U_new @ V.T)).ravel(),
            np.repeat(row_sizes, K),
            np.maximum(np.abs(y[K * p :]), np.abs(y_new[K * p :])),
        ])
        expected.append(np.sum((errors / (atol + rtol * sizes)) ** 2))
    total5, total3, n_terms = error_sums(error5, error3, y, y_new, rtol, atol, model)
    assert total5 == pytest.approx(expected[0], rel=1e-12) and total3 == pytest.approx(expected[1], rel=1e-12)
    assert n_terms == K * K + K * M + K * K + 7
    coordinates = error_sums(error5, error3, y, y_new, rtol, atol, model._replace(overlap_error=False))
    assert coordinates[0] == pytest.approx(np.sum((error5 / (atol + rtol * np.maximum(np.abs(y), np.abs(y_new)))) ** 2))
    assert coordinates[2] == n


def test_eta2_flow_converging_onto_its_teacher_reaches_the_handover():
    # Regression: with the error measured on the overlaps alone, S (the students' part outside the
    # teacher span, -> 0 here) was under-weighed where dS = lr^2 Phi S^-T / 2 grows like 1 / S: the
    # run took 14,487 steps and 9,252 rejections and ended at t_max with loss 3e-6 instead of
    # converging (K = M = 3, lr 0.1; runs at rtol 1e-9 and 1e-10 converge at t = 2238.0455, loss 5e-16).
    config = RunConfig(K=3, M=3, lr=0.1, eta2=True, t_max=3000.0)
    Q0, R0 = initial_overlaps(config)
    trajectory = integrate_ode(Q0, R0, config.teacher_matrix(), config.lr, config.t_max, eta2=True, solver="compiled")
    assert trajectory.status is FlowStatus.CONVERGED
    assert trajectory.stats.handover_time is not None and trajectory.stats.accepted_steps < 1000
    assert trajectory.t[-1] == pytest.approx(2238.0455, rel=1e-4) and trajectory.loss[-1] < 1e-12


def _rotated_orthogonal_factor(y0, K, p, seed):
    """The state with the columns of the orthogonal factor S (last K of each row) rotated: the
    same overlaps (S O O^T S^T = S S^T)."""
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(K, K)))
    U = y0[: K * p].reshape(K, p).copy()
    U[:, p - K:] = U[:, p - K:] @ rotation
    return np.concatenate([U.ravel(), y0[K * p:]])


@pytest.mark.parametrize("overlap_error", [False, True])
def test_error_norm_on_the_overlaps_does_not_depend_on_the_orthogonal_basis(overlap_error):
    # The columns of S are an arbitrary basis of the orthogonal complement. Entry by entry (as
    # solve_ivp) the step sizes depend on that basis; measured on the overlaps (the default with
    # the eta^2 term) they do not, and the overlaps of the two runs agree to the tolerances.
    config = RunConfig(K=4, M=4, lr=0.5, init=InitSpec(d=1000, seed=1, scale=0.5))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    y0, U0 = _span_state(Q0, R0, T, CarriedFourPoint(4, 4).initial_state(np.block([[Q0, R0], [R0.T, T]])))
    model = flow_model(T, 0.5, 0.0, 4, 1e6, True, overlap_error=overlap_error)
    runs = [dop853.integrate(y, 60.0, 1e-6, 1e-9, U0.size, 0.5, 1e-14, 1e6, model, 0.0, 10**6)
            for y in (y0, _rotated_orthogonal_factor(y0, *U0.shape, seed=3))]
    lengths = [run[3][1][: run[4]] for run in runs]
    same_steps = runs[0][4] == runs[1][4] and np.allclose(lengths[0], lengths[1], rtol=1e-6)
    assert same_steps == overlap_error
    V = model.V
    overlaps = [overlaps_from_rows(run[2][: U0.size].reshape(U0.shape), V) for run in runs]
    assert np.allclose(overlaps[0][0], overlaps[1][0], atol=1e-7) and np.allclose(overlaps[0][1], overlaps[1][1], atol=1e-7)


@pytest.mark.parametrize("t_end", [50.0, 200.0])
def test_eta2_error_norm_on_the_overlaps_keeps_them_within_the_tolerance(t_end):
    # The default (errors measured on Q and R) against solve_ivp at tolerances 10^4 times tighter.
    # Regression: with the tolerance on the rows (the norm of each row of S) the overlaps at
    # t = 50 were 3.4e-7 off (1.8e-8 now), and losses 7x less accurate than before the span
    # parametrisation at the same tolerance.
    config = RunConfig(K=4, M=4, lr=0.5, init=InitSpec(d=1000, seed=1, scale=0.5))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    y0, U0 = _span_state(Q0, R0, T, CarriedFourPoint(4, 4).initial_state(np.block([[Q0, R0], [R0.T, T]])))
    model = flow_model(T, 0.5, 0.0, 4, 1e6, True)
    _, _, y_end, _, _, _, _ = dop853.integrate(y0, t_end, 1e-6, 1e-9, U0.size, 0.5, 1e-14, 1e6, model, 0.0, 10**6)
    reference = _reference_solution(y0, model, t_end, 1e-10, 1e-13).y[:, -1]
    V = model.V
    Q, R = overlaps_from_rows(y_end[: U0.size].reshape(U0.shape), V)
    Q_ref, R_ref = overlaps_from_rows(reference[: U0.size].reshape(U0.shape), V)
    assert np.max(np.abs(Q - Q_ref)) < 1e-7 and np.max(np.abs(R - R_ref)) < 1e-7


def test_convergence_event_time_matches_solve_ivp():
    T = np.eye(2)
    Q0 = np.array([[1.1, 0.05], [0.05, 0.9]])
    R0 = np.array([[1.0, 0.05], [0.02, 0.93]])
    tol = 1e-6
    trajectory = integrate_ode(Q0, R0, T, 0.5, 1e4, eta2=False, tol=tol)
    assert trajectory.status is FlowStatus.CONVERGED
    model = flow_model(T, 0.5, 0.0, 2, 1e6)
    y0, _ = _span_state(Q0, R0, T)
    reference = _reference_event(y0, model, 8, 0.5, tol, rtol=1e-8, atol=1e-11)
    # The speed decays like exp(-t / 22) here: the 1e-11 state tolerance moves the crossing by ~1e-3.
    assert trajectory.t[-1] == pytest.approx(reference, rel=1e-4)
    # At the event the speed is the tolerance.
    dQ, dR = ode_velocity(trajectory.Q[-1], trajectory.R[-1], T, 0.5, eta2=False)
    assert np.hypot(np.linalg.norm(dQ), np.linalg.norm(dR)) / 0.5 == pytest.approx(tol, rel=1e-6)


def test_convergence_event_with_the_carried_eta2_term_matches_solve_ivp():
    # Two students, three teachers: the flow stops at a fixed point with no aligned pair, so the
    # whole run is compiled and carried. The event search interpolates the carried state by
    # cubic Hermite (only the overlaps get the order-7 interpolant).
    # Regression: this compared the default run (rtol 1e-6) with solve_ivp at the same loose
    # tolerance, and failed with newer numpy/scipy/numba (3482.37 vs 3481.64): near a fixed point
    # a state error e moves the crossing by ~e / tol, so both loose runs were off by ~3% from the
    # true time (3390.8). The reference is now tight and the default run must be within 0.1%.
    config = RunConfig(K=2, M=3, lr=0.5, init=InitSpec(d=50, seed=0))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    tol = 1e-6
    trajectory = integrate_ode(Q0, R0, T, 0.5, 1e4, eta2=True, tol=tol)
    assert trajectory.status is FlowStatus.CONVERGED
    model = flow_model(T, 0.5, 0.0, 2, 1e6, True)
    y0, U0 = _span_state(Q0, R0, T, CarriedFourPoint(2, 3).initial_state(np.block([[Q0, R0], [R0.T, T]])))
    reference = _reference_event(y0, model, U0.size, 0.5, tol, rtol=1e-11, atol=1e-14)
    assert trajectory.t[-1] == pytest.approx(reference, rel=1e-3)
    # At the event the speed with the exact four-point term (quadrature) is the tolerance, up to
    # the carried state's drift over 3400 time units at the default tolerances (7% of this tiny
    # speed since the rows in the span are the variables; 1e-9 relative with rtol 1e-9).
    dQ, dR = ode_velocity(trajectory.Q[-1], trajectory.R[-1], T, 0.5, eta2=True)
    assert np.hypot(np.linalg.norm(dQ), np.linalg.norm(dR)) / 0.5 == pytest.approx(tol, rel=0.1)


def test_output_grid_is_log_spaced_from_zero_to_the_final_time():
    T = np.eye(2)
    trajectory = integrate_ode(0.3 * T, 0.1 * T, T, 0.5, 50.0, eta2=False, n_points=30)
    assert trajectory.t.size == 30 and trajectory.t[0] == 0.0 and trajectory.t[-1] == 50.0
    ratios = trajectory.t[2:] / trajectory.t[1:-1]
    assert np.all(np.diff(trajectory.t) > 0) and np.allclose(ratios, ratios[0])


# 10**9: `flow --points 1e9` allocated 60 GB after 50 s; the count is bounded up front now.
@pytest.mark.parametrize("n_points", [1, 0, 2.5, True, 10**9])
def test_bad_number_of_output_points_is_named(n_points):
    T = np.eye(2)
    with pytest.raises(ValueError, match="n_points must be a whole number from 2"):
        integrate_ode(0.3 * T, 0.1 * T, T, 0.5, 50.0, n_points=n_points)


@pytest.mark.parametrize("eta2", [False, True])
def test_a_run_handed_over_midway_equals_the_whole_run(monkeypatch, eta2):
    # The compiled solver stops after a step budget (or near alignment) and scipy's solve_ivp on
    # the numpy right-hand side continues: the joined trajectory is the same trajectory.
    config = RunConfig(K=3, M=2, lr=0.5, init=InitSpec(d=500, seed=4, scale=0.6))
    Q0, R0 = initial_overlaps(config)
    T = config.teacher_matrix()
    whole = integrate_ode(Q0, R0, T, 0.5, 30.0, eta2=eta2, rtol=1e-9, atol=1e-12)
    monkeypatch.setattr(ode_solvers, "_MAX_COMPILED_STEPS", 5)
    handovers = []
    monkeypatch.setattr(ode, "solve_numpy", lambda y0, t0, *args, **kwargs: handovers.append(t0)
                        or ode_solvers.solve_numpy(y0, t0, *args, **kwargs))
    handed = integrate_ode(Q0, R0, T, 0.5, 30.0, eta2=eta2, rtol=1e-9, atol=1e-12)
    assert len(handovers) == 1 and 0 < handovers[0] < 30.0
    assert handed.status is whole.status is FlowStatus.T_MAX
    assert np.allclose(handed.t, whole.t)
    assert np.allclose(handed.Q, whole.Q, atol=1e-8, rtol=0)
    assert np.allclose(handed.R, whole.R, atol=1e-8, rtol=0)


def test_angle_by_the_arctangent_of_the_ratio_is_atan2():
    # The gradient flow's right-hand side takes atan(r / c) (half the time of atan2) with the
    # quadrant fixed by the sign of c: check it against atan2 in every quadrant and at the edges.
    rng = np.random.default_rng(0)
    r = np.concatenate([np.abs(rng.standard_normal(200)), [0.0, 0.0, 0.0, 1.0, 1e-300, 1.0, 1e-20]])
    c = np.concatenate([rng.standard_normal(200), [1.0, -1.0, 0.0, 0.0, -1.0, 1e-300, -1.0]])
    for a, b in zip(r, c):
        assert abs(_angle(a, b) - np.arctan2(a, b)) <= 4e-16 * max(1.0, abs(np.arctan2(a, b)))
