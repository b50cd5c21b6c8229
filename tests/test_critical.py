"""Critical points: batched flow, Newton polishing, ansatz saddles, finite-lr fixed points, symmetries.

Independent references: finite differences of ``loss_from_weights``, the per-point
``gradient_from_weights``, the published spurious-minimum losses of
/work/shared/reference/README.md, brute-force enumeration of permutations, the known partition
numbers, and linear scaling in ``lr`` of the finite-lr fixed points.
"""

import itertools
import math

import numpy as np
import pytest

from landscape.critical_points.ansatz import ansatz_projector, ansatz_starts, integer_partitions, plateau_projector
from landscape.critical_points.batch_flow import EndReason, batch_gradient, flow_to_critical, subspace_basis
from landscape.critical_points.fixed_points import ode_fixed_point, ode_residual
from landscape.critical_points.flat import gradient_repolish, make_candidate, same_point
from landscape.critical_points.hessian import weight_hessian
from landscape.critical_points.search import newton_polish, search_critical_points
from landscape.critical_points.symmetry import (
    aligned_symmetry,
    automorphism_count,
    canonical_form,
    orbit_partition,
    orbit_size,
    same_orbit,
)
from landscape.model.loss import gradient_flow_velocity, gradient_from_weights, loss_from_weights

# Published leading-family losses (Safran & Shamir 2018, /work/shared/reference/README.md).
PUBLISHED_LEADING_LOSS = {6: 0.0250806, 7: 0.0232027}


def _students(rng, S, K, n):
    return rng.standard_normal((S, K, n)) / np.sqrt(n)


def _ansatz_minimum(K, blocks, seed=0, count=8):
    """Polished points of the Delta(S_b1 x ...) ansatz, orthonormal teacher in d = K."""
    teacher = np.eye(K)
    starts, projector = ansatz_starts(K, K, blocks, count, np.random.default_rng(seed), teacher)
    found = search_critical_points(starts, teacher, projector=projector, workers=1)
    return found, teacher


# ----------------------------------------------------------------------------- gradient


def test_batch_gradient_matches_single_point_and_finite_differences(rng):
    W, teacher = _students(rng, 3, 4, 5), rng.standard_normal((3, 5)) / np.sqrt(5)
    W[1, 2] = teacher[0] * 0.7  # a student aligned with a teacher: exact residuals matter
    W[2, 3] = W[2, 1]  # two identical students
    batched = batch_gradient(W, teacher)
    for point, gradient in zip(W, batched):
        assert np.allclose(gradient, gradient_from_weights(point, teacher), atol=1e-14)
    h, point = 1e-6, W[0]
    numeric = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        step = np.zeros_like(point)
        step[index] = h
        numeric[index] = (loss_from_weights(point + step, teacher) - loss_from_weights(point - step, teacher)) / (2 * h)
    assert np.allclose(batched[0], numeric, atol=1e-8)


def test_batch_gradient_rejects_bad_input():
    with pytest.raises(ValueError, match="same n"):
        batch_gradient(np.zeros((2, 3, 4)), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        batch_gradient(np.full((1, 2, 3), np.nan), np.eye(3))


# ----------------------------------------------------------------------------- flow and Newton


def test_flow_decreases_the_loss_and_reaches_its_tolerance(rng):
    teacher = np.eye(3)
    W0 = _students(rng, 6, 3, 3)
    flow = flow_to_critical(W0, teacher, tol=1e-6)
    assert flow.converged.all()
    for start, end, norm in zip(W0, flow.W, flow.gradient_norm):
        assert loss_from_weights(end, teacher) < loss_from_weights(start, teacher)
        assert np.linalg.norm(gradient_from_weights(end, teacher)) == pytest.approx(norm, rel=1e-8)
        assert norm < 1e-6


def test_flow_reports_max_steps_and_dead_units(rng):
    teacher = np.eye(3)
    W0 = _students(rng, 2, 3, 3)
    flow = flow_to_critical(W0, teacher, max_steps=3)
    assert flow.reasons == (EndReason.MAX_STEPS, EndReason.MAX_STEPS)
    W0[0, 1] = 0.0  # a degenerate start: a unit of norm zero
    flow = flow_to_critical(W0, teacher)
    assert flow.reasons[0] is EndReason.UNIT_DIED and flow.reasons[1] is EndReason.CONVERGED
    assert EndReason.UNIT_DIED.code == "unit_died" and "norm zero" in EndReason.UNIT_DIED.value


def test_newton_polish_reaches_1e_10_from_a_perturbed_global_minimum(rng):
    teacher = np.eye(4)
    W = teacher[[2, 0, 3, 1]] + 1e-3 * rng.standard_normal((4, 4))
    result = newton_polish(W, teacher)
    assert result.success and result.status is EndReason.CONVERGED
    assert np.linalg.norm(gradient_from_weights(result.W, teacher)) < 1e-10
    assert loss_from_weights(result.W, teacher) < 1e-18


def test_search_polishes_every_converged_start_and_records_degenerate_starts(rng):
    teacher = np.eye(4)
    W0 = _students(rng, 10, 4, 4)
    W0[3] = 0.0
    found = search_critical_points(W0, teacher, workers=1)
    assert found.reasons[3] is EndReason.UNIT_DIED
    assert found.failures == {"unit_died": 1} and not found.success
    for W, ok in zip(found.W, found.converged):
        if ok:
            assert np.linalg.norm(gradient_from_weights(W, teacher)) < 1e-10


def test_search_is_independent_of_the_number_of_workers(rng):
    teacher = np.eye(4)
    W0 = _students(rng, 130, 4, 4)  # three chunks
    serial = search_critical_points(W0, teacher, workers=1)
    shared = search_critical_points(W0, teacher, workers=2)
    assert np.array_equal(serial.W, shared.W) and serial.reasons == shared.reasons
    calls = []
    search_critical_points(W0[:70], teacher, workers=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(64, 70), (70, 70)]


@pytest.mark.parametrize("K", [6, 7])
def test_leading_spurious_minimum_reproduces_the_published_loss(K):
    # Arjevani & Field's leading family has isotropy Delta(S_{K-1} x S_1): flows in that subspace find it.
    found, teacher = _ansatz_minimum(K, (K - 1, 1))
    losses = np.array([loss_from_weights(W, teacher) for W in found.W[found.converged]])
    match = np.flatnonzero(np.abs(losses - PUBLISHED_LEADING_LOSS[K]) < 1e-6)
    assert match.size, f"losses found: {np.unique(losses.round(7))}"
    W = found.W[found.converged][match[0]]
    assert abs(losses[match[0]] - PUBLISHED_LEADING_LOSS[K]) < 1e-6
    assert np.linalg.norm(gradient_from_weights(W, teacher)) < 1e-10
    # A minimum of the full problem, not only of the subspace: the exact Hessian has index 0.
    assert np.linalg.eigvalsh(weight_hessian(W, teacher))[0] > 1e-4


def test_spurious_minimum_hessian_agrees_with_finite_differences():
    found, teacher = _ansatz_minimum(6, (5, 1))
    losses = np.array([loss_from_weights(W, teacher) for W in found.W])
    W = found.W[np.argmin(np.abs(losses - PUBLISHED_LEADING_LOSS[6]))]
    h, n = 1e-5, W.size
    numeric = np.empty((n, n))
    for column in range(n):
        step = np.zeros(n)
        step[column] = h
        plus = gradient_from_weights(W + step.reshape(W.shape), teacher).ravel()
        minus = gradient_from_weights(W - step.reshape(W.shape), teacher).ravel()
        numeric[:, column] = (plus - minus) / (2 * h)
    exact = weight_hessian(W, teacher)
    assert np.max(np.abs(exact - numeric)) < 1e-7
    assert np.linalg.eigvalsh(0.5 * (numeric + numeric.T))[0] > 0  # index 0 from the FD Hessian as well


def test_newton_rejects_bad_input():
    with pytest.raises(ValueError, match="one point"):
        newton_polish(np.zeros((2, 2, 2)), np.eye(2))
    with pytest.raises(ValueError, match="tol"):
        newton_polish(np.eye(2), np.eye(2), tol=0)
    with pytest.raises(ValueError, match="projector"):
        flow_to_critical(np.eye(2)[None], np.eye(2), projector=np.eye(3))
    with pytest.raises(ValueError, match="max_steps"):
        flow_to_critical(np.eye(2)[None], np.eye(2), max_steps=0)


# ----------------------------------------------------------------------------- symmetric ansatzes


def test_integer_partitions_match_the_partition_numbers():
    # p(n) for n = 1..10 (OEIS A000041).
    assert [len(integer_partitions(n)) for n in range(1, 11)] == [1, 2, 3, 5, 7, 11, 15, 22, 30, 42]
    assert integer_partitions(4)[:2] == ((4,), (3, 1))
    with pytest.raises(ValueError):
        integer_partitions(0)


@pytest.mark.parametrize("paired, blocks", [(True, (2, 1)), (True, (3,)), (False, (2, 2))])
def test_ansatz_subspace_is_a_projection_invariant_under_the_gradient(rng, paired, blocks):
    K, M = 4, 3
    teacher = np.eye(M)
    P = ansatz_projector(K, M, blocks, teacher, paired=paired)
    assert np.allclose(P @ P, P)
    W = (P @ rng.standard_normal(K * M)).reshape(K, M)
    gradient = gradient_from_weights(W, teacher).ravel()
    assert np.allclose(P @ gradient, gradient, atol=1e-13)  # equivariance: the flow stays in the subspace


def test_subspace_basis_spans_the_range_and_cached_bases_stay_intact(rng):
    # Bases are kept per projector (the ansatz search asks again at every hand-over check and
    # polish): the basis of an oblique projector spans its range, and a caller cannot change a
    # kept basis (it would be the wrong basis for every later flow in that subspace).
    A, B = rng.standard_normal((12, 5)), rng.standard_normal((12, 5))
    P = A @ np.linalg.solve(B.T @ A, B.T)  # onto the columns of A along the complement of B's
    assert np.allclose(P @ P, P) and not np.allclose(P, P.T)
    for _ in range(2):
        basis = subspace_basis(P.copy())
        assert np.allclose(basis.T @ basis, np.eye(basis.shape[1]))
        assert basis.shape[1] == round(np.trace(P)) and np.allclose(P @ basis, basis)
        with pytest.raises(ValueError):
            basis[0, 0] = 1.0


def test_ansatz_rejects_bad_blocks_and_teachers():
    with pytest.raises(ValueError, match="adding up"):
        ansatz_projector(3, 3, (2, 2), np.eye(3))
    with pytest.raises(ValueError, match="invariant"):
        ansatz_projector(2, 2, (2,), np.array([[1.0, 0.0], [0.3, 1.0]]))


@pytest.mark.parametrize("paired, blocks", [(True, (3, 1)), (False, (2, 1, 1))])
def test_ansatz_flows_end_at_saddles_of_the_full_problem(paired, blocks):
    teacher = np.eye(4)
    starts, projector = ansatz_starts(4, 4, blocks, 6, np.random.default_rng(0), teacher, paired=paired)
    found = search_critical_points(starts, teacher, projector=projector, workers=1)
    saddles = 0
    for W in found.W[found.converged]:
        assert np.linalg.norm(gradient_from_weights(W, teacher)) < 1e-10
        eigenvalues = np.linalg.eigvalsh(weight_hessian(W, teacher))
        saddles += loss_from_weights(W, teacher) > 1e-3 and eigenvalues[0] < -1e-3
    assert saddles >= 2


# ----------------------------------------------------------------------------- finite learning rate


def test_ode_residual_is_zero_at_a_realisable_global_minimum_for_any_lr():
    T = np.eye(3)
    for lr in (0.01, 0.5, 3.0):
        assert ode_residual(T, T, T, lr) < 1e-15


def test_ode_residual_without_eta2_is_the_gradient_flow_speed(rng):
    W, teacher = rng.standard_normal((3, 3)) / np.sqrt(3), np.eye(3)
    dQ, dR = gradient_flow_velocity(W @ W.T, W @ teacher.T, np.eye(3))
    expected = np.sqrt(np.sum(dQ**2) + np.sum(dR**2))
    assert ode_residual(W @ W.T, W @ teacher.T, np.eye(3), 0.3, eta2=False) == pytest.approx(expected, rel=1e-12)


def test_finite_lr_flow_ends_at_the_global_minimum(rng):
    T = np.eye(3)
    W = rng.standard_normal((3, 3)) / np.sqrt(3)
    result = ode_fixed_point(W @ W.T, W @ T, T, lr=0.5)
    assert result.success and result.residual < 1e-10
    order = np.argmax(result.R, axis=1)
    assert sorted(order) == [0, 1, 2]
    assert np.max(np.abs(result.R[np.argsort(order)] - T)) < 1e-6
    assert np.max(np.abs(result.Q - np.eye(3))) < 1e-6


def test_finite_lr_fixed_points_approach_the_lr_zero_critical_point():
    found, teacher = _ansatz_minimum(3, (3,), count=6)
    losses = np.array([loss_from_weights(W, teacher) for W in found.W])
    W = found.W[np.argmax(losses)]  # a saddle of L (the symmetric one has the largest loss)
    Q, R = W @ W.T, W @ teacher.T
    distances = []
    for lr in (1e-2, 1e-3):
        continued = ode_fixed_point(Q, R, np.eye(3), lr, flow=False)
        assert continued.success
        distances.append(np.linalg.norm(continued.Q - Q) + np.linalg.norm(continued.R - R))
    # The lr^2 term moves the fixed point by O(lr): ten times smaller lr, ten times closer.
    assert distances[1] < 1e-2 and 7 < distances[0] / distances[1] < 13


def test_ode_fixed_point_rejects_bad_input():
    T = np.eye(2)
    with pytest.raises(ValueError, match="lr"):
        ode_fixed_point(T, T, T, lr=0.0)
    with pytest.raises(ValueError, match="noise"):
        ode_fixed_point(T, T, T, lr=0.1, noise=-1.0)
    with pytest.raises(ValueError, match="semi-definite"):
        ode_fixed_point(np.eye(2), 2 * np.eye(2), T, lr=0.1)


def test_ode_fixed_point_reports_divergence():
    T = np.eye(2)
    result = ode_fixed_point(0.5 * T, 0.5 * T, T, lr=20.0)
    assert not result.success and result.status is EndReason.DIVERGED


# ----------------------------------------------------------------------------- symmetries


def _brute_force_orbit(Q, R, T, tol=1e-9):
    K, M = R.shape
    images = []
    for s in itertools.permutations(range(K)):
        for p in itertools.permutations(range(M)):
            if np.max(np.abs(T[np.ix_(p, p)] - T)) > tol:
                continue
            image = np.concatenate([Q[np.ix_(s, s)], R[np.ix_(s, p)]], axis=1)
            if not any(np.max(np.abs(image - other)) < tol for other in images):
                images.append(image)
    return len(images)


def _points_3x3(rng):
    random = rng.standard_normal((3, 3))
    return {
        "global minimum": np.eye(3),
        "split teacher": np.array([[1.0, 0, 0], [0, 1, 0], [0.5, 0.5, 0]]),
        "duplicated unit": np.array([[1.0, 0, 0], [1, 0, 0], [0, 0, 1]]),
        "fully symmetric": np.ones((3, 3)) / 3,
        "generic": random,
    }


def test_orbit_size_matches_brute_force_enumeration(rng):
    for name, W in _points_3x3(rng).items():
        for T, teacher in ((np.eye(3), np.eye(3)), (None, None)):
            if T is None:  # a teacher with a smaller symmetry group: units 0 and 1 correlated
                T = np.array([[1.0, 0.3, 0], [0.3, 1, 0], [0, 0, 1]])
                teacher = np.linalg.cholesky(T)
            Q, R = W @ W.T, W @ teacher.T
            assert orbit_size(Q, R, T) == _brute_force_orbit(Q, R, T), name


def test_orbit_size_formula_at_the_global_minimum():
    # R = I: the images are the permutation matrices, M! of them; the stabiliser is diagonal.
    for K in (4, 7):
        assert orbit_size(np.eye(K), np.eye(K), np.eye(K)) == math.factorial(K)
        assert automorphism_count(np.eye(K), np.eye(K), np.eye(K)) == math.factorial(K)
    # Every student aligned with a teacher, c_m students on teacher m with equal shares: the
    # stabiliser permutes students on one teacher and teachers with the same c, so
    # |stab| = prod_m c_m! * prod_c (number of teachers with c_m = c)!.
    for counts in ((2, 1, 1, 1), (2, 2, 1), (3, 1, 1, 1)):
        W = np.repeat(np.eye(len(counts)), counts, axis=0) / np.repeat(counts, counts)[:, None]
        K, M = W.shape
        stabiliser = math.prod(math.factorial(c) for c in counts)
        stabiliser *= math.prod(math.factorial(counts.count(c)) for c in set(counts))
        assert orbit_size(W @ W.T, W, np.eye(M)) == math.factorial(K) * math.factorial(M) // stabiliser


def _brute_force_stabiliser_orbits(Q, R, T, tol=1e-9):
    """Orbits of students and teachers under every (s, p) with p T p = T mapping (Q, R) to itself."""
    K, M = R.shape
    students, teachers = list(range(K)), list(range(M))
    for s in itertools.permutations(range(K)):
        for p in itertools.permutations(range(M)):
            if (np.max(np.abs(T[np.ix_(p, p)] - T)) <= tol and np.max(np.abs(Q[np.ix_(s, s)] - Q)) <= tol
                    and np.max(np.abs(R[np.ix_(s, p)] - R)) <= tol):
                for labels, perm in ((students, s), (teachers, p)):
                    for i, j in enumerate(perm):  # merge the orbits of i and perm(i)
                        old, new = max(labels[i], labels[j]), min(labels[i], labels[j])
                        labels[:] = [new if x == old else x for x in labels]
    return [np.unique(labels, return_inverse=True)[1] for labels in (students, teachers)]


def test_stabiliser_orbits_match_brute_force_enumeration(rng):
    # The stabiliser chain is searched from its deepest level up (Schreier-Sims style, one search per
    # level for a symmetric group): its generators must still give every orbit of the isotropy group.
    for name, W in _points_3x3(rng).items():
        Q, R, T = W @ W.T, W @ np.eye(3), np.eye(3)
        expected = _brute_force_stabiliser_orbits(Q, R, T)
        for found, wanted in zip(orbit_partition(Q, R, T), expected):
            assert np.array_equal(np.unique(found, return_inverse=True)[1], wanted), name


def test_teacher_orbits_are_cached_without_sharing_the_arrays():
    # The orbits of Aut(T) and |Aut(T)| are kept per teacher (asked for by every point of a
    # catalogue); a caller changing the returned arrays must not change the next answer.
    T = np.array([[1.0, 0.3, 0], [0.3, 1, 0], [0, 0, 1]])
    expected = _brute_force_stabiliser_orbits(T, T, T)
    for _ in range(2):
        found = orbit_partition(T, T, T)
        for orbits, wanted in zip(found, expected):
            assert np.array_equal(np.unique(orbits, return_inverse=True)[1], wanted)
            orbits[:] = 7
    W = np.array([[1.0, 0, 0], [0, 1, 0], [0.5, 0.5, 0]])
    for _ in range(2):
        assert orbit_size(W @ W.T, W @ np.linalg.cholesky(T).T, T) == _brute_force_orbit(W @ W.T, W @ np.linalg.cholesky(T).T, T)


def test_automorphism_count_of_large_symmetric_groups():
    # Exact counts where the chain has many levels: 12! at the K = M = 12 global minimum, and
    # 3! 3! 2! 2! (students per teacher, teachers with equal counts swapped) for counts (3, 3, 2).
    assert automorphism_count(np.eye(12), np.eye(12), np.eye(12)) == math.factorial(12)
    counts = (3, 3, 2)
    W = np.repeat(np.eye(3), counts, axis=0) / np.repeat(counts, counts)[:, None]
    assert automorphism_count(W @ W.T, W, np.eye(3)) == 6 * 6 * 2 * 2


def test_same_point_with_canonical_forms_agrees_with_the_isomorphism_test(rng):
    # Deduplication accepts two candidates whose canonical forms agree without the isomorphism
    # search; checked against that search (with full input checks) on permuted copies and on
    # different points of one loss (a spurious minimum and its mirror images).
    found, teacher = _ansatz_minimum(6, (5, 1))
    candidates = []
    for W in found.W[found.converged][:6]:
        s = rng.permutation(6)
        for X in (W, W[s]):
            norm = float(np.linalg.norm(gradient_from_weights(X, teacher)))
            candidates.append(make_candidate(X, teacher, norm, "flow", gradient_repolish))
    T = np.eye(6)
    for a, b in itertools.combinations(candidates, 2):
        expected = abs(a.loss - b.loss) <= 1e-9 * max(1.0, a.loss) and same_orbit(a.reduced, b.reduced, T, tol=1e-6)
        assert same_point(a, b, T) == expected


def test_aligned_symmetry_finds_the_permutation_or_nothing(rng):
    # Deduplication settles polished copies by aligning units: on copies permuted by a known
    # (student, teacher) permutation it must return a symmetry that maps the overlaps exactly, at
    # symmetric points too (the global minimum, units split over teachers), and on the 3 x 3 points
    # it never accepts a pair that brute-force enumeration of all permutations rejects.
    counts = (3, 1, 1, 1)
    points = [np.eye(6), rng.standard_normal((6, 6)),
              np.repeat(np.eye(4), counts, axis=0) / np.repeat(counts, counts)[:, None]]
    for W in points:
        K, M = W.shape
        Q, R = W @ W.T, W.copy()
        for _ in range(4):
            s, p = rng.permutation(K), rng.permutation(M)
            Qp, Rp = Q[np.ix_(s, s)] + 1e-9, R[np.ix_(s, p)]
            found = aligned_symmetry((Q, R), (Qp, Rp), np.eye(M))
            assert found is not None
            assert np.allclose(Qp[np.ix_(found[0], found[0])], Q) and np.allclose(Rp[np.ix_(*found)], R)
    T = np.array([[1.0, 0.3, 0], [0.3, 1, 0], [0, 0, 1]])
    shapes = list(_points_3x3(rng).values())
    for Wa, Wb in itertools.product(shapes, repeat=2):
        a, b = (Wa @ Wa.T, Wa @ np.eye(3)), (Wb @ Wb.T, Wb @ np.eye(3))
        for teacher in (np.eye(3), T):
            if aligned_symmetry(a, b, teacher) is not None:
                assert any(np.allclose(b[0][np.ix_(s, s)], a[0]) and np.allclose(b[1][np.ix_(s, p)], a[1])
                           and np.allclose(teacher[np.ix_(p, p)], teacher)
                           for s in itertools.permutations(range(3)) for p in itertools.permutations(range(3)))
    assert aligned_symmetry((np.eye(2), np.eye(2)), (np.eye(3), np.eye(3)), np.eye(2)) is None


def test_same_orbit_and_canonical_form_are_permutation_invariant(rng):
    found, teacher = _ansatz_minimum(6, (5, 1))
    losses = np.array([loss_from_weights(W, teacher) for W in found.W])
    W = found.W[np.argmin(np.abs(losses - PUBLISHED_LEADING_LOSS[6]))]
    Q, R = W @ W.T, W @ teacher.T
    reference = canonical_form(Q, R, np.eye(6))
    for _ in range(5):
        s, p = rng.permutation(6), rng.permutation(6)
        Qp, Rp = Q[np.ix_(s, s)], R[np.ix_(s, p)]
        assert same_orbit((Q, R), (Qp, Rp), np.eye(6))
        form = canonical_form(Qp, Rp, np.eye(6))
        assert np.max(np.abs(form.Q - reference.Q)) < 1e-9 and np.max(np.abs(form.R - reference.R)) < 1e-9
        assert np.allclose(form.R, Rp[np.ix_(form.student_order, form.teacher_order)])
    # A different point is not in the orbit; a teacher swap that breaks T is not a symmetry.
    assert not same_orbit((Q, R), (np.eye(6), np.eye(6)), np.eye(6))
    # Swapping the two correlated teachers (with their students) is a symmetry of this T.
    T = np.array([[1.0, 0.3, 0], [0.3, 1, 0], [0, 0, 1]])
    R3 = np.linalg.cholesky(T).T  # students = the basis vectors, teacher rows = Cholesky rows
    swap = [1, 0, 2]
    assert same_orbit((np.eye(3), R3), (np.eye(3), R3[np.ix_(swap, swap)]), T)
    # With such a teacher the canonical form keeps the teachers in place (a valid point for T).
    W3 = rng.standard_normal((4, 3))
    form = canonical_form(W3 @ W3.T, W3 @ np.linalg.cholesky(T).T, T)
    assert list(form.teacher_order) == [0, 1, 2]
    assert same_orbit((form.Q, form.R), (W3 @ W3.T, W3 @ np.linalg.cholesky(T).T), T)


def test_symmetry_functions_reject_bad_input():
    with pytest.raises(ValueError, match="widths"):
        same_orbit((np.eye(2), np.eye(2)), (np.eye(3), np.eye(3, 2)), np.eye(2))
    with pytest.raises(ValueError, match="tol"):
        orbit_size(np.eye(2), np.eye(2), np.eye(2), tol=0)


def test_plateau_subspace_is_a_projection_kept_by_the_gradient(rng):
    # Symmetric criticality needs the gradient at any point of the subspace to stay in it:
    # checked on the exact weight-space gradient, independent of the projector's construction.
    K, M = 3, 3
    teacher = np.eye(M + K + 1)[:M]
    projector = plateau_projector(K, teacher)
    assert np.allclose(projector @ projector, projector) and np.allclose(projector, projector.T)
    assert np.linalg.matrix_rank(projector) == 3
    for _ in range(3):
        W = (projector @ rng.standard_normal(projector.shape[0])).reshape(K, -1)
        gradient = gradient_from_weights(W, teacher).ravel()
        assert np.allclose(projector @ gradient, gradient, atol=1e-12)


def test_plateau_projector_rejects_teachers_without_the_symmetry_or_room():
    with pytest.raises(ValueError, match="invariant"):
        plateau_projector(2, np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [0.3, 1.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="n >= M \\+ K"):
        plateau_projector(3, np.eye(4)[:2])


def test_a_start_whose_unit_dies_ends_where_the_surviving_units_flow_ends(rng):
    # Regression: with K = M + 1 the extra unit often shrinks to zero while the others reach the
    # global minimum; such starts were counted as "not converged" (25 of 500 at K = 9, M = 8).
    # A dead unit stays at zero under gradient flow, so the start must end where the flow of the
    # K - 1 survivors ends (checked here by flowing the survivors alone), the dead unit on a ray.
    teacher = np.eye(4)
    W0 = _students(rng, 6, 5, 4)
    W0[:, 2] = 0.0
    found = search_critical_points(W0, teacher, workers=1)
    survivors = search_critical_points(np.delete(W0, 2, axis=1), teacher, workers=1)
    assert found.success and found.failures == {}
    for W, reference in zip(found.W, survivors.W):
        assert np.linalg.norm(gradient_from_weights(W, teacher)) < 1e-9
        assert abs(loss_from_weights(W, teacher) - loss_from_weights(reference, teacher)) < 1e-12
        # Same function: the dead unit shares the ray of one survivor (their sum is that survivor).
        rays = {tuple(np.round(w / np.linalg.norm(w), 8)) for w in W}
        assert len(rays) == 4
        np.testing.assert_allclose(W.sum(axis=0), reference.sum(axis=0), atol=1e-9)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_start_that_stalls_on_a_saddle_plateau_ends_where_a_tight_flow_ends(side):
    # Regression: a flow that passes close to a saddle slows down on its plateau; its gradient fell
    # below the flow tolerance (1e-6) there and Newton's method polished its end onto the saddle.
    # In Safran & Shamir's table 3 to 37 of 1,000 starts per K = M + 1 row (M = 13..19) ended at
    # index-1 saddles so, and at M = 17, 18 the spurious rate was 2.7 standard errors off the
    # published one. The start here is 1e-9 off the stable manifold of a K = M = 4 index-1 saddle
    # (three teachers missed, L = 0.023958): a flow to 1e-10 leaves the saddle, so must the search.
    teacher = np.eye(4)
    a, b, c, e, f = 0.650968, -0.312774, -0.014564, 0.010431, 1.048095
    saddle = newton_polish(np.array([[a, a, b, c], [a, b, a, c], [b, a, a, c], [e, e, e, f]]), teacher).W
    eigenvalues, vectors = np.linalg.eigh(weight_hessian(saddle, teacher))
    assert eigenvalues[0] < -0.04 and eigenvalues[1] > 0.02  # index 1
    W0 = saddle + 0.05 * vectors[:, -1].reshape(4, 4) + side * 1e-9 * vectors[:, 0].reshape(4, 4)
    stalled = newton_polish(flow_to_critical(W0[None], teacher, tol=1e-6, rtol=1e-3).W[0], teacher).W
    np.testing.assert_allclose(stalled, saddle, atol=1e-8)  # the defect, still there without the push
    found = search_critical_points(W0[None], teacher, workers=1)
    reference = flow_to_critical(W0[None], teacher, tol=1e-10, rtol=1e-5, max_steps=100_000)
    assert found.success and reference.converged[0]
    assert np.linalg.eigvalsh(weight_hessian(found.W[0], teacher))[0] > -1e-9  # no descent direction
    np.testing.assert_allclose(found.W[0], newton_polish(reference.W[0], teacher).W, atol=1e-6)


def test_a_start_at_the_step_limit_flows_on_to_where_an_unlimited_flow_ends(rng):
    # Regression: flows that pass slowly by a saddle of higher index hit the step limit (one start
    # at K = M = 17 took 17,000 of its 20,000 steps to leave a plateau with four Hessian eigenvalues
    # near -0.001) and were counted "not converged". A start at the limit now flows on from where
    # it stopped, four more times at most, then is still reported honestly.
    teacher = np.eye(4)
    W0 = _students(rng, 6, 4, 4)
    unlimited = search_critical_points(W0, teacher, workers=1)
    needed = unlimited.flow_steps.max()
    limited = search_critical_points(W0, teacher, workers=1, max_steps=int(needed) // 3)
    assert limited.success and unlimited.success
    for W, reference in zip(limited.W, unlimited.W):
        assert abs(loss_from_weights(W, teacher) - loss_from_weights(reference, teacher)) < 1e-12
    assert search_critical_points(W0, teacher, workers=1, max_steps=2).failures == {"max_steps": 6}


def test_a_progress_callback_that_raises_stops_the_remaining_chunks():
    # Issue 18: the dashboard stops a catalogue whose visitor left by raising from its progress
    # callback; in a multi-threaded host (Streamlit) the chunks not yet started must be cancelled,
    # not computed for nobody (the thread pool used to wait for all of them).
    import threading

    from landscape.critical_points.parallel import run_chunks

    calls = []

    def work(values):
        calls.append(len(values))
        threading.Event().wait(0.05)
        return values.sum()

    def progress(done, total):
        raise KeyboardInterrupt

    chunks = [(np.arange(3.0),) for _ in range(40)]
    idle = threading.Event()
    helper = threading.Thread(target=idle.wait)  # a second thread: the thread-pool path, as in Streamlit
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_chunks(work, chunks, (), 2, progress)
    finally:
        idle.set()
        helper.join()
    assert len(calls) < 10
