"""Kernels, loss and gradient against Monte Carlo and finite differences."""

import numpy as np
import pytest

from landscape.kernels.gaussian import relu_kernel, relu_on_hyperplane_density, step_step_probability
from landscape.model.loss import (
    PairResiduals,
    gradient_flow_velocity,
    gradient_from_weights,
    gradient_norm_from_overlaps,
    loss_from_overlaps,
    loss_from_weights,
    overlaps_from_weights,
    population_loss,
)
from landscape.model.teacher import equicorrelated_teacher

N_MC = 2_000_000


def _monte_carlo_pair(rng, a, b, c, function):
    cov = np.array([[a, c], [c, b]])
    z = rng.multivariate_normal([0, 0], cov, size=N_MC)
    values = function(z[:, 0], z[:, 1])
    return values.mean(), values.std() / np.sqrt(N_MC)


@pytest.mark.parametrize("a,b,c", [(1.0, 1.0, 0.3), (2.0, 0.5, -0.9), (1.0, 1.0, 0.999), (0.3, 1.7, 0.0)])
def test_two_point_kernels_match_monte_carlo(rng, random_weights, a, b, c):
    mean, error = _monte_carlo_pair(rng, a, b, c, lambda u, v: np.maximum(u, 0) * np.maximum(v, 0))
    assert abs(relu_kernel(a, b, c) - mean) < 5 * error
    mean, error = _monte_carlo_pair(rng, a, b, c, lambda u, v: (u > 0) * (v > 0.0))
    assert abs(step_step_probability(a, b, c) - mean) < 5 * error + 1e-12


@pytest.mark.parametrize("a,b,c", [(1.0, 1.0, 0.3), (2.0, 0.5, -0.9), (0.7, 1.3, 0.8)])
def test_hyperplane_density_is_twice_the_variance_derivative_of_the_kernel(a, b, c):
    # d/da E[g(u)] = 1/2 E[g''(u)] (heat equation), and relu'' = delta: an independent route.
    h = 1e-6
    derivative = (relu_kernel(a + h, b, c) - relu_kernel(a - h, b, c)) / (2 * h)
    assert relu_on_hyperplane_density(a, b, c) == pytest.approx(2 * derivative, rel=1e-7)


def test_kernel_on_the_diagonal_and_at_alignment():
    assert relu_kernel(2.0, 2.0, 2.0) == pytest.approx(1.0, abs=1e-15)
    assert relu_kernel(1.0, 4.0, -2.0) == pytest.approx(0.0, abs=1e-15)
    assert step_step_probability(1.0, 1.0, 1.0) == pytest.approx(0.5)
    assert step_step_probability(0.0, 1.0, 0.0) == 0.0  # a dead unit never fires


@pytest.mark.parametrize("teacher", ["orthonormal", "correlated"])
def test_loss_matches_monte_carlo(rng, random_weights, teacher):
    K, M, n = 3, 3, 7
    W, W_teacher = random_weights(rng, K, M, n)
    if teacher == "correlated":
        T = equicorrelated_teacher(M, 0.4, 1.5)
        W_teacher = np.linalg.cholesky(T) @ np.eye(M, n)
    x = rng.standard_normal((N_MC, n))
    error = np.maximum(x @ W.T, 0).sum(1) - np.maximum(x @ W_teacher.T, 0).sum(1)
    samples = 0.5 * error**2
    loss = loss_from_weights(W, W_teacher)
    assert abs(loss - samples.mean()) < 5 * samples.std() / np.sqrt(N_MC)
    assert population_loss(*overlaps_from_weights(W, W_teacher)) == pytest.approx(loss, rel=1e-12)


def _finite_difference_gradient(W, W_teacher, h=1e-6):
    gradient = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        step = np.zeros_like(W)
        step[index] = h
        gradient[index] = (loss_from_weights(W + step, W_teacher) - loss_from_weights(W - step, W_teacher)) / (2 * h)
    return gradient


def test_gradient_matches_finite_differences(rng, random_weights):
    W, W_teacher = random_weights(rng, 4, 3, 6)
    assert np.allclose(gradient_from_weights(W, W_teacher), _finite_difference_gradient(W, W_teacher), atol=1e-8)


def test_gradient_with_aligned_units_matches_finite_differences(rng, random_weights):
    # Two student units parallel to each other and one parallel to a teacher: the sine parts
    # vanish and the kernels' angles sit at 0, where overlap-based formulas lose precision.
    W_teacher = np.eye(3, 5)
    W = np.array([[0.6, 0, 0, 0, 0], [0.3, 0, 0, 0, 0], [0.1, 0.9, 0.2, 0.1, 0.0]])
    assert np.allclose(gradient_from_weights(W, W_teacher), _finite_difference_gradient(W, W_teacher, 1e-7), atol=1e-7)


def test_global_minimum_has_zero_loss_and_gradient():
    W_teacher = np.linalg.qr(np.random.default_rng(1).standard_normal((5, 5)))[0][:4]
    assert loss_from_weights(W_teacher, W_teacher) == 0.0
    assert np.abs(gradient_from_weights(W_teacher, W_teacher)).max() < 1e-15


def test_overlap_functions_agree_with_weight_functions(rng, random_weights):
    W, W_teacher = random_weights(rng, 3, 2, 6)
    Q, R, T = overlaps_from_weights(W, W_teacher)
    gradient = gradient_from_weights(W, W_teacher)
    assert gradient_norm_from_overlaps(Q, R, T) == pytest.approx(np.linalg.norm(gradient), rel=1e-10)
    dQ, dR = gradient_flow_velocity(Q, R, T)
    assert np.allclose(dR, -gradient @ W_teacher.T, atol=1e-14)
    assert np.allclose(dQ, -(gradient @ W.T + W @ gradient.T), atol=1e-14)
    exact = PairResiduals.from_weights(W, W_teacher)
    assert loss_from_overlaps(Q, R, T, exact) == pytest.approx(loss_from_overlaps(Q, R, T), rel=1e-10)


def test_batched_loss_equals_loop(rng, random_weights):
    Ws = [random_weights(rng, 3, 2, 5) for _ in range(4)]
    teacher = Ws[0][1]
    Q = np.stack([W @ W.T for W, _ in Ws])
    R = np.stack([W @ teacher.T for W, _ in Ws])
    T = teacher @ teacher.T
    assert np.allclose(loss_from_overlaps(Q, R, T), [loss_from_weights(W, teacher) for W, _ in Ws], rtol=1e-12)


def test_gram_rejection_norms_match_the_rejection_formula_for_aligned_and_generic_pairs(rng):
    # The Gram formula sqrt(|a|^2 |b|^2 - (a.b)^2) cancels for nearly parallel pairs (aligned
    # units at minima); those pairs must still come out as accurately as the rejection b - proj_a b.
    from landscape.model.loss import gram_rejection_norms

    W = rng.standard_normal((5, 6, 6)) / np.sqrt(6)
    teacher = np.eye(6)
    W[:, 0] = 0.7 * teacher[1] + 1e-7 * rng.standard_normal(6)
    W[:, 2] = -2.0 * W[:, 3] + 1e-9 * rng.standard_normal((5, 6))
    W[:, 4] = 0.0
    for A, B in ((W, W), (W, teacher), (W[0], teacher)):
        squared = np.einsum("...in,...in->...i", A, A)
        coefficient = (A @ np.swapaxes(B, -1, -2)) / np.where(squared > 0, squared, 1.0)[..., :, None]
        rejection = B[..., None, :, :] - coefficient[..., :, :, None] * A[..., :, None, :]
        expected = np.sqrt(squared)[..., :, None] * np.linalg.norm(rejection, axis=-1)
        np.testing.assert_allclose(gram_rejection_norms(A, B), expected, rtol=1e-7, atol=1e-14)
    assert gram_rejection_norms(W, W)[0, 0, 0] == 0.0 and gram_rejection_norms(W, teacher)[0, 4, 2] == 0.0
