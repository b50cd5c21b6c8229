"""Families across widths (backend and ``landscape families``).

Independent references: the published type-A losses (shared reference folder), scipy's Wilson
interval (``binomtest(...).proportion_ci``), and basin counts added up by hand from the raw JSON
records of the shipped store.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from test_families import _published_losses, _type_a

from landscape.catalogues.build import point_record
from landscape.catalogues.records import Catalogue, CatalogueStatus
from landscape.catalogues.widths import families_across_widths
from landscape.commands.main import main
from landscape.critical_points.families import TYPE_A
from landscape.critical_points.flat import gradient_repolish, make_candidate
from landscape.model.config import InitSpec, RunConfig
from landscape.model.loss import gradient_from_weights

STORE = Path(__file__).resolve().parents[1] / "assets" / "sweep_default"


def _catalogue(K, points, starts):
    """A catalogue of given polished points ``[(W, count)]`` (orthonormal teacher, K = M)."""
    teacher = np.eye(K)
    config = RunConfig(K=K, M=K, init=InitSpec(kind="random", d=K, seed=0, scale=1.0))
    entries = []
    for W, count in points:
        candidate = make_candidate(W, teacher, float(np.linalg.norm(gradient_from_weights(W, teacher))), "flow",
                                   gradient_repolish)
        candidate.count = count
        entries.append(point_record(candidate, teacher, K, config, "gradient_flow"))
    converged = sum(count for _, count in points)
    return Catalogue(points=tuple(sorted(entries, key=lambda p: p.loss)), starts=starts, seed=0, config=config,
                     regime="gradient_flow", d=K, n_converged=converged, failures={"max_steps": starts - converged},
                     ansatz_starts=0, success=True, status=CatalogueStatus.PARTIAL, message="")


def test_type_a_is_one_line_with_the_published_losses_and_wilson_intervals():
    widths = (6, 7, 10, 14, 20)
    catalogues = []
    for K in widths:
        W, _ = _type_a(K)
        catalogues.append(_catalogue(K, [(np.eye(K), 100 - K), (W, K)], starts=100))
    result = families_across_widths(reversed(catalogues))
    assert result.K.tolist() == list(widths) and result.success
    names = [f.name for f in result.families]
    assert names == ["global minimum", TYPE_A]  # the global minimum first (lowest loss)
    type_a = result.families[1]
    assert type_a.K.tolist() == list(widths) and type_a.kind == ("minimum",) * len(widths)
    for K, value in _published_losses().items():
        assert type_a.loss[type_a.K.tolist().index(K)] == pytest.approx(value, abs=1e-7)
    assert np.all(np.diff(type_a.loss) < 0) and np.all(type_a.min_eigenvalue > 0)
    assert type_a.count.tolist() == list(widths)
    for i, K in enumerate(widths):
        interval = binomtest(K, 100).proportion_ci(confidence_level=0.95, method="wilson")
        assert (type_a.lower[i], type_a.upper[i]) == pytest.approx((interval.low, interval.high), abs=1e-12)
        assert type_a.fraction[i] == K / 100


def test_families_over_the_shipped_store_count_the_stored_basins(tmp_path, capsys):
    # Independent count: add up the basin counts of the raw JSON records by hand.
    by_K = {}
    for path in (STORE / "records").glob("*.json"):
        result = json.loads(path.read_text())["result"]
        if result["config"]["K"] == result["config"]["M"]:
            by_K[result["config"]["K"]] = result
    out = tmp_path / "families.csv"
    assert main(["families", "--store", str(STORE), "--where", "K-M=0", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["K"] == sorted(by_K)
    for family in printed["families"]:
        assert set(family) >= {"name", "K", "loss", "min_eigenvalue", "fraction", "lower", "upper"}
        for fraction, lower, upper in zip(family["fraction"], family["lower"], family["upper"]):
            assert lower <= fraction <= upper
    for K, result in by_K.items():
        total = sum(f["fraction"][f["K"].index(K)] for f in printed["families"] if K in f["K"])
        converged = sum(p["count"] for p in result["points"])
        assert total == pytest.approx(converged / result["starts"])
        global_count = sum(p["count"] for p in result["points"] if p["kind"] == "minimum" and p["loss"] < 1e-10)
        assert printed["families"][0]["fraction"][printed["families"][0]["K"].index(K)] == global_count / result["starts"]
    type_a = next(f for f in printed["families"] if f["name"] == TYPE_A)
    # Type A is found at every width of the table; a saddle at K = 4, 5 and a minimum from K = 6 on.
    assert type_a["K"] == sorted(by_K) and type_a["kind"][:2] == ["saddle", "saddle"]
    assert set(type_a["kind"][2:]) == {"minimum"}
    assert out.read_text().startswith("family,K,loss")


@pytest.mark.parametrize("argv, message", [
    ([], "share a width K"),
    (["--where", "K=99"], "no done catalogue"),
    (["--where", "colour=1"], "unknown selection key"),
    (["--confidence", "2"], "must be a number in (0, 1)"),
])
def test_families_bad_input_is_one_line(capsys, argv, message):
    code = main(["families", "--store", str(STORE), *argv])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_families_across_widths_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        families_across_widths([])
    with pytest.raises(ValueError, match="Catalogue"):
        families_across_widths([object()])
