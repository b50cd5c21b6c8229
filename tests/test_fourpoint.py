"""Tests of :mod:`landscape.kernels.fourpoint` against independent references.

Every expected value comes from somewhere other than the code under test: scipy's Genz
integration, closed forms (identity, block-diagonal, equicorrelated, duplicates, planar
configurations), a 2-D Gauss-Legendre quadrature over ``(c, d)`` of the bivariate normal
CDF (Owen's T), a first-order expansion built from plain linear algebra, and seeded
Monte Carlo with a tolerance of a few standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from scipy.stats import multivariate_normal

from landscape.kernels.fourpoint import _RULE_RELU4, finite_lr_expectation, relu_four_point
from landscape.kernels.orthant import (
    RULE_SMOOTH,
    orthant_probability_2,
    orthant_probability_3,
    orthant_probability_4,
    path_moments,
)

MC_SAMPLES = 2_000_000
MC_SIGMAS = 5.0


# ------------------------------------------------------------------ independent references


def p2_closed(rho):
    return 0.25 + np.arcsin(rho) / (2 * np.pi)


def p3_closed(r01, r02, r12):
    return 0.125 + (np.arcsin(r01) + np.arcsin(r02) + np.arcsin(r12)) / (4 * np.pi)


def arc_cosine_kernel(a, b, c):
    theta = np.arccos(np.clip(c / np.sqrt(a * b), -1, 1))
    return (np.sqrt(max(a * b - c * c, 0.0)) + c * (np.pi - theta)) / (2 * np.pi)


def bivariate_cdf(h, k, r):
    """``P(X <= h, Y <= k)`` for a standard bivariate normal with correlation ``r`` (Owen's T)."""
    h = np.where(h == 0, 1e-300, h)
    k = np.where(k == 0, 1e-300, k)
    if r > 1 - 1e-12:  # Y = X
        return special.ndtr(np.minimum(h, k))
    if r < -1 + 1e-12:  # Y = -X
        return np.maximum(special.ndtr(h) - special.ndtr(-k), 0.0)
    s = np.sqrt((1 - r) * (1 + r))
    beta = np.where(h * k > 0, 0.0, 0.5)
    return (
        0.5 * special.ndtr(h)
        + 0.5 * special.ndtr(k)
        - special.owens_t(h, (k - r * h) / (h * s))
        - special.owens_t(k, (h - r * k) / (k * s))
        - beta
    )


def relu4_by_quadrature(cov, nodes=160):
    """``E[c d 1{a, b, c, d > 0}]`` as a 2-D Gauss-Legendre integral over ``c, d > 0`` of
    ``c d phi(c, d) P(a > 0, b > 0 | c, d)``; needs a non-singular ``(c, d)`` block."""
    cov = np.asarray(cov, float)
    s_cd, s_ab, cross = cov[2:, 2:], cov[:2, :2], cov[:2, 2:]
    inverse = np.linalg.inv(s_cd)
    regression = cross @ inverse
    conditional = s_ab - regression @ cross.T
    sd_a, sd_b = np.sqrt(max(conditional[0, 0], 0.0)), np.sqrt(max(conditional[1, 1], 0.0))
    x, w = np.polynomial.legendre.leggauss(nodes)
    reach_c, reach_d = 9 * np.sqrt(s_cd[0, 0]), 9 * np.sqrt(s_cd[1, 1])
    c = (x[:, None] + 1) * reach_c / 2
    d = (x[None, :] + 1) * reach_d / 2
    weight = w[:, None] * w[None, :] * reach_c * reach_d / 4
    quadratic = inverse[0, 0] * c * c + 2 * inverse[0, 1] * c * d + inverse[1, 1] * d * d
    density = np.exp(-quadratic / 2) / (2 * np.pi * np.sqrt(np.linalg.det(s_cd)))
    mean_a = regression[0, 0] * c + regression[0, 1] * d
    mean_b = regression[1, 0] * c + regression[1, 1] * d
    if sd_a == 0:  # a is a function of (c, d)
        probability = (mean_a > 0) * special.ndtr(mean_b / sd_b)
    else:
        r = conditional[0, 1] / (sd_a * sd_b)
        probability = bivariate_cdf(mean_a / sd_a, mean_b / sd_b, min(r, 1.0))
    return float(np.sum(weight * c * d * density * probability))


def planar_reference(angles, scales):
    """Four vectors in a plane: the positive cone is a wedge of directions, integrate exactly.

    Returns ``(P4, E[step step relu relu])`` for ``x_i = scales_i * (cos, sin)(angles_i) . z``.
    """
    relative = np.angle(np.exp(1j * (angles - angles[0])))
    low, high = relative.max() - np.pi / 2, relative.min() + np.pi / 2
    if high <= low:
        return 0.0, 0.0
    low, high = low + angles[0], high + angles[0]
    pc, pd = angles[2], angles[3]
    # E[r^2] = 2 for a standard 2-D normal; (1/pi) int cos(psi - pc) cos(psi - pd) dpsi.
    ends = np.sin(2 * high - pc - pd) - np.sin(2 * low - pc - pd)
    integral = (high - low) * np.cos(pc - pd) + 0.5 * ends
    return (high - low) / (2 * np.pi), scales[2] * scales[3] * integral / (2 * np.pi)


def monte_carlo_relu4(cov, samples):
    """Mean and standard error of ``c d 1{all > 0}`` from samples of a shared standard normal."""
    values, vectors = np.linalg.eigh(cov)
    factor = vectors * np.sqrt(np.maximum(values, 0.0))
    x = samples @ factor.T
    terms = x[:, 2] * x[:, 3] * np.all(x > 0, axis=1)
    return terms.mean(), terms.std() / np.sqrt(len(terms))


@pytest.fixture(scope="module")
def normal_samples():
    return np.random.default_rng(20240611).standard_normal((MC_SAMPLES, 4))


def random_unit_rows(rng, count, dim):
    rows = rng.standard_normal((count, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# ------------------------------------------------------------------------ orthant probabilities


def test_p2_and_p3_closed_forms():
    rho = np.array([-1.0, -0.3, 0.0, 0.7, 1.0])
    expected = [0.0, 0.25 - np.arcsin(0.3) / (2 * np.pi), 0.25, 0.25 + np.arcsin(0.7) / (2 * np.pi), 0.5]
    np.testing.assert_allclose(orthant_probability_2(rho), expected, atol=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = random_unit_rows(rng, 3, 3)
        corr = u @ u.T
        expected = multivariate_normal(np.zeros(3), corr, abseps=1e-8, releps=1e-8).cdf(np.zeros(3))
        assert orthant_probability_3(corr) == pytest.approx(expected, abs=1e-7)


def test_p4_identity_and_block_diagonal():
    assert orthant_probability_4(np.eye(4)) == pytest.approx(1 / 16, abs=1e-15)
    for r1, r2 in [(0.3, -0.8), (0.999, 0.5), (-0.2, 0.0), (1 - 1e-10, -(1 - 1e-10))]:
        corr = np.eye(4)
        corr[0, 1] = corr[1, 0] = r1
        corr[2, 3] = corr[3, 2] = r2
        assert orthant_probability_4(corr) == pytest.approx(p2_closed(r1) * p2_closed(r2), abs=1e-11)


def test_p4_equicorrelated_closed_forms():
    # rho = 1/2: x_i = (y_i + y_0)/sqrt(2) gives P = E[Phi(y_0)^4] = 1/5.
    half = np.full((4, 4), 0.5) + 0.5 * np.eye(4)
    assert orthant_probability_4(half) == pytest.approx(0.2, abs=1e-13)
    # rho = -1/3: the regular simplex, sum x_i = 0, so the orthant is empty (singular matrix).
    simplex = np.full((4, 4), -1 / 3) + 4 / 3 * np.eye(4)
    assert orthant_probability_4(simplex) == pytest.approx(0.0, abs=1e-12)


def test_p4_against_genz():
    rng = np.random.default_rng(1)
    for _ in range(4):
        u = random_unit_rows(rng, 4, 4)
        corr = u @ u.T
        law = multivariate_normal(np.zeros(4), corr, abseps=1e-7, releps=1e-7, maxpts=1_000_000)
        genz = law.cdf(np.zeros(4))
        assert orthant_probability_4(corr) == pytest.approx(genz, abs=1e-6)


def test_p4_exact_duplicates_and_opposites_reduce_to_p3():
    rng = np.random.default_rng(2)
    for _ in range(5):
        u = random_unit_rows(rng, 3, 4)
        base = u @ u.T
        expected = p3_closed(base[0, 1], base[0, 2], base[1, 2])
        for twin in range(3):
            rows = np.insert(u, 3, u[twin], axis=0)
            assert orthant_probability_4(rows @ rows.T) == pytest.approx(expected, abs=1e-14)
            opposite = np.insert(u, 3, -u[twin], axis=0)
            assert orthant_probability_4(opposite @ opposite.T) == pytest.approx(0.0, abs=1e-14)
        # Positive combination of the others: {x0, x1, x2 > 0} implies x3 > 0 (rank 3).
        combined = np.insert(u, 3, u.T @ rng.uniform(0.2, 1.0, 3), axis=0)
        combined /= np.linalg.norm(combined, axis=1, keepdims=True)
        assert orthant_probability_4(combined @ combined.T) == pytest.approx(expected, abs=1e-11)


def test_p4_planar_configurations():
    rng = np.random.default_rng(3)
    for _ in range(200):
        angles = rng.uniform(-np.pi, np.pi, 4) if rng.random() < 0.5 else rng.uniform(-1.2, 1.2, 4)
        u = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        expected, _ = planar_reference(angles, np.ones(4))
        assert orthant_probability_4(u @ u.T) == pytest.approx(expected, abs=1e-11)


@pytest.mark.parametrize("gap", [1e-8, 1e-10, 1e-12])
def test_p4_near_duplicate_first_order_expansion(gap):
    """Continuity as rho -> 1, to first order in the angle theta ~ sqrt(2 gap).

    ``P4(theta) - P3`` is minus the mass of the thin wedge between the two hyperplanes:
    ``theta phi(0) E[relu(-e.z) 1{x_2, x_3 > 0} | x_0 = 0]`` with ``e`` the direction in which
    ``u_1`` leaves ``u_0``; the 3-point expectation is evaluated by Stein from the Gram matrix.
    (Comparing with the exact duplicate alone cannot work to 1e-8: the difference is of order
    ``theta / (2 pi) ~ 2e-7`` at ``gap = 1e-12``.)
    """
    rng = np.random.default_rng(4)
    for _ in range(20):
        u = random_unit_rows(rng, 4, 4)
        e = rng.standard_normal(4)
        e -= (e @ u[0]) * u[0]
        e /= np.linalg.norm(e)
        theta = 2 * np.arcsin(np.sqrt(gap / 2))
        u[1] = np.cos(theta) * u[0] + np.sin(theta) * e
        corr = u @ u.T
        theta = 2 * np.arcsin(np.sqrt((1 - corr[0, 1]) / 2))  # the angle actually stored
        projector = np.eye(4) - np.outer(u[0], u[0])
        v = np.stack([-e, projector @ u[2], projector @ u[3]])
        gram = v @ v.T

        def p2_given(j, a, b):
            caa = gram[a, a] - gram[a, j] ** 2 / gram[j, j]
            cbb = gram[b, b] - gram[b, j] ** 2 / gram[j, j]
            cab = gram[a, b] - gram[a, j] * gram[b, j] / gram[j, j]
            return p2_closed(cab / np.sqrt(caa * cbb))

        relu_step_step = (
            np.sqrt(gram[0, 0]) * p2_given(0, 1, 2)
            + gram[0, 1] / np.sqrt(gram[1, 1]) * p2_given(1, 0, 2)
            + gram[0, 2] / np.sqrt(gram[2, 2]) * p2_given(2, 0, 1)
        ) / np.sqrt(2 * np.pi)
        p3 = p3_closed(corr[0, 2], corr[0, 3], corr[2, 3])
        expected = p3 - theta * relu_step_step / np.sqrt(2 * np.pi)
        assert orthant_probability_4(corr) == pytest.approx(expected, abs=max(3 * theta**2, 1e-10))


def test_p4_batch_shape_and_bounds():
    rng = np.random.default_rng(5)
    u = rng.standard_normal((2, 3, 4, 2))  # rank 2 everywhere
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    p = orthant_probability_4(u @ np.swapaxes(u, -1, -2))
    assert p.shape == (2, 3)
    assert np.all((p >= 0) & (p <= 0.5))


# ------------------------------------------------------------------------------ four-point term


def test_relu4_against_quadrature_generic():
    rng = np.random.default_rng(6)
    for _ in range(8):
        a = rng.standard_normal((4, 4)) * rng.uniform(0.3, 2.0, (4, 1))
        cov = a @ a.T
        assert relu_four_point(cov) == pytest.approx(relu4_by_quadrature(cov), abs=1e-12)


@pytest.mark.parametrize("case", ["a==b", "a~b 1e-9", "a==c", "b==-c scaled", "rank3"])
def test_relu4_against_quadrature_structured(case):
    rng = np.random.default_rng(7)
    for _ in range(3):
        a = rng.standard_normal((4, 4))
        if case == "a==b":
            a[1] = 1.7 * a[0]
        elif case == "a~b 1e-9":
            a[1] = a[0] + np.sqrt(2e-9) * np.linalg.norm(a[0]) * random_unit_rows(rng, 1, 4)[0]
        elif case == "a==c":
            a[0] = 0.6 * a[2]
        elif case == "b==-c scaled":
            a[1] = -2.0 * a[2]
        elif case == "rank3":
            a[:, 3] = 0.0
        cov = a @ a.T
        # In rank 3 the conditional law of (a, b) is degenerate and the reference integrand has
        # a kink along a line: Gauss-Legendre then converges only algebraically, so more nodes.
        nodes = 640 if case == "rank3" else 240
        expected = 0.0 if case == "b==-c scaled" else relu4_by_quadrature(cov, nodes=nodes)
        assert relu_four_point(cov) == pytest.approx(expected, abs=2e-9)


def test_smooth_rule_equals_tanh_sinh_on_well_conditioned_matrices():
    # Well-conditioned matrices (|rho| <= 0.7, smallest eigenvalue >= 0.2) use 16 Gauss-Legendre
    # nodes instead of the 43-node tanh-sinh rule: the moments must agree to rounding, up to the
    # thresholds. Mixed batches must take each matrix's own rule.
    rng = np.random.default_rng(12)
    accepted = []
    while len(accepted) < 3000:
        v = rng.standard_normal((4, int(rng.integers(4, 10))))
        v[1:] += rng.uniform(0.0, 1.5) * v[0]  # towards the thresholds
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        corr = v @ v.T
        if np.max(np.abs(corr[~np.eye(4, dtype=bool)])) <= 0.7 and np.linalg.eigvalsh(corr)[0] >= 0.2:
            accepted.append(corr)
    corr = np.array(accepted)
    tanh_sinh = path_moments(corr, _RULE_RELU4)
    smooth = path_moments(corr, _RULE_RELU4, RULE_SMOOTH)
    gauss_legendre = path_moments(corr, RULE_SMOOTH)
    for fine, split, coarse in zip(tanh_sinh[:2], smooth[:2], gauss_legendre[:2]):
        assert np.array_equal(split, coarse)
        assert np.max(np.abs(split - fine)) < 1e-14
    nearly_aligned = _random_correlation_near_alignment(rng)
    mixed = path_moments(np.concatenate([corr[:2], nearly_aligned[None]]), _RULE_RELU4, RULE_SMOOTH)
    alone = path_moments(nearly_aligned[None], _RULE_RELU4)
    assert np.array_equal(mixed[0][2], alone[0][0]) and np.array_equal(mixed[0][:2], smooth[0][:2])


def _random_correlation_near_alignment(rng):
    v = rng.standard_normal((4, 5))
    v[1] = v[0] + 1e-4 * rng.standard_normal(5)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T


def test_relu4_repeated_variables_closed_forms():
    rng = np.random.default_rng(8)
    for _ in range(5):
        v = rng.standard_normal((2, 3))
        a, b, c = v[0] @ v[0], v[1] @ v[1], v[0] @ v[1]
        # all four equal: E[relu(a)^2] = C_aa / 2
        assert relu_four_point(np.full((4, 4), a)) == pytest.approx(a / 2, abs=1e-14)
        # a == c and b == d: E[relu(a) relu(b)], the arc-cosine kernel
        rows = np.stack([v[0], v[1], v[0], v[1]])
        assert relu_four_point(rows @ rows.T) == pytest.approx(arc_cosine_kernel(a, b, c), abs=1e-14)
        # a == b == c: E[relu(a) relu(d)] again
        rows = np.stack([v[0], v[0], v[0], v[1]])
        assert relu_four_point(rows @ rows.T) == pytest.approx(arc_cosine_kernel(a, b, c), abs=1e-14)
        # c == d, a == b: E[step(a) relu(c)^2] = C_cc (P2 + rho sqrt(1 - rho^2) / (2 pi))
        rho = c / np.sqrt(a * b)
        rows = np.stack([v[0], v[0], v[1], v[1]])
        expected = b * (p2_closed(rho) + rho * np.sqrt(1 - rho**2) / (2 * np.pi))
        assert relu_four_point(rows @ rows.T) == pytest.approx(expected, abs=1e-14)


def test_relu4_planar_configurations():
    rng = np.random.default_rng(9)
    for _ in range(200):
        angles = rng.uniform(-np.pi, np.pi, 4) if rng.random() < 0.5 else rng.uniform(-1.2, 1.2, 4)
        scales = rng.uniform(0.3, 3.0, 4)
        u = np.stack([np.cos(angles), np.sin(angles)], axis=1) * scales[:, None]
        _, expected = planar_reference(angles, scales)
        assert relu_four_point(u @ u.T) == pytest.approx(expected, abs=1e-9)


def test_relu4_against_monte_carlo(normal_samples):
    rng = np.random.default_rng(10)
    covariances = []
    for _ in range(3):  # generic, non-unit variances
        a = rng.standard_normal((4, 4)) * rng.uniform(0.5, 2.0, (4, 1))
        covariances.append(a @ a.T)
    base = rng.standard_normal((4, 4))
    singular = [
        base[[0, 1, 2, 3]][:, :2],  # rank 2
        base[[0, 1, 2, 3]][:, :3],  # rank 3
        base[[0, 0, 1, 2]],  # a == b
        base[[0, 1, 0, 2]] * np.array([[1.0], [1.0], [2.0], [1.0]]),  # a == c, scaled
        base[[0, 1, 2, 2]],  # c == d
        base[[0, 0, 1, 1]],  # a == b, c == d
    ]
    covariances += [s @ s.T for s in singular]
    near = base.copy()
    near[2] = near[0] + np.sqrt(2e-9) * np.linalg.norm(near[0]) * random_unit_rows(rng, 1, 4)[0]
    covariances.append(near @ near.T)  # a ~ c, 1 - rho ~ 1e-9
    for cov in covariances:
        mean, error = monte_carlo_relu4(cov, normal_samples)
        value = relu_four_point(cov)
        assert abs(value - mean) < MC_SIGMAS * error + 1e-12, (value, mean, error)


def test_relu4_symmetries_and_homogeneity():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((6, 4, 3))
    cov = a @ np.swapaxes(a, -1, -2)  # rank 3
    value = relu_four_point(cov)
    swap_steps = cov[:, [1, 0, 2, 3]][:, :, [1, 0, 2, 3]]
    swap_relus = cov[:, [0, 1, 3, 2]][:, :, [0, 1, 3, 2]]
    np.testing.assert_allclose(relu_four_point(swap_steps), value, atol=1e-12)
    np.testing.assert_allclose(relu_four_point(swap_relus), value, atol=1e-12)
    scale = np.array([0.5, 3.0, 2.0, 0.25])
    scaled = cov * np.outer(scale, scale)
    np.testing.assert_allclose(relu_four_point(scaled), value * scale[2] * scale[3], atol=1e-12)


def test_relu4_zero_variance_and_no_nan():
    rng = np.random.default_rng(12)
    a = rng.standard_normal((4, 4))
    for dead in range(4):
        rows = a.copy()
        rows[dead] = 0.0
        assert relu_four_point(rows @ rows.T) == 0.0
    # A zoo of singular PSD matrices: low rank, duplicates, opposites, zeros.
    zoo = []
    for _ in range(300):
        rows = rng.standard_normal((4, rng.integers(1, 5)))
        for _ in range(rng.integers(0, 3)):
            i, j = rng.choice(4, 2, replace=False)
            rows[j] = rng.choice([-2.0, -1.0, 0.0, 0.5, 1.0]) * rows[i]
        zoo.append(rows @ rows.T)
    values = relu_four_point(np.array(zoo))
    assert np.all(np.isfinite(values)) and np.all(values >= 0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.eye(3), r"shape \(\.\.\., 4, 4\)"),
        (np.full((4, 4), np.nan), "finite"),
        (np.eye(4) + np.triu(np.ones((4, 4)), 1), "symmetric"),
        (np.diag([1.0, 1.0, 1.0, -1.0]), "positive semi-definite"),
        ("not a matrix", "array of numbers"),
    ],
)
def test_relu4_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        relu_four_point(bad)


def test_orthant_rejects_bad_input():
    with pytest.raises(ValueError, match="unit diagonal"):
        orthant_probability_4(2 * np.eye(4))
    with pytest.raises(ValueError, match="positive semi-definite"):
        orthant_probability_4(np.full((4, 4), -0.9) + 1.9 * np.eye(4))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        orthant_probability_2(1.5)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3, 3\)"):
        orthant_probability_3(np.eye(4))


# ----------------------------------------------------------------------- finite learning rate


def random_overlaps(rng, n_students, n_teachers, dim=None):
    dim = dim or n_students + n_teachers
    weights = rng.standard_normal((n_students + n_teachers, dim)) / np.sqrt(dim)
    weights *= rng.uniform(0.6, 1.5, (n_students + n_teachers, 1))
    gram = weights @ weights.T
    k = n_students
    return gram[:k, :k], gram[:k, k:], gram[k:, k:], weights


@pytest.mark.parametrize("n_students, noise", [(2, 0.0), (3, 0.0), (3, 0.3)])
def test_finite_lr_against_monte_carlo(n_students, noise):
    rng = np.random.default_rng(13 + n_students)
    n_teachers = 2
    Q, R, T, weights = random_overlaps(rng, n_students, n_teachers)
    value = finite_lr_expectation(Q, R, T, noise)
    samples = 1_000_000
    z = rng.standard_normal((samples, weights.shape[1])) @ weights.T
    student, teacher = z[:, :n_students], z[:, n_students:]
    label = np.maximum(teacher, 0).sum(1) + np.sqrt(noise) * rng.standard_normal(samples)
    error = np.maximum(student, 0).sum(1) - label
    active = (student > 0).astype(float)
    for k in range(n_students):
        for l in range(n_students):
            terms = active[:, k] * active[:, l] * error**2
            standard_error = terms.std() / np.sqrt(samples)
            assert abs(value[k, l] - terms.mean()) < MC_SIGMAS * standard_error, (k, l)


def test_finite_lr_matches_sum_of_four_point_terms():
    """The shared, symmetrised evaluation equals the plain expansion over all (i, j)."""
    rng = np.random.default_rng(17)
    Q, R, T, _ = random_overlaps(rng, 3, 2, dim=4)  # rank 4 < 5 units: singular quadruples too
    omega = np.block([[Q, R], [R.T, T]])
    sign = np.array([1, 1, 1, -1, -1])
    expected = np.zeros((3, 3))
    for k in range(3):
        for l in range(3):
            index = np.array([[k, l, i, j] for i in range(5) for j in range(5)])
            cov = omega[index[:, :, None], index[:, None, :]]
            expected[k, l] = np.sum(sign[index[:, 2]] * sign[index[:, 3]] * relu_four_point(cov))
    np.testing.assert_allclose(finite_lr_expectation(Q, R, T), expected, atol=1e-13)


@pytest.mark.parametrize("n_units", [1, 3, 5])
def test_finite_lr_vanishes_at_global_minimum(n_units):
    rng = np.random.default_rng(18 + n_units)
    _, _, T, _ = random_overlaps(rng, 0, n_units, dim=max(n_units - 1, 1))  # singular when n_units > 1
    value = finite_lr_expectation(T, T, T)
    np.testing.assert_allclose(value, 0.0, atol=1e-10)
    identity = np.eye(n_units)
    np.testing.assert_allclose(finite_lr_expectation(identity, identity, identity), 0.0, atol=1e-10)
    # With label noise only the noise term survives: noise * P(lambda_k > 0, lambda_l > 0).
    sd = np.sqrt(np.diag(T))
    expected = 0.7 * p2_closed(np.clip(T / np.outer(sd, sd), -1, 1))
    np.testing.assert_allclose(finite_lr_expectation(T, T, T, noise=0.7), expected, atol=1e-10)


def test_finite_lr_is_quadratic_near_global_minimum():
    """``f - y = O(delta)`` when the student is ``delta`` away from the teacher, so the term is
    ``delta^2`` times a limit plus ``O(delta^3)``: the ratio must settle. At ``delta = 1e-5`` this
    needs ~3e-12 absolute accuracy of a sum of nearly cancelling, nearly aligned, nearly
    rank-deficient four-point terms (rounding of the overlaps alone gives ~1e-16 / delta each)."""
    rng = np.random.default_rng(23)
    teacher = rng.standard_normal((3, 5)) / np.sqrt(5)
    direction = rng.standard_normal((3, 5)) / np.sqrt(5)
    ratios = []
    for delta in (1e-3, 1e-4, 1e-5):
        student = teacher + delta * direction
        value = finite_lr_expectation(student @ student.T, student @ teacher.T, teacher @ teacher.T)
        ratios.append(value / delta**2)
    scale = np.abs(ratios[0]).max()
    np.testing.assert_allclose(ratios[1], ratios[0], rtol=0, atol=2e-2 * scale)
    np.testing.assert_allclose(ratios[2], ratios[1], rtol=0, atol=3e-2 * scale)
    assert np.linalg.eigvalsh(ratios[2])[0] > 0


def test_finite_lr_dead_student_and_symmetry():
    rng = np.random.default_rng(21)
    Q, R, T, _ = random_overlaps(rng, 3, 2)
    Q[0, :] = Q[:, 0] = 0.0
    R[0, :] = 0.0
    value = finite_lr_expectation(Q, R, T, noise=0.1)
    np.testing.assert_array_equal(value[0], 0.0)
    np.testing.assert_allclose(value, value.T, atol=0)
    assert np.all(np.linalg.eigvalsh(value) > -1e-12)


def test_finite_lr_rejects_bad_input():
    rng = np.random.default_rng(22)
    Q, R, T, _ = random_overlaps(rng, 2, 2)
    with pytest.raises(ValueError, match="noise"):
        finite_lr_expectation(Q, R, T, noise=-1.0)
    with pytest.raises(ValueError, match="noise"):
        finite_lr_expectation(Q, R, T, noise="loud")
    with pytest.raises(ValueError, match="shape"):
        finite_lr_expectation(Q, R[:, :1], T)
    with pytest.raises(ValueError, match="positive semi-definite"):
        finite_lr_expectation(Q, 10 * R, T)
