"""Catalogues: Safran & Shamir's rates and losses, distinct points, flat directions, finite lr, I/O.

Independent references: /work/shared/reference (published spurious rates of 1000 gradient-descent
runs per (K, M), and leading-family losses), gradients recomputed from an explicit embedding of the
stored overlaps, closed-form Wilson intervals, and the symmetry of the problem (a point and its
permuted copy are one point).
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import landscape.catalogues.build as catalogue_module
from landscape.catalogues.build import (
    MAX_STARTS,
    Catalogue,
    CatalogueStatus,
    PointKind,
    build_catalogue,
)
from landscape.catalogues.reachability import reachability, reachability_curve, wilson_interval
from landscape.critical_points.families import TYPE_A
from landscape.critical_points.hessian import embed_overlaps
from landscape.model.config import InitSpec, RunConfig
from landscape.model.loss import gradient_from_weights, loss_from_overlaps

REFERENCE = Path("/work/shared/reference/safran_shamir_2018_rates.csv")
PUBLISHED_LEADING_LOSS = {6: 0.0250806, 7: 0.0232027}


def _published_rate(K, M):
    with REFERENCE.open() as handle:
        for row in csv.DictReader(handle):
            if int(row["student_units_K"]) == K and int(row["teacher_units_M"]) == M:
                return int(row["runs_ending_at_spurious_points"]) / int(row["runs"]), int(row["runs"])
    raise KeyError((K, M))


def _safran_shamir(K, M):
    """Their protocol: W = randn(K, d) / sqrt(d) with d = M, i.e. scale 1 in d = M."""
    return RunConfig(K=K, M=M, init=InitSpec(kind="random", d=M, scale=1.0))


def _spurious_starts(catalogue):
    return sum(p.count for p in catalogue.points if not p.is_global)


def _assert_rate_consistent(catalogue, K, M):
    """Our rate and theirs differ by less than 3 combined binomial standard errors."""
    published, runs = _published_rate(K, M)
    ours = _spurious_starts(catalogue) / catalogue.starts
    p = 0.5 * (ours + published)
    error = np.sqrt(p * (1 - p) / catalogue.starts + p * (1 - p) / runs)
    assert abs(ours - published) < 3 * error + 1e-12, (ours, published, error)


@pytest.fixture(scope="module")
def catalogue7():
    return build_catalogue(_safran_shamir(7, 7), starts=200, seed=0)


@pytest.fixture(scope="module")
def catalogue8():
    return build_catalogue(_safran_shamir(8, 8), starts=200, seed=0)


@pytest.fixture(scope="module")
def catalogue87():
    return build_catalogue(_safran_shamir(8, 7), starts=100, seed=0)


# ----------------------------------------------------------------------------- Safran & Shamir


def test_leading_spurious_minimum_has_the_published_loss(catalogue7):
    minima = [p for p in catalogue7.points if p.kind is PointKind.MINIMUM and not p.is_global]
    assert minima, catalogue7.message
    leading = min(minima, key=lambda p: p.loss)
    assert abs(leading.loss - PUBLISHED_LEADING_LOSS[7]) < 1e-6
    assert leading.family == TYPE_A
    assert leading.count > 0 and "flow" in leading.found_by
    # The loss stored matches the loss of the stored overlaps.
    assert loss_from_overlaps(leading.Q, leading.R, np.eye(7)) == pytest.approx(leading.loss, abs=1e-12)


def test_spurious_rates_match_safran_and_shamir(catalogue7, catalogue8):
    _assert_rate_consistent(catalogue7, 7, 7)
    _assert_rate_consistent(catalogue8, 8, 8)
    assert _spurious_starts(catalogue8) > _spurious_starts(catalogue7) > 0


def test_every_point_is_critical_checked_on_an_explicit_embedding(catalogue7, catalogue87):
    for catalogue in (catalogue7, catalogue87):
        T = catalogue.config.teacher_matrix()
        for point in catalogue.points:
            embedding = embed_overlaps(point.Q, point.R, T)
            gradient = gradient_from_weights(embedding.student, embedding.teacher)
            assert np.linalg.norm(gradient) < 1e-10, (point.loss, point.family)
            assert point.gradient_norm < 1e-10
            assert (point.kind is PointKind.MINIMUM) == (point.index == 0)
            assert (point.min_eigenvalue >= -1e-9) == (point.index == 0)
            assert sum(point.multiplicities) == catalogue.config.K * catalogue.d


def test_no_point_is_listed_twice(catalogue7, catalogue8):
    for catalogue in (catalogue7, catalogue8):
        points = catalogue.points
        assert [p.loss for p in points] == sorted(p.loss for p in points)
        for i, a in enumerate(points):
            for b in points[i + 1:]:
                if abs(a.loss - b.loss) < 1e-9:
                    # Same loss: then the spectra must tell them apart (images of one point share it).
                    same_spectrum = len(a.eigenvalues) == len(b.eigenvalues) and np.allclose(
                        a.eigenvalues, b.eigenvalues, atol=1e-7) and a.multiplicities == b.multiplicities
                    assert not same_spectrum, (a.loss, a.family, b.family)
        assert sum(p.count for p in points) == catalogue.n_converged


def test_families_of_spurious_minima_are_ordered_by_loss(catalogue8):
    reach = reachability(catalogue8)
    spurious = [label for label in reach.labels if label not in ("global minimum", "saddle", "not converged")]
    assert len(spurious) >= 2
    lowest = {}
    for point in catalogue8.points:
        if point.kind is PointKind.MINIMUM and not point.is_global:
            lowest[point.family] = min(lowest.get(point.family, np.inf), point.loss)
    assert spurious == sorted(lowest, key=lowest.get)
    assert spurious[0] == TYPE_A


def test_one_more_student_removes_most_spurious_minima(catalogue7, catalogue87):
    rate_equal = _spurious_starts(catalogue7) / catalogue7.starts
    rate_wider = _spurious_starts(catalogue87) / catalogue87.starts
    assert rate_equal >= 0.02 and rate_wider <= rate_equal / 4


def test_flat_directions_are_reported_once(catalogue87):
    global_minima = [p for p in catalogue87.points if p.is_global]
    assert len(global_minima) == 1  # the whole continuum is one entry
    point = global_minima[0]
    assert point.family == "global minimum, one teacher split"
    assert point.manifold is not None and point.manifold.dimension == 1
    assert point.n_zero - point.n_symmetry_zero >= 1  # an exact zero mode that moves (Q, R)
    (group,), (teacher,) = point.manifold.groups, point.manifold.teachers
    # The two students of the group are equal and together reproduce their teacher.
    assert np.allclose(point.Q[group[0]], point.Q[group[1]], atol=1e-9)
    assert point.R[group[0], teacher] + point.R[group[1], teacher] == pytest.approx(1.0, abs=1e-9)
    assert "split teacher" in point.manifold.description
    assert point.count + sum(catalogue87.failures.values()) == catalogue87.starts - _spurious_starts(catalogue87)


@pytest.mark.slow
@pytest.mark.parametrize("K, starts", [(9, 500), (10, 200)])
def test_safran_shamir_rates_and_two_reachable_families_at_large_K(K, starts):
    # The second family (two missed teachers) takes about 1% of the starts at K = 9, 3% at K = 10.
    catalogue = build_catalogue(_safran_shamir(K, K), starts=starts, seed=1)
    _assert_rate_consistent(catalogue, K, K)
    reached = {}
    for point in catalogue.points:
        if point.kind is PointKind.MINIMUM and not point.is_global and point.count > 0:
            reached[point.family] = min(reached.get(point.family, np.inf), point.loss)
    assert len(reached) >= 2
    ordered = sorted(reached, key=reached.get)
    assert ordered[:2] == [TYPE_A, "two teachers missed, two students opposing"]


@pytest.mark.slow
def test_leading_loss_at_K6_from_random_starts():
    catalogue = build_catalogue(_safran_shamir(6, 6), starts=1000, seed=2)
    _assert_rate_consistent(catalogue, 6, 6)
    reached = [p for p in catalogue.points if not p.is_global and p.count > 0]
    assert reached and abs(min(p.loss for p in reached) - PUBLISHED_LEADING_LOSS[6]) < 1e-6


# ----------------------------------------------------------------------------- finite learning rate


def test_finite_lr_catalogue_ends_at_the_global_minimum():
    config = RunConfig(K=2, M=2, lr=0.5, init=InitSpec(d=2))
    catalogue = build_catalogue(config, starts=4, seed=0, regime="finite_lr")
    assert catalogue.success and catalogue.regime == "finite_lr"
    (best,) = [p for p in catalogue.points if p.is_global]
    assert best.count == catalogue.n_converged == 4
    assert np.max(np.abs(best.R - np.eye(2))) < 1e-6 and best.gradient_norm < 1e-10
    assert catalogue.d == 4  # the ODE lives in d -> infinity: spectra at least in K + M dimensions


def test_finite_lr_points_approach_the_gradient_flow_points_as_lr_shrinks():
    flow = build_catalogue(RunConfig(K=2, M=2, init=InitSpec(d=2)), starts=2, seed=0)
    small = build_catalogue(RunConfig(K=2, M=2, lr=1e-3, init=InitSpec(d=2)), starts=2, seed=0, regime="finite_lr")
    saddles = [p for p in flow.points if p.kind is PointKind.SADDLE]
    continued = [p for p in small.points if p.kind is PointKind.SADDLE]
    assert saddles and len(continued) == len(saddles)
    for a, b in zip(saddles, continued):
        # The lr^2 term moves a fixed point by O(lr) (the constant is of order one here).
        assert np.max(np.abs(a.Q - b.Q)) < 10 * 1e-3 and np.max(np.abs(a.R - b.R)) < 10 * 1e-3
        assert a.family == b.family


# ----------------------------------------------------------------------------- results and I/O


def test_catalogue_round_trips_and_exports(tmp_path, catalogue87):
    data = json.loads(json.dumps(catalogue87.to_dict()))
    assert {"points", "starts"} <= set(data)
    for key in ("kind", "loss", "index", "n_zero", "min_eigenvalue", "family", "count", "orbit_size", "gradient_norm", "Q", "R"):
        assert key in data["points"][0]
    assert data["points"][0]["kind"] in ("minimum", "saddle")
    path = tmp_path / "catalogue.json"
    catalogue87.save_json(path)
    again = Catalogue.load_json(path)
    assert again.to_dict() == catalogue87.to_dict()
    frame = catalogue87.to_frame()
    assert len(frame) == len(catalogue87.points) and "Q" not in frame.columns
    catalogue87.save_csv(tmp_path / "points.csv")
    assert (tmp_path / "points.csv").read_text().splitlines()[0].startswith("kind,loss,index")
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        Catalogue.load_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a catalogue"):
        Catalogue.from_dict({"points": []})


def test_catalogue_is_deterministic_and_reports_progress():
    config = _safran_shamir(3, 3)
    calls = []
    first = build_catalogue(config, starts=70, seed=3, progress=lambda done, total: calls.append((done, total)))
    second = build_catalogue(config, starts=70, seed=3, workers=1)
    assert first.to_dict() == second.to_dict()
    assert calls == [(64, 70), (70, 70)]
    third = build_catalogue(config, starts=70, seed=4)
    assert third.to_dict() != first.to_dict()


def test_degenerate_starts_are_counted_in_failures(monkeypatch):
    original = catalogue_module._span_weights

    def with_dead_units(config, starts, rng):
        W0, teacher = original(config, starts, rng)
        W0[0] = 0.0  # every unit dead: one dead unit alone is flowed on without it (test_critical.py)
        return W0, teacher

    monkeypatch.setattr(catalogue_module, "_span_weights", with_dead_units)
    catalogue = build_catalogue(_safran_shamir(3, 3), starts=5, seed=0)
    assert catalogue.failures == {"unit_died": 1}
    assert catalogue.n_converged == 4 and catalogue.status is CatalogueStatus.PARTIAL and catalogue.success
    assert "1 unit_died" in catalogue.message
    assert reachability(catalogue).labels[-1] == "not converged"


def test_bad_input_is_rejected_with_clear_messages():
    config = _safran_shamir(3, 3)
    for starts in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="starts"):
            build_catalogue(config, starts=starts, seed=0)
    with pytest.raises(ValueError, match="limit"):
        build_catalogue(config, starts=MAX_STARTS["gradient_flow"] + 1, seed=0)
    with pytest.raises(ValueError, match="limit"):
        build_catalogue(config, starts=MAX_STARTS["finite_lr"] + 1, seed=0, regime="finite_lr")
    with pytest.raises(ValueError, match="regime"):
        build_catalogue(config, starts=1, seed=0, regime="sgd")
    with pytest.raises(ValueError, match="seed"):
        build_catalogue(config, starts=1, seed=-1)
    with pytest.raises(ValueError, match="RunConfig"):
        build_catalogue({"K": 3}, starts=1, seed=0)
    with pytest.raises(ValueError, match="progress"):
        build_catalogue(config, starts=1, seed=0, progress="yes")
    overlaps = RunConfig(K=2, M=2, init=InitSpec(kind="overlaps", Q=np.eye(2).tolist(), R=np.eye(2).tolist()))
    with pytest.raises(ValueError, match="random"):
        build_catalogue(overlaps, starts=1, seed=0)


# ----------------------------------------------------------------------------- reachability


def test_wilson_interval_matches_its_closed_forms():
    z = 1.959963984540054
    lower, upper = wilson_interval(0, 50)
    assert lower == 0.0 and upper == pytest.approx(z * z / (50 + z * z), rel=1e-12)
    lower, upper = wilson_interval(25, 50)
    assert 0.5 - lower == pytest.approx(upper - 0.5, rel=1e-12)
    lower, upper = wilson_interval(50, 50)
    assert upper == 1.0 and lower == pytest.approx(50 / (50 + z * z), rel=1e-12)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.0)


def test_reachability_and_curve(catalogue7, catalogue87):
    reach = reachability(catalogue7)
    assert reach.labels[0] == "global minimum" and reach.counts.sum() == catalogue7.starts
    assert np.all(reach.lower <= reach.fractions) and np.all(reach.fractions <= reach.upper)
    fraction, lower, upper = reach.spurious_fraction
    assert fraction == _spurious_starts(catalogue7) / catalogue7.starts and lower < fraction < upper
    curve = reachability_curve([catalogue87, catalogue7], parameter="K")
    assert list(curve.values) == [7, 8]
    assert curve.labels[:2] == ("global minimum", "spurious (all families)")
    assert curve.fractions.shape == (len(curve.labels), 2)
    assert curve.fractions[0, 1] > curve.fractions[0, 0]  # more students: the global minimum is reached more often
    assert len(curve.to_frame()) == 2 * len(curve.labels)
    with pytest.raises(ValueError):
        reachability_curve([])
    with pytest.raises(ValueError):
        reachability_curve([catalogue7], parameter="M")


def test_catalogue_lists_the_saad_solla_plateau_saddle():
    # Regression: the ansatz search only tried subspaces inside the teacher span, so the plateau of
    # one-pass SGD (students alike, with components outside the span) was missing for K = M = 3.
    # Independent value: minimise the loss of explicit weights u_k = a s + b (e_k - e_mean) + c e_mean
    # (s the sum of the teachers, e_k outside their span) over (a, b, c) with Nelder-Mead.
    from scipy.optimize import minimize

    from landscape.model.loss import loss_from_weights

    K = M = 3
    teacher = np.eye(M + K)[:M]
    outside = np.eye(M + K)[M:]

    def symmetric_loss(x):
        a, b, c = x
        W = a * teacher.sum(axis=0) + b * (outside - outside.mean(axis=0)) + c * outside.mean(axis=0)
        return loss_from_weights(W, teacher)

    plateau = minimize(symmetric_loss, (0.3, 0.5, 0.1), method="Nelder-Mead",
                       options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000}).fun
    config = RunConfig(K=K, M=M, eta2=False, init=InitSpec(kind="random", d=50, seed=0, scale=1.0))
    catalogue = build_catalogue(config, 8, 0)
    saddles = [p for p in catalogue.points if p.kind is PointKind.SADDLE and abs(p.loss - plateau) < 1e-9]
    assert len(saddles) == 1 and saddles[0].gradient_norm < 1e-10
    assert abs(plateau - 0.158652) < 1e-5
