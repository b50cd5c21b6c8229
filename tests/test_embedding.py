"""Adding a student: split embeddings, their spectra, the escapes from split saddles, ``landscape embed``.

Independent references: the gradient recomputed from the split weights (not from overlaps),
finite differences of that gradient for the Hessian, gradients of an explicit embedding of the
escapes' stored overlaps, the K = 9, M = 8 minima found from random starts in the shipped sweep,
and Monte Carlo for the slope of adding a unit along a teacher.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from test_families import _type_a

from landscape.catalogues.sweep_store import load_store
from landscape.commands.main import main
from landscape.critical_points.embedding import add_student, split_unit
from landscape.critical_points.families import TYPE_A
from landscape.critical_points.hessian import embed_overlaps, weight_hessian
from landscape.model.loss import gradient_from_weights, loss_from_weights

STORE = Path(__file__).resolve().parents[1] / "assets" / "sweep_default"


@pytest.fixture(scope="module")
def type_a8():
    W, teacher = _type_a(8)
    return W, teacher, add_student(W @ W.T, W @ teacher.T, teacher @ teacher.T, W=W, W_teacher=teacher)


def test_split_points_are_critical_at_the_original_loss(type_a8):
    W, teacher, result = type_a8
    original = loss_from_weights(W, teacher)
    assert result.family == TYPE_A and result.K == 8 and result.success
    assert [p.orbit_size for p in result.points] == [7, 1]  # recovered students, the opposing one
    for point in result.points:
        padded = np.hstack([teacher, np.zeros((8, point.W.shape[1] - 8))])
        assert np.linalg.norm(gradient_from_weights(point.W, padded)) < 1e-10
        assert loss_from_weights(point.W, padded) == pytest.approx(original, abs=1e-14)
    for alpha in (0.1, 0.7):  # the whole line of splits
        split = split_unit(W, 3, alpha)
        assert np.linalg.norm(gradient_from_weights(split, teacher)) < 1e-10
        assert loss_from_weights(split, teacher) == pytest.approx(original, abs=1e-14)


def _finite_difference_hessian(W, teacher, h):
    n = W.size
    numeric = np.empty((n, n))
    for column in range(n):
        step = np.zeros(n)
        step[column] = h
        plus = gradient_from_weights(W + step.reshape(W.shape), teacher).ravel()
        minus = gradient_from_weights(W - step.reshape(W.shape), teacher).ravel()
        numeric[:, column] = (plus - minus) / (2 * h)
    return numeric


def test_hessian_of_a_split_point_against_finite_differences(type_a8):
    _, teacher, result = type_a8
    W = result.points[0].W
    teacher = np.hstack([teacher, np.zeros((8, W.shape[1] - 8))])
    errors = []
    for h in (1e-5, 1e-6):
        numeric = _finite_difference_hessian(W, teacher, h)
        errors.append(np.max(np.abs(weight_hessian(W, teacher) - numeric)))
    # Two units on one ray: the loss is twice but not three times differentiable there (the angle
    # between them enters like |angle|^3), so central differences converge like h, not h^2.
    assert errors[1] < 1e-6 and errors[1] < 0.2 * errors[0]
    # The split minimum is a saddle, by the finite-difference Hessian as well.
    assert np.linalg.eigvalsh(0.5 * (numeric + numeric.T))[0] < -0.1
    assert result.points[0].min_eigenvalue == pytest.approx(np.linalg.eigvalsh(numeric)[0], abs=1e-6)


def test_type_a_at_K8_becomes_a_saddle_and_escapes_reach_the_global_minimum(type_a8):
    _, teacher, result = type_a8
    assert all(point.is_saddle for point in result.points)
    escapes = [e for point in result.points for e in point.escapes]
    assert len(escapes) == 4 and all(e.success for e in escapes)
    for escape in escapes:
        # Certified independently: the gradient of an explicit embedding of the stored overlaps.
        embedding = embed_overlaps(escape.Q, escape.R, teacher @ teacher.T)
        assert np.linalg.norm(gradient_from_weights(embedding.student, embedding.teacher)) < 1e-7
        assert escape.loss < result.loss
    recovered, opposing = result.points
    # Splitting a recovered student: both escapes end at the global minimum (one teacher split).
    assert {e.family for e in recovered.escapes} == {"global minimum, one teacher split"}
    assert all(e.loss < 1e-12 and e.kind == "minimum" for e in recovered.escapes)
    # Splitting the opposing student: both escapes end at a spurious minimum of width 9 that random
    # starts also reach in the shipped K = 9, M = 8 catalogue.
    (catalogue,) = load_store(STORE).catalogues({"K": 9, "M": 8})
    known = [p.loss for p in catalogue.points if p.kind.value == "minimum" and p.loss > 1e-6]
    for escape in opposing.escapes:
        assert escape.kind == "minimum" and escape.min_eigenvalue > 0
        assert min(abs(escape.loss - value) for value in known) < 1e-9


def test_slope_of_an_aligned_unit_against_monte_carlo(type_a8, rng):
    W, teacher, result = type_a8
    x = rng.standard_normal((400_000, 8))
    residual = np.maximum(x @ W.T, 0).sum(axis=1) - np.maximum(x @ teacher.T, 0).sum(axis=1)
    for unit in (result.aligned[0], result.aligned[7]):
        samples = residual * np.maximum(x[:, unit.teacher], 0)
        error = samples.std() / np.sqrt(len(samples))
        assert abs(unit.slope - samples.mean()) < 4 * error
    # The missed teacher (the last one) has the steepest slope: a unit along it lowers the loss most.
    assert result.aligned[7].slope < result.aligned[0].slope < 0 and not any(a.critical for a in result.aligned)


def test_global_minimum_splits_are_minima_and_aligned_units_critical():
    teacher = np.eye(3)
    result = add_student(teacher, teacher, teacher)
    assert len(result.points) == 1 and not result.points[0].is_saddle and result.points[0].escapes == ()
    assert all(unit.critical for unit in result.aligned)


def test_embed_cli(tmp_path, capsys):
    W, teacher = _type_a(6)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"W": W.tolist(), "W_teacher": teacher.tolist()}))
    assert main(["embed", "--point", str(path), "--d", "12", "--alpha", "0.3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["d"] == 12 and len(printed["points"]) == 2
    for point in printed["points"]:
        assert set(point) >= {"split_unit", "alpha", "Q", "R", "loss", "gradient_norm", "index", "n_zero",
                              "min_eigenvalue", "escapes"}
        assert point["alpha"] == 0.3 and np.array(point["Q"]).shape == (7, 7)
        for escape in point["escapes"]:
            assert set(escape) >= {"loss", "family", "Q", "R"}


@pytest.mark.parametrize("point, argv, message", [
    ({"Q": [[1.0]], "R": [[0.5]], "T": [[1.0]]}, [], "not a critical point"),
    ({"Q": [[1.0]], "R": [[1.0]], "T": [[1.0]]}, ["--alpha", "1.5"], "alpha"),
    ({"Q": [[1.0]], "R": [[1.0]], "T": [[1.0]]}, ["--d", "0"], "d"),
])
def test_embed_bad_input_is_one_line(tmp_path, capsys, point, argv, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(point))
    code = main(["embed", "--point", str(path), *argv])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_split_unit_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        split_unit(np.eye(2), 0, 0.0)
    with pytest.raises(ValueError, match="row index"):
        split_unit(np.eye(2), 2, 0.5)
