"""Walking a flat direction of a K > M point.

Independent references: the network's function evaluated on random inputs (not the loss formula),
finite differences of the gradient along the path's tangent (not the exact Hessian), and the
shipped sweep's K = M + 1 global minimum.
"""

from pathlib import Path

import numpy as np
import pytest

from landscape.catalogues.sweep_store import load_store
from landscape.critical_points.flat_walk import FlatStatus, walk_flat_direction
from landscape.model.loss import gradient_from_weights

STORE = Path(__file__).resolve().parents[1] / "assets" / "sweep_default"


@pytest.fixture(scope="module")
def split_minimum():
    (catalogue,) = load_store(STORE).catalogues({"K": 5, "M": 4})
    point = next(p for p in catalogue.points if p.is_global)
    return point, catalogue.config.teacher_matrix(), walk_flat_direction(point.Q, point.R, catalogue.config.teacher_matrix())


def test_the_path_computes_one_function_between_its_ends(split_minimum, rng):
    point, _, path = split_minimum
    assert path.success and path.status is FlatStatus.FLAT and path.loss_spread <= 1e-12
    first, second = path.units
    assert {first, second} == set(point.manifold.groups[0])
    # Ends: one unit of norm zero at each.
    assert np.linalg.norm(path.W[0, first]) == 0 and np.linalg.norm(path.W[-1, second]) == 0
    x = rng.standard_normal((1000, path.W.shape[2]))
    outputs = np.maximum(np.einsum("pkn,sn->psk", path.W, x), 0).sum(axis=2)
    assert np.max(np.abs(outputs - outputs[0])) < 1e-12


def test_the_tangent_is_a_zero_mode_by_finite_differences(split_minimum):
    _, T, path = split_minimum
    teacher = path.W_teacher
    assert np.allclose(teacher @ teacher.T, T, atol=1e-12)
    tangent = np.zeros_like(path.W[0])
    first, second = path.units
    tangent[first], tangent[second] = path.W[-1, first], -path.W[-1, first]
    tangent /= np.linalg.norm(tangent)
    h = 1e-6
    for W in path.W[1:-1:4]:
        assert np.linalg.norm(gradient_from_weights(W, teacher)) < 1e-9
        change = (gradient_from_weights(W + h * tangent, teacher) - gradient_from_weights(W - h * tangent, teacher)) / (2 * h)
        assert np.linalg.norm(change) < 1e-7
    interior = path.n_zero[1:-1]
    assert np.all(interior >= 1) and np.all(interior == interior[0]) and np.all(path.n_zero[[0, -1]] == -1)
    assert np.all(path.min_eigenvalue[1:-1] > -1e-9)  # minima all along


def test_walk_rejects_points_without_a_ray():
    with pytest.raises(ValueError, match="no two students"):
        walk_flat_direction(np.eye(3), np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="samples"):
        walk_flat_direction(np.eye(3), np.eye(3), np.eye(3), samples=2)
