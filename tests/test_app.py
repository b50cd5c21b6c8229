"""The Streamlit app, headless (streamlit.testing.v1.AppTest): every page, presets, links, errors, caps.

Runs use small K and t_max, and the phase portrait one start (``runs=1``), so the whole file
stays well under a minute; cached results are shared between the tests of one process.
"""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from landscape.dashboard import PRESETS, preset_values

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = {
    "flows": "views/flows.py",
    "critical-points": "views/critical_points.py",
    "hessian-spectra": "views/hessian_spectra.py",
    "families": "views/families.py",
    "theory": "views/theory.py",
}
FAST = {"tmax": "30", "runs": "1"}


def _app(params=None, page=None, timeout=60):
    """The app after opening a link; a page other than Flows is reached the way a reader gets there.

    (AppTest resolves ``st.navigation`` url paths only after a first run, so that run opens
    Flows, kept cheap with one short run, and then switches.)
    """
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in ({**FAST, **(params or {})} if page not in (None, "flows") else params or {}).items():
        at.query_params[key] = value
    at.run()
    if page not in (None, "flows"):
        at.switch_page(PAGES[page])
        at.run()
    return at


def _figures(at):
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _array(value):
    """A figure array from its JSON form (Plotly packs numeric arrays as base64 'bdata')."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.array(value)


def _texts(elements):
    return [element.value for element in elements]


def _assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, _texts(at.error)


def test_default_flows_page():
    at = _app({"runs": "1"})
    _assert_clean(at)
    assert at.sidebar.number_input(key="K").value == 4
    figures = _figures(at)
    assert len(figures) == 4
    loss = figures[0]
    assert loss["layout"]["xaxis"]["type"] == "log" and loss["layout"]["yaxis"]["type"] == "log"
    assert "steps / d" in loss["layout"]["xaxis"]["title"]["text"]
    assert any("reached a fixed point" in text for text in _texts(at.caption))


def test_sidebar_changes_reach_the_figures():
    at = _app(FAST)
    at.sidebar.number_input(key="K").set_value(3).run()
    at.sidebar.number_input(key="M").set_value(2).run()
    _assert_clean(at)
    heatmaps = _figures(at)[3]
    assert _array(heatmaps["data"][0]["z"]).shape == (3, 3) and _array(heatmaps["data"][1]["z"]).shape == (3, 2)
    at.sidebar.selectbox(key="teacher").set_value("equicorrelated").run()
    at.sidebar.number_input(key="rho").set_value(0.3).run()
    _assert_clean(at)
    assert any("(equicorrelated)" in text for text in _texts(at.caption))


def test_a_link_sets_the_widgets():
    params = {"K": "3", "M": "2", "teacher": "block", "rho": "0.2", "blocks": "1,1", "lr": "0.3", "noise": "0.01",
              "scale": "0.5", "d": "500", "seed": "7", **FAST}
    at = _app(params)
    _assert_clean(at)
    sidebar = at.sidebar
    assert sidebar.number_input(key="K").value == 3 and sidebar.number_input(key="M").value == 2
    assert sidebar.selectbox(key="teacher").value == "block" and sidebar.text_input(key="blocks").value == "1,1"
    assert sidebar.number_input(key="rho").value == pytest.approx(0.2)
    assert sidebar.number_input(key="lr").value == pytest.approx(0.3)
    assert sidebar.number_input(key="seed").value == 7 and sidebar.number_input(key="tmax").value == 30
    assert at.number_input(key="runs").value == 1
    share = at.sidebar.code[0].value
    for key, value in params.items():
        assert f"{key}={value.replace(',', '%2C')}" in share, key
    heatmaps = _figures(at)[3]
    assert _array(heatmaps["data"][1]["z"]).shape == (3, 2)


def test_a_malformed_link_falls_back_with_a_visible_warning():
    at = _app({"K": "abc", "M": "999", "teacher": "custom", "T": "1,2;3", "eta2": "maybe", **FAST})
    _assert_clean(at)
    (warning,) = _texts(at.warning)
    for key in ("K='abc'", "M=999", "T=", "eta2='maybe'"):
        assert key in warning, key
    assert at.sidebar.number_input(key="K").value == 4 and at.sidebar.number_input(key="M").value == 4
    assert at.sidebar.text_input(key="T").value == ""  # reset, so the identity is used
    assert at.sidebar.toggle(key="eta2").value is False
    assert len(_figures(at)) == 4
    at.button(key="_dismiss").click().run()
    assert not at.warning


def test_an_invalid_teacher_matrix_is_one_error_naming_the_smallest_eigenvalue():
    at = _app({"M": "2", "K": "2", "teacher": "custom", "T": "1, 2; 2, 1", **FAST})
    assert not at.exception
    (error,) = _texts(at.error)
    assert "smallest eigenvalue -1" in error
    assert not _figures(at)


def test_an_impossible_combination_is_one_error_line():
    at = _app({"teacher": "block", "blocks": "3,3", **FAST})
    assert not at.exception
    (error,) = _texts(at.error)
    assert "add up" in error


def test_over_the_demo_cap_is_a_clear_message(monkeypatch):
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    monkeypatch.setenv("LANDSCAPE_MAX_K", "3")
    at = _app(FAST)
    assert not at.exception
    (error,) = _texts(at.error)
    assert "K = 4 is over the hosted-demo cap of 3" in error and "LANDSCAPE_MAX_K" in error
    monkeypatch.setenv("LANDSCAPE_MAX_K", "lots")
    at = _app({**FAST, "K": "2", "M": "2"})
    assert any("LANDSCAPE_MAX_K" in text for text in _texts(at.warning)) and len(_figures(at)) == 4


def test_sgd_overlay_and_its_cap(monkeypatch):
    at = _app({**FAST, "K": "2", "M": "2", "sgd": "true", "sgd_d": "50"})
    _assert_clean(at)
    loss, overlaps = _figures(at)[0], _figures(at)[1]
    assert [trace["name"] for trace in loss["data"]] == ["ODE (d → ∞)", "sgd (d = 50)"]
    assert len(overlaps["data"]) == 2 * (4 + 3) + 2  # + the legend of the teachers' line patterns
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    monkeypatch.setenv("LANDSCAPE_MAX_SGD_STEPS", "100")
    at = _app({**FAST, "K": "2", "M": "2", "sgd": "true", "sgd_d": "50"})
    assert any("SGD steps" in text and "cap" in text for text in _texts(at.error))


@pytest.mark.parametrize("preset", [p.name for p in PRESETS])
def test_each_preset_on_the_flows_page(preset):
    at = _app({"runs": "1"})
    (button,) = [b for b in at.sidebar.button if b.label == preset]
    button.click().run()
    _assert_clean(at)
    for key, value in preset_values(preset).items():
        widget = next((w for w in at.sidebar if getattr(w, "key", None) == key), None)
        if widget is not None:
            assert widget.value == value, key
    assert len(_figures(at)) == 4


def test_theory_page():
    at = _app(page="theory")
    _assert_clean(at)
    latex = " ".join(_texts(at.latex))
    assert "\\eta^2" in latex and "I_{d - r}" in latex
    references = " ".join(_texts(at.markdown))
    for name in ("Saad", "Goldt", "Safran", "Arjevani", "2604.09412", "Cho"):
        assert name in references


# ----------------------------------------------------------------------------- catalogue pages

CATALOGUE_LINK = {"K": "3", "M": "3", "starts": "8", "tmax": "30"}


def test_critical_points_page_shows_the_shipped_catalogue(with_shipped):
    at = _app({**CATALOGUE_LINK, "point": "1"}, page="critical-points")
    _assert_clean(at)
    assert any("Precomputed catalogue" in text for text in _texts(at.caption))
    table = at.dataframe[0].value
    assert list(table["loss"]) == [p.loss for p in with_shipped.points]
    scatter = next(f for f in _figures(at) if f["layout"]["xaxis"]["type"] == "log")
    drawn = sorted(x for trace in scatter["data"] if trace["name"] in ("minimum", "saddle") for x in _array(trace["x"]))
    assert drawn == sorted(p.index + 1 for p in with_shipped.points)
    assert any(h.value.startswith("Row 1:") for h in at.subheader)
    assert len(at.get("download_button")) >= 3  # catalogue CSV and JSON, config JSON


def test_hessian_page_matches_the_published_global_minimum(with_shipped):
    at = _app({**CATALOGUE_LINK, "hd": "50", "compare": "0,1,x"}, page="hessian-spectra")
    assert not at.exception
    assert any("Ignoring rows x" in text for text in _texts(at.warning))
    table = at.dataframe[1].value  # eigenvalues of row 0, the global minimum
    special = table[np.isclose(table["eigenvalue"], 0.25 - 1 / (2 * np.pi))]
    assert list(special["multiplicity"]) == [3]  # K (K - 1) / 2 with K = 3, for any d
    assert table["multiplicity"].sum() == 3 * 50
    spectra = _figures(at)[0]
    assert spectra["layout"]["yaxis"]["type"] == "category" and len(spectra["data"]) >= 2


def test_hessian_page_turns_a_backend_error_into_one_line(with_shipped):
    at = _app({**CATALOGUE_LINK, "hd": "2"}, page="hessian-spectra")
    assert not at.exception
    errors = _texts(at.error)
    assert errors and all("smaller than the rank" in text for text in errors)


# The Families page opens on the add-a-student panel of the K = 8 type-A minimum (about 4 CPU seconds,
# several times that on a machine shared by many processes): more time than the other pages.
FAMILIES_TIMEOUT = 240


def _shipped_sweep_by_K(offset=0):
    """Raw records of the shipped sweep with K = M + offset, read from the JSON files (independent of the app)."""
    found = {}
    for path in (ROOT / "assets" / "sweep_default" / "records").glob("*.json"):
        result = json.loads(path.read_text())["result"]
        if result["config"]["K"] - result["config"]["M"] == offset:
            found[result["config"]["K"]] = result
    return found


def test_families_page_opens_on_the_shipped_sweep_across_widths():
    at = _app({}, page="families", timeout=FAMILIES_TIMEOUT)
    _assert_clean(at)
    figures = _figures(at)
    across, icicle = figures[0], figures[1]["data"][0]
    by_K = _shipped_sweep_by_K()
    # Loss lines: the type-A line has the published K = 6, 7 losses; fractions are the stored basin counts.
    type_a = [t for t in across["data"] if t["name"].startswith("type A")]
    loss_line, fraction_line = type_a
    K = list(_array(loss_line["x"]))
    assert K == sorted(by_K)
    assert _array(loss_line["y"])[K.index(6)] == pytest.approx(0.0250806, abs=1e-7)
    assert _array(loss_line["y"])[K.index(7)] == pytest.approx(0.0232027, abs=1e-7)
    assert _array(fraction_line["y"])[K.index(8)] == pytest.approx(
        sum(p["count"] for p in by_K[8]["points"] if abs(p["loss"] - 0.0215080) < 1e-6) / by_K[8]["starts"])
    # The hierarchy: one root per K holding all its starts, readable text.
    assert icicle["type"] == "icicle" and icicle["textfont"]["size"] >= 16
    roots = [v for v, parent in zip(_array(icicle["values"]), icicle["parents"]) if parent == ""]
    assert roots == [by_K[k]["starts"] for k in sorted(by_K)]
    at.radio(key="size").set_value("one per point").run()
    icicle = _figures(at)[1]["data"][0]
    roots = [v for v, parent in zip(_array(icicle["values"]), icicle["parents"]) if parent == ""]
    assert roots == [len(by_K[k]["points"]) for k in sorted(by_K)]


def test_add_a_student_panel_on_the_type_a_minimum_and_its_share_link():
    at = _app({}, page="families", timeout=FAMILIES_TIMEOUT)
    _assert_clean(at)
    assert at.selectbox(key="addfam_pick").value.startswith("type A")
    assert at.query_params["addfam"].startswith("type A")  # the share link carries the selection
    table = at.dataframe[0].value
    assert list(table["kind"]) == ["saddle", "saddle"] and sorted(table["orbit size"]) == [1, 7]
    assert np.allclose(table["loss"], 0.0215080, atol=1e-6) and np.all(table["gradient norm"] < 1e-10)
    assert any("global minimum, one teacher split" in text for text in table["escapes end at"])
    escapes = next(f for f in _figures(at) if f["layout"].get("xaxis", {}).get("type") == "log")
    ends = [t["text"][0] for t in escapes["data"] if t.get("mode") == "markers+text"]
    assert len(ends) == 4 and "global minimum, one teacher split" in ends
    # Another minimum, chosen in the panel, goes into the link; the link opens on it again.
    at.selectbox(key="addfam_pick").set_value("global minimum").run()
    _assert_clean(at)
    assert at.query_params["addfam"] == "global minimum" and list(at.dataframe[0].value["kind"]) == ["minimum"]
    again = _app({"addfam": "global minimum", "addk": "7"}, page="families", timeout=FAMILIES_TIMEOUT)
    _assert_clean(again)
    assert again.selectbox(key="addfam_pick").value == "global minimum"
    assert again.number_input(key="addk").value == 7


def test_add_a_student_with_an_unknown_family_in_the_link_warns():
    at = _app({"addfam": "no such family", "addk": "6"}, page="families", timeout=FAMILIES_TIMEOUT)
    assert not at.exception and not at.error
    assert any("no such family" in text for text in _texts(at.warning))
    assert at.selectbox(key="addfam_pick").value  # falls back to a listed minimum


def test_families_page_without_a_shipped_sweep_shows_the_sidebar_catalogue(with_shipped, monkeypatch, tmp_path):
    monkeypatch.setenv("LANDSCAPE_SWEEP", str(tmp_path / "none"))
    at = _app(CATALOGUE_LINK, page="families")
    _assert_clean(at)
    icicle = _figures(at)[0]["data"][0]
    assert icicle["type"] == "icicle" and _array(icicle["values"])[0] == with_shipped.starts


def test_a_catalogue_is_computed_on_demand_with_a_click():
    at = _app({"K": "2", "M": "2", "starts": "4", "tmax": "30"}, page="critical-points")
    _assert_clean(at)
    assert not at.dataframe and any("No catalogue" in text for text in _texts(at.info))
    at.button(key="compute_catalogue").click().run()
    _assert_clean(at)
    assert at.dataframe and any("computed on demand" in text for text in _texts(at.caption))
    at.switch_page(PAGES["hessian-spectra"]).run()  # the other pages reuse it
    _assert_clean(at)
    assert not [b for b in at.button if b.key == "compute_catalogue_spectra"] and _figures(at)


def test_starts_over_the_cap_is_a_clear_message(monkeypatch):
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    monkeypatch.setenv("LANDSCAPE_MAX_STARTS", "5")
    at = _app({"K": "2", "M": "2", "starts": "6"}, page="critical-points")
    assert not at.exception
    # A link over the cap falls back to the cap with a warning; a value typed in is refused in one line.
    assert any("starts=6 is over this demo's cap; using 5" in text for text in _texts(at.warning))
    at.sidebar.number_input(key="starts").set_value(6).run()
    assert any("starts = 6 is over the hosted-demo cap of 5" in text for text in _texts(at.error))


@pytest.mark.parametrize("page", ["critical-points", "hessian-spectra", "families", "theory"])
def test_every_other_page_under_every_preset(page, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CATALOGUE", "/nonexistent.json")
    at = _app(page=page)
    for preset in PRESETS:
        (button,) = [b for b in at.sidebar.button if b.label == preset.name]
        button.click().run()
        _assert_clean(at)
        assert at.sidebar.number_input(key="K").value == preset_values(preset.name)["K"]


def test_reachability_curve_computes_the_missing_widths(with_shipped):
    at = _app({**CATALOGUE_LINK, "kmin": "2", "kmax": "3", "dims": "sidebar d"}, page="families")
    _assert_clean(at)
    assert any("K = 2" in text for text in _texts(at.info))  # K = 3 is the shipped catalogue
    at.button(key="compute_reachability").click().run()
    _assert_clean(at)
    curve = _reachability_chart(at)
    first = curve["data"][0]
    assert first["name"] == "global minimum" and list(_array(first["x"])) == [2, 3]
    reached = sum(p.count for p in with_shipped.points if p.is_global) / with_shipped.starts
    assert _array(first["y"])[1] == pytest.approx(reached)
    assert "K" in curve["layout"]["xaxis"]["title"]["text"] and curve["layout"]["yaxis"]["title"]["text"]


def _reachability_chart(at):
    return next(f for f in _figures(at) if f["layout"].get("yaxis", {}).get("title",
                                                                            {}).get("text") == "fraction of random starts")


def test_toolbar_saves_png_or_svg():
    at = _app(FAST)
    formats = {json.loads(chart.proto.config)["toImageButtonOptions"]["format"] for chart in at.get("plotly_chart")}
    assert formats == {"png"}
    at.sidebar.radio(key="img").set_value("svg").run()
    formats = {json.loads(chart.proto.config)["toImageButtonOptions"]["format"] for chart in at.get("plotly_chart")}
    assert formats == {"svg"}


def test_reachability_reads_a_shipped_sweep(tmp_path, monkeypatch):
    from landscape.catalogues.sweep import run_sweep
    from landscape.catalogues.sweep_store import load_store

    spec = {"base": {"K": 2, "M": 2, "eta2": False, "init": {"kind": "random", "d": 2, "seed": 0, "scale": 1.0}},
            "grid": [{"M": [2], "K": [2], "init.d": [2]}, {"M": [3], "K": [3], "init.d": [3]}],
            "starts": 6, "seed": 1, "regime": "gradient_flow"}
    run_sweep(spec, tmp_path / "store", workers=1)
    monkeypatch.setenv("LANDSCAPE_SWEEP", str(tmp_path / "store"))
    at = _app({"kmin": "2", "kmax": "3"}, page="families")
    _assert_clean(at)
    assert any("2 of the 2 catalogues come from the sweep" in text for text in _texts(at.caption))
    assert not [b for b in at.button if b.key == "compute_reachability"]
    curve = _reachability_chart(at)
    stored = sorted(load_store(tmp_path / "store").select(), key=lambda record: record.task.config.K)
    expected = [sum(p.count for p in r.catalogue().points if p.is_global) / r.catalogue().starts for r in stored]
    assert list(_array(curve["data"][0]["y"])) == pytest.approx(expected)
