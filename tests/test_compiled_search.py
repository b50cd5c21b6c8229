"""The compiled flow of many starts and the cheaper Newton polishing (issue 17).

Independent references: the per-point gradient with exact residuals (``gradient_from_weights``), the
numpy Bogacki-Shampine loop of ``batch_flow.rk_step`` on the numpy batched gradient (the flow the
compiled one replaced), the eigendecomposition pseudo-inverse Newton step, and a tight-tolerance
reference flow for where a start ends.
"""

import numpy as np

from landscape.critical_points.ansatz import ansatz_starts
from landscape.critical_points.batch_flow import EndReason, flow_to_critical, rk_step, unchecked_batch_gradient
from landscape.critical_points.flow_kernel import negative_gradients
from landscape.critical_points.hessian import weight_hessian
from landscape.critical_points.search import newton_polish, search_critical_points
from landscape.model.loss import gradient_from_weights, rejection_norms


def test_compiled_gradient_matches_the_exact_per_point_gradient(rng):
    teacher = np.eye(5)[:4] + 0.1 * rng.standard_normal((4, 5))
    W = rng.standard_normal((6, 7, 5)) / np.sqrt(5)
    W[1, 2] = 0.7 * teacher[0]  # aligned with a teacher: the Gram residual cancels, the rejection does not
    W[2, 3] = W[2, 1]  # identical students
    W[3, 4] = -2.0 * W[3, 0]  # opposite students (angle pi)
    W[4, 5] = W[4, 0] + 1e-9 * W[4, 1]  # nearly parallel
    out = np.empty_like(W)
    negative_gradients(W, teacher, out)
    for point, velocity in zip(W, out):
        assert np.allclose(-velocity, gradient_from_weights(point, teacher), rtol=0, atol=1e-13)


def _numpy_flow(W, teacher, tol, rtol, max_steps):
    """The batched numpy flow that the compiled one replaced (no hand-over), start by start."""
    T, residual = teacher @ teacher.T, rejection_norms(teacher, teacher)

    def slope(Y):
        return -unchecked_batch_gradient(Y, teacher, T, residual)

    ends, counts = [], []
    for start in W:
        Y, h, steps = start[None].copy(), 0.05, 0
        f = slope(Y)
        while np.linalg.norm(f) >= tol and steps < max_steps:
            Y3, f4, ratio = rk_step(Y, f, np.full((1, 1, 1), h), slope, None, rtol)
            if ratio[0] <= 1.0:
                Y, f = Y3, f4
            steps += 1
            h *= float(np.clip(0.9 * max(ratio[0], 1e-10) ** (-1.0 / 3.0), 0.2, 5.0))
        ends.append(Y[0])
        counts.append(steps)
    return np.array(ends), np.array(counts)


def test_compiled_flow_follows_the_numpy_flow_step_for_step(rng):
    teacher = np.eye(4)
    W0 = rng.standard_normal((6, 4, 4)) / 2.0
    flow = flow_to_critical(W0, teacher, tol=1e-6, rtol=1e-3)
    ends, counts = _numpy_flow(W0, teacher, 1e-6, 1e-3, 20_000)
    assert all(reason is EndReason.CONVERGED for reason in flow.reasons)
    assert np.max(np.abs(flow.W - ends)) < 1e-6
    # The same step-size sequence up to rounding: step counts agree to a few steps in hundreds.
    assert counts.min() > 50 and np.all(np.abs(flow.steps - counts) <= 0.02 * counts + 2)


def test_projected_compiled_flow_stays_in_its_subspace_and_follows_the_numpy_flow():
    teacher = np.eye(5)
    starts, projector = ansatz_starts(5, 5, (2, 3), 4, np.random.default_rng(3), teacher)
    flow = flow_to_critical(starts, teacher, tol=1e-6, rtol=1e-3, projector=projector)
    flat = flow.W.reshape(len(starts), -1)
    assert np.max(np.abs(flat @ projector.T - flat)) < 1e-12
    # Dense numpy reference of the projected loop.
    T, residual = teacher @ teacher.T, rejection_norms(teacher, teacher)

    def slope(Y):
        return -unchecked_batch_gradient(Y, teacher, T, residual)

    for start, end in zip(starts, flow.W):
        Y, h = start[None].copy(), 0.05
        f = slope(Y)
        while np.linalg.norm(f) >= 1e-6:
            Y3, f4, ratio = rk_step(Y, f, np.full((1, 1, 1), h), slope, projector, 1e-3)
            if ratio[0] <= 1.0:
                Y, f = Y3, f4
            h *= float(np.clip(0.9 * max(ratio[0], 1e-10) ** (-1.0 / 3.0), 0.2, 5.0))
        assert np.max(np.abs(Y[0] - end)) < 1e-6


def test_newton_steps_by_cholesky_agree_with_the_pseudo_inverse_steps(rng):
    # From a perturbed global minimum (positive definite Hessian) every Newton iteration takes the
    # Cholesky route; replaying the same iterations with the eigendecomposition gives the same point.
    teacher = np.eye(5)
    W = teacher + 1e-3 * rng.standard_normal((5, 5))
    polished = newton_polish(W, teacher, tol=1e-12)
    assert polished.success and polished.iterations <= 4
    X = W.copy()
    for _ in range(polished.iterations):
        eigenvalues, vectors = np.linalg.eigh(weight_hessian(X, teacher))
        assert eigenvalues[0] > 0
        X = X - (vectors @ ((vectors.T @ gradient_from_weights(X, teacher).ravel()) / eigenvalues)).reshape(X.shape)
    assert np.max(np.abs(X - polished.W)) < 1e-12
    assert np.max(np.abs(polished.W - teacher)) < 1e-10


def test_a_dying_unit_is_declared_dead_at_once_and_the_search_ends_where_a_tight_flow_ends():
    # Regression: at K = M + 1 half the starts hand over with an extra unit of norm ~5e-3 that the
    # flow shrinks to zero; Newton's line search let it shrink by a third per step, and each such
    # start cost thirty Hessians (K = 18: 0.3 s of a 0.5 s start) before it was declared dead.
    # Start 3 of seed 0 at K = 18, M = 17 (Safran & Shamir's protocol) is one of them.
    from landscape.catalogues.build import _span_weights
    from landscape.model.config import InitSpec, RunConfig
    from landscape.model.loss import loss_from_weights

    config = RunConfig(K=18, M=17, init=InitSpec(kind="random", d=17, scale=1.0))
    W0, teacher = _span_weights(config, 4, np.random.default_rng(0))
    fast = search_critical_points(W0[3:4], teacher, workers=1)
    tight = search_critical_points(W0[3:4], teacher, workers=1, rtol=1e-4, flow_tol=1e-7, handover_tol=1e-7)
    assert fast.success and tight.success
    assert fast.newton_iterations[0] <= 6
    # Both end with the dead unit sharing a survivor's ray (which one is a tie between symmetric
    # survivors), so compare the network: its loss and the sorted lengths of its rays.
    assert abs(loss_from_weights(fast.W[0], teacher) - loss_from_weights(tight.W[0], teacher)) < 1e-10

    def rays(W):
        directions = W / np.linalg.norm(W, axis=1)[:, None]
        shared = np.isclose(directions @ directions.T, 1.0, atol=1e-9)
        return np.sort([np.linalg.norm(W[row].sum(axis=0)) for row in {tuple(np.flatnonzero(r)) for r in shared}])

    assert np.allclose(rays(fast.W[0]), rays(tight.W[0]), atol=1e-6)
    assert len(rays(fast.W[0])) == 17


def test_newton_does_not_kill_a_small_unit_far_from_a_critical_point():
    # Newton's step sends every small unit to zero; away from a critical point the flow may turn it
    # onto a teacher's ray instead, where it survives as a split unit. Not declared dead there.
    teacher = np.eye(4)
    direction = np.array([1.0, 0.3, -0.2, 0.1])
    W = np.vstack([teacher, 5e-3 * direction / np.linalg.norm(direction)])
    assert newton_polish(W, teacher, max_iter=1).status is not EndReason.UNIT_DIED
    tight = search_critical_points(W[None], teacher, workers=1, rtol=1e-4, flow_tol=1e-7, handover_tol=1e-7)
    assert np.linalg.norm(tight.W[0, 4]) > 1e-3  # the flow keeps it, on teacher 0's ray
