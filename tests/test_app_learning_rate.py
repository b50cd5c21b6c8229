"""The Learning rate page (AppTest): the lecture preset, the diagram, a selected point, direct SGD, links."""


import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, CATALOGUE_LINK, _app, _array, _assert_clean, _figures, _texts

from landscape.catalogues.bifurcation import catalogue_bifurcation
from landscape.critical_points.continuation import continue_fixed_point, fixed_point_near

PAGE = "views/learning_rate.py"
LECTURE = {"K": "2", "M": "2", "noise": "0.1", "eta2": "true", "lr": "0.5"}


def _page(params):
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {"tmax": "30", "runs": "1", **params}.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(PAGE)
    at.run()
    return at


def test_the_preset_button_sets_the_lecture_example_and_the_page_shows_its_fold():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"tmax": "30", "runs": "1"})
    at.run()
    (button,) = [b for b in at.sidebar.button if b.label == "learning rate too large"]
    button.click().run()
    at.switch_page(PAGE).run()
    _assert_clean(at)
    assert at.sidebar.number_input(key="K").value == 2 and at.sidebar.number_input(key="noise").value == 0.1
    diagram = _figures(at)[0]
    folds = [trace for trace in diagram["data"] if trace.get("name") == "fold"]
    assert len(folds) == 1
    # The fold the page draws is where the backend's own continuation finds it (1.2246, inside the issue's
    # bracket 1.2 .. 1.5, where flows switch from settling to diverging: tests/test_continuation.py).
    assert 1.2 < _array(folds[0]["x"])[0] < 1.5
    dashes = {trace["line"]["dash"] for trace in diagram["data"] if trace.get("mode") == "lines+markers"}
    assert dashes == {"solid", "dash"}
    assert any("folds at lr = 1.22459" in text for text in _texts(at.caption))


def test_the_selected_point_shows_its_overlaps_and_spectrum_and_the_link_carries_it():
    at = _page({**LECTURE, "lrmax": "1.0", "bpoint": "5"})
    _assert_clean(at)
    figures = _figures(at)
    assert len(figures) == 3  # diagram, overlaps, spectrum
    T = np.eye(2)
    Q, R = fixed_point_near(T, T, T, 0.5, 0.1)
    branch = continue_fixed_point(Q, R, T, 0.5, 1.0, True, 0.1)
    heatmaps = figures[1]
    assert np.allclose(_array(heatmaps["data"][0]["z"]), branch.Q[5], atol=1e-3)  # shown rounded
    spectrum = figures[2]
    shown = np.concatenate([_array(trace["x"]) for trace in spectrum["data"]])
    assert np.allclose(np.sort(shown), np.sort(branch.eigenvalues[5].real))
    share = at.sidebar.code[0].value
    assert "lrmax=1&" in share and "bpoint=5" in share
    assert at.number_input(key="lrmax").value == 1.0 and at.number_input(key="bpoint").value == 5


def test_direct_sgd_settles_below_the_fold_and_escapes_above_it():
    at = _page({**LECTURE, "lrmax": "1.5", "lrsgd": "true", "lrsgd_d": "200", "bpoint": "0"})
    _assert_clean(at)
    sgd = _figures(at)[-1]
    names = [trace["name"] for trace in sgd["data"]]
    assert any("lr = 0.5" in name for name in names) and any("lr = 1.347" in name for name in names)
    below = next(trace for trace in sgd["data"] if "lr = 0.5" in trace["name"])
    above = next(trace for trace in sgd["data"] if "lr = 1.347" in trace["name"])
    # Below the fold SGD stays near the fixed point's loss (0.0204); above it the loss runs away.
    assert np.median(_array(below["y"])[-50:]) == pytest.approx(0.0204, rel=0.25)
    assert np.nanmax(_array(above["y"])) > 1.0


def test_without_label_noise_the_page_shows_the_exact_branch_and_where_it_stops_attracting():
    # Loss 0 at every lr (a linear axis: no log of 0); the stability change lies where flows from the
    # perturbed minimum switch from settling to running away (1.264 .. 1.272 by bisection on flows,
    # tests/test_realisable.py; the page draws the backend's value).
    at = _page({"K": "2", "M": "2", "eta2": "true", "lrmax": "2"})
    _assert_clean(at)
    diagram = _figures(at)[0]
    (change,) = [trace for trace in diagram["data"] if trace.get("name") == "stability change"]
    assert 1.25 < _array(change["x"])[0] < 1.29
    lines = [trace for trace in diagram["data"] if trace.get("mode") == "lines+markers"]
    assert {trace["line"]["dash"] for trace in lines} == {"solid", "dash"}
    assert all(np.all(_array(trace["y"]) == 0) for trace in lines)
    assert diagram["layout"]["yaxis"].get("type") != "log"


def test_every_minimum_of_the_catalogue_gets_a_branch_named_by_its_family(with_shipped):
    at = _page({**CATALOGUE_LINK, "noise": "0.1", "eta2": "true", "lr": "0.3", "lrmax": "0.6", "bbranch": "0"})
    _assert_clean(at)
    minima = [(i, p) for i, p in enumerate(with_shipped.points) if p.kind.value == "minimum"]
    diagram = _figures(at)[0]
    names = {trace["name"] for trace in diagram["data"] if trace.get("mode") == "lines+markers"}
    assert names == {f"minimum {i} (L = {p.loss:.3g}, {p.family})" for i, p in minima}
    # The branch drawn is the backend's continuation of that minimum (the same lr and loss points).
    result = catalogue_bifurcation(with_shipped, 0.6, noise=0.1, lr=0.3, workers=1)
    drawn = np.concatenate([_array(t["y"]) for t in diagram["data"]
                            if t.get("mode") == "lines+markers" and t["name"].startswith(f"minimum {minima[0][0]} ")])
    assert np.allclose(np.unique(drawn), np.unique(result.branches[0].loss))


def test_lr_max_below_the_start_is_one_error():
    at = _page({**LECTURE, "lrmax": "0.3"})
    assert not at.exception
    (error,) = _texts(at.error)
    assert "must be above" in error


def test_critical_points_and_hessian_pages_show_ode_stability_beside_the_index(with_shipped):
    # The gradient-flow claim on the pages: the ODE-attractive column is the minimum/saddle split of the
    # Hessian index (tested on the backend in tests/test_stability.py).
    at = _app({**CATALOGUE_LINK, "point": "0"}, page="critical-points")
    _assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["attractive"]) == [p.kind.value == "minimum" for p in with_shipped.points]
    assert list(table["index"] == 0) == list(table["attractive"])
    assert any(m.label == "ODE fixed point" and m.value == "attractive" for m in at.metric)
    at = _app({**CATALOGUE_LINK, "hd": "50", "compare": "0,1"}, page="hessian-spectra")
    _assert_clean(at)
    summary = at.dataframe[0].value
    assert list(summary["ODE attractive"]) == [p.kind.value == "minimum" for p in with_shipped.points[:2]]
    assert all(np.isfinite(summary["max Re λ (ODE)"]))


def test_a_hosted_demo_refuses_wide_continuations_in_one_line(monkeypatch):
    # Issue 18: in demo mode a continuation wider than LANDSCAPE_MAX_BRANCH_K (default 4) is refused
    # before any work starts (K = M = 8 took 752 s); locally the same link would run.
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    at = _page({"K": "6", "M": "6", "noise": "0.1", "eta2": "true"})
    assert not at.exception
    (error,) = _texts(at.error)
    assert "continuations in lr" in error and "LANDSCAPE_MAX_BRANCH_K" in error
    assert not _figures(at)
