"""Shared fixtures: seeded generators and random weights."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20260412)


@pytest.fixture
def random_weights():
    """Factory: student and teacher rows in n dimensions, normalised units (norms of order one)."""

    def draw(rng, K, M, n, scale=1.0):
        W = scale * rng.standard_normal((K, n)) / np.sqrt(n)
        W_teacher = rng.standard_normal((M, n)) / np.sqrt(n)
        return W, W_teacher

    return draw
