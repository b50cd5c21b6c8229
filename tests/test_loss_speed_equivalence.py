"""The fused gradient-flow velocity against the weights path and the loss it descends.

``gradient_flow_velocity`` works from overlaps in one fused pass; the checks here use routes
that share none of that code: the weight-space gradient with exact residuals
(``gradient_from_weights``) and finite differences of ``loss_from_overlaps``.
"""

import numpy as np
import pytest

from landscape.model.loss import gradient_flow_velocity, gradient_from_weights, loss_from_overlaps, overlaps_from_weights


def _velocity_from_weights(W, W_teacher):
    """``d/dt (W W^T, W W*^T)`` along ``dW/dt = -grad L`` from the weights path."""
    gradient = gradient_from_weights(W, W_teacher)
    return -(gradient @ W.T + W @ gradient.T), -gradient @ W_teacher.T


def _batch_of_students(rng, random_weights, K, M, n):
    """Random students, one with a dead unit, one with units aligned to teachers and to each other."""
    W_teacher = random_weights(rng, K, M, n)[1]
    students = [random_weights(rng, K, M, n)[0] for _ in range(3)]
    students[1][0] = 0.0
    aligned = students[2]
    aligned[0] = 0.8 * W_teacher[0]
    aligned[1] = 0.5 * aligned[2] + 1e-6 * rng.standard_normal(n)
    return np.stack(students), W_teacher


@pytest.mark.parametrize("K,M", [(1, 1), (3, 2), (4, 4), (6, 3)])
def test_batched_velocity_matches_weights_path(rng, random_weights, K, M):
    W, W_teacher = _batch_of_students(rng, random_weights, max(K, 3), M, K + M + 3)
    Q, R, T = W @ np.swapaxes(W, -1, -2), W @ W_teacher.T, W_teacher @ W_teacher.T
    dQ, dR = gradient_flow_velocity(Q, R, T)
    assert dQ.shape == Q.shape and dR.shape == R.shape
    for b, W_b in enumerate(W):
        expected_Q, expected_R = _velocity_from_weights(W_b, W_teacher)
        # Aligned units: overlap residuals are sqrt of a cancellation, accurate to ~sqrt(eps).
        atol = 1e-7 if b == 2 else 1e-13
        assert np.allclose(dQ[b], expected_Q, atol=atol, rtol=0)
        assert np.allclose(dR[b], expected_R, atol=atol, rtol=0)


def test_dead_unit_has_zero_velocity(rng, random_weights):
    W, W_teacher = random_weights(rng, 4, 3, 8)
    W[2] = 0.0
    dQ, dR = gradient_flow_velocity(*overlaps_from_weights(W, W_teacher))
    assert np.all(dQ[2] == 0.0) and np.all(dQ[:, 2] == 0.0) and np.all(dR[2] == 0.0)
    assert np.all(np.isfinite(dQ)) and np.all(np.isfinite(dR))


def test_exact_global_minimum_is_a_fixed_point():
    W_teacher = np.linalg.qr(np.random.default_rng(3).standard_normal((6, 6)))[0][:4]
    dQ, dR = gradient_flow_velocity(*overlaps_from_weights(W_teacher, W_teacher))
    assert np.abs(dQ).max() < 1e-14 and np.abs(dR).max() < 1e-14


@pytest.mark.parametrize("K,M", [(2, 2), (4, 4), (5, 3)])
def test_loss_decreases_at_rate_minus_squared_gradient(rng, random_weights, K, M):
    # Along (dQ, dR) the loss changes at dL/dt = -|grad L|^2 (chain rule through the overlaps).
    W, W_teacher = random_weights(rng, K, M, K + M + 2)
    Q, R, T = overlaps_from_weights(W, W_teacher)
    dQ, dR = gradient_flow_velocity(Q, R, T)
    h = 1e-5
    rate = (loss_from_overlaps(Q + h * dQ, R + h * dR, T) - loss_from_overlaps(Q - h * dQ, R - h * dR, T)) / (2 * h)
    squared_gradient = np.sum(gradient_from_weights(W, W_teacher) ** 2)
    assert rate == pytest.approx(-squared_gradient, rel=1e-7)


def test_unbatched_overlaps_broadcast_against_batched_ones(rng, random_weights):
    W_teacher = random_weights(rng, 3, 2, 6)[1]
    W = np.stack([random_weights(rng, 3, 2, 6)[0] for _ in range(4)])
    Q, R, T = W @ np.swapaxes(W, -1, -2), W @ W_teacher.T, W_teacher @ W_teacher.T
    for Q_in, R_in in [(Q[0], R), (Q, R[0])]:
        dQ, dR = gradient_flow_velocity(Q_in, R_in, T)
        Q_full, R_full = np.broadcast_to(Q_in, Q.shape), np.broadcast_to(R_in, R.shape)
        for b in range(4):
            expected_Q, expected_R = gradient_flow_velocity(Q_full[b], R_full[b], T)
            assert np.allclose(dQ[b], expected_Q, atol=1e-15, rtol=1e-13)
            assert np.allclose(dR[b], expected_R, atol=1e-15, rtol=1e-13)
