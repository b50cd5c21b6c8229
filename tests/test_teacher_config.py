"""Teacher structures, validation messages and the run config round trips."""

import json

import numpy as np
import pytest

from landscape.kernels.overlaps import validate_overlaps, validate_teacher
from landscape.model.config import InitSpec, RunConfig, TeacherSpec
from landscape.model.teacher import block_teacher, equicorrelated_teacher, random_teacher


def test_teacher_builders_are_valid_gram_matrices():
    for T in (equicorrelated_teacher(4, 0.5, 2.0), block_teacher([2, 3], 0.6, 0.1), random_teacher(5, seed=3)):
        assert np.all(np.linalg.eigvalsh(T) >= -1e-12)
        assert np.allclose(T, T.T)
    assert np.allclose(np.diag(equicorrelated_teacher(3, -0.2, 2.0)), 2.0)
    assert np.allclose(random_teacher(4, seed=7), random_teacher(4, seed=7))


@pytest.mark.parametrize(
    "matrix,message",
    [
        ([[1, 2], [2, 1]], "not positive semi-definite: smallest eigenvalue -1"),
        ([[1, 0.5], [0.4, 1]], "not symmetric"),
        ([[1, np.nan], [np.nan, 1]], "NaN"),
        ([[0, 0], [0, 1]], "positive diagonal"),
        ([[1, 0, 0]], "square"),
    ],
)
def test_bad_teachers_get_one_clear_message(matrix, message):
    with pytest.raises(ValueError, match=message):
        validate_teacher(matrix)


def test_overlaps_that_no_vectors_have_are_rejected():
    with pytest.raises(ValueError, match="joint overlap matrix"):
        validate_overlaps([[1.0]], [[2.0]], [[1.0]])  # |R| > sqrt(Q T)
    with pytest.raises(ValueError, match="R must have shape"):
        validate_overlaps([[1.0]], [[0.1, 0.2]], [[1.0]])


@pytest.mark.parametrize(("T", "message"), [
    ([[1, 2], [2, 1]], "T is not positive semi-definite: smallest eigenvalue -1"),
    ([[1, 0.5], [0.4, 1]], "T is not symmetric"),
    ([[0, 0], [0, 1]], "positive diagonal"),
])
def test_overlaps_with_an_invalid_teacher_name_the_teacher(T, message):
    # validate_overlaps checks Q and T through the joint matrix only (one eigenvalue problem
    # instead of three); when that check fails it still names T if T is the invalid block.
    with pytest.raises(ValueError, match=message):
        validate_overlaps(np.eye(2), np.zeros((2, 2)), T)


def test_invalid_student_overlaps_are_rejected_through_the_joint_matrix():
    for Q in ([[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.5], [0.4, 1.0]]):  # indefinite; asymmetric
        with pytest.raises(ValueError, match="joint overlap matrix"):
            validate_overlaps(Q, np.zeros((2, 2)), np.eye(2))
    Q, R, T = validate_overlaps([[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.1], [0.2, 0.9]], [[1.0, 0.2], [0.2, 1.0]])
    assert np.array_equal(Q, Q.T) and np.array_equal(T, T.T)


def test_equicorrelated_range_is_enforced():
    with pytest.raises(ValueError, match="rho must be in"):
        equicorrelated_teacher(4, -0.5)


def test_config_round_trips_through_json_and_share_string():
    config = RunConfig(
        K=5, M=3, teacher=TeacherSpec(kind="block", block_sizes=(1, 2), rho=0.3), lr=0.25,
        eta2=False, noise=0.01, t_max=123.0, init=InitSpec(kind="random", d=500, seed=9, scale=0.1),
    )
    assert RunConfig.from_json(config.to_json()) == config
    assert RunConfig.from_share_string(config.to_share_string()) == config
    assert json.loads(config.to_json())["teacher"] == {"kind": "block", "block_sizes": [1, 2], "rho": 0.3, "rho_between": 0.0}


def test_overlap_init_and_matrix_teacher_round_trip():
    config = RunConfig.from_dict({
        "K": 2, "M": 2, "teacher": {"kind": "matrix", "T": [[1, 0.2], [0.2, 1]]},
        "init": {"kind": "overlaps", "Q": [[0.5, 0], [0, 0.5]], "R": [[0.1, 0], [0, 0.1]]},
    })
    assert RunConfig.from_share_string(config.to_share_string()) == config
    assert np.allclose(config.teacher_matrix(), [[1, 0.2], [0.2, 1]])


@pytest.mark.parametrize(
    "data,message",
    [
        ({"K": 0}, "K must be between 1 and"),
        ({"K": 2.5}, "K must be a whole number"),
        ({"lr": -0.1}, "lr must be in"),
        ({"lr": float("nan")}, "lr must be finite"),
        ({"colour": 1}, "unknown key"),
        ({"teacher": {"kind": "circle"}}, "teacher kind must be one of"),
        ({"teacher": {"kind": "matrix", "T": [[1, 2], [2, 1]]}, "M": 2}, "not positive semi-definite"),
        ({"M": 3, "teacher": {"kind": "matrix", "T": [[1, 0], [0, 1]]}}, r"but M = 3"),
        ({"init": {"kind": "random", "d": 0}}, "init d must be between"),
        ({"eta2": "yes"}, "eta2 must be true or false"),
    ],
)
def test_invalid_configs_name_the_problem(data, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(data)


@pytest.mark.parametrize("text", ["", "v1.", "v1.@@@", "v2.abc", "v1." + "A" * 40, None])
def test_malformed_share_strings_raise_value_error(text):
    with pytest.raises(ValueError):
        RunConfig.from_share_string(text)
