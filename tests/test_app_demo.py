"""The hosted demo in the app (issue 18): caps only in demo mode, link fallbacks, hostile links.

AppTest runs of the real app, as tests/test_app.py; each link here used to show a traceback,
a red page or a silently wrong view.
"""

import json

import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, CATALOGUE_LINK, FAST, _app, _assert_clean, _figures, _texts


def test_caps_do_not_apply_outside_demo_mode(monkeypatch):
    # ?K=20 replaced the page with a red error on a lecturer's own machine.
    monkeypatch.delenv("LANDSCAPE_DEMO", raising=False)
    monkeypatch.setenv("LANDSCAPE_MAX_K", "3")  # ignored outside demo mode
    at = _app({**FAST, "K": "20", "M": "20", "tmax": "1e5"})
    _assert_clean(at)
    assert not at.warning and at.sidebar.number_input(key="K").value == 20
    assert not any("Demo caps" in text for text in _texts(at.sidebar.caption))


def test_in_demo_mode_a_link_over_a_cap_falls_back_to_the_cap(monkeypatch):
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    monkeypatch.setenv("LANDSCAPE_MAX_K", "5")
    at = _app({**FAST, "K": "20", "M": "3"})
    _assert_clean(at)
    (warning,) = _texts(at.warning)
    assert "K=20 is over this demo's cap; using 5" in warning
    assert at.sidebar.number_input(key="K").value == 5 and at.query_params["K"] in ("5", ["5"])
    assert len(_figures(at)) == 4
    assert any("Demo caps: K, M ≤ 5" in text for text in _texts(at.sidebar.caption))


def test_in_demo_mode_the_sgd_overlay_has_a_work_budget(monkeypatch):
    # /flows?sgd=true&sgd_d=1000000&tmax=0.5 was accepted: 5e5 steps x 8 x 1e6 = 4e12 operations.
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    at = _app({**FAST, "sgd": "true", "sgd_d": "1000000", "tmax": "0.5"})
    assert not at.exception
    assert any("SGD work steps x (K + M) x d = 4e+12" in text for text in _texts(at.error))


@pytest.mark.parametrize("params, fragment", [
    ({"K": "1e400"}, "K='1e400' is not a whole number"),          # OverflowError in Streamlit's URL binding
    ({"K": "9" * 400}, "is too long to be a setting"),             # OverflowError in math.isfinite
    ({"teacher": "custom", "T": "1,2;3"}, "T='1,2;3' is malformed"),
])
def test_hostile_links_warn_and_leave_the_address_bar(params, fragment):
    at = _app({**FAST, **params})
    _assert_clean(at)
    assert any(fragment in text for text in _texts(at.warning))
    bad = [key for key in params if key != "teacher"]
    assert not any(key in at.query_params for key in bad)  # the address bar no longer holds the refused value
    assert len(_figures(at)) == 4


def test_a_superscript_digit_in_compare_is_ignored_by_name(with_shipped):
    at = _app({**CATALOGUE_LINK, "compare": "\u00b2,1"}, page="hessian-spectra")
    _assert_clean(at)
    assert any("Ignoring rows \u00b2" in text for text in _texts(at.warning))


def test_a_row_past_the_end_warns_and_the_chosen_row_is_ticked(with_shipped):
    at = _app({**CATALOGUE_LINK, "point": "99999"}, page="critical-points")
    _assert_clean(at)
    assert any("Row 99999 does not exist" in text for text in _texts(at.warning))
    assert any(h.value.startswith("Row 0:") for h in at.subheader)
    # The table ticks the row a link chose (it showed its overlaps with no row ticked).
    at = _app({**CATALOGUE_LINK, "point": "2"}, page="critical-points")
    assert json.loads(at.dataframe[0].proto.selection_default)["selection"]["rows"] == [2]


def test_a_share_string_opens_as_config():
    # RunConfig.to_share_string() was called a link but the app could not open it.
    from landscape import RunConfig, TeacherSpec

    config = RunConfig(K=3, M=2, lr=0.3, eta2=False, t_max=30.0, teacher=TeacherSpec(kind="equicorrelated", rho=0.2))
    at = _app({"config": config.to_share_string(), "runs": "1"})
    _assert_clean(at)
    assert at.sidebar.number_input(key="K").value == 3 and at.sidebar.number_input(key="M").value == 2
    assert at.sidebar.selectbox(key="teacher").value == "equicorrelated"
    assert at.sidebar.number_input(key="rho").value == pytest.approx(0.2)
    assert "config" not in at.query_params and not at.warning
    at = _app({**FAST, "config": "v1.damaged"})
    _assert_clean(at)
    assert any("config does not open a run" in text for text in _texts(at.warning))


def test_presentation_mode_by_link():
    at = _app({**FAST, "present": "1"})
    _assert_clean(at)
    figures = _figures(at)
    assert len(figures) == 4 and all(f["layout"]["font"]["size"] == 22 for f in figures)
    assert all(f["layout"]["height"] >= 760 for f in figures)
    assert any("stSidebar" in element.proto.body for element in at.get("html"))
    plain = _figures(_app(FAST))
    assert all("font" not in f["layout"] or "size" not in f["layout"]["font"] for f in plain)


def test_in_demo_mode_a_catalogue_over_the_work_budget_is_refused_before_it_starts(monkeypatch):
    # Issue 18: /critical-points?K=16&M=16&starts=200 offered to compute a catalogue of about 30 CPU s
    # (at d = 16; over 150 s at d = 1000 then), bounded only by the caps on K and starts. The search has
    # been compiled since: 17 CPU s at d = 1000 (estimated 1.7e10 operations), so the default budget offers
    # it (the cost model once still refused it, pricing a numpy call per batched step); a server with a
    # smaller budget refuses it before any work.
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    link = {"K": "16", "M": "16", "starts": "200", "tmax": "30"}
    at = _app(link, page="critical-points")
    assert not at.exception
    assert not at.error and [b for b in at.button if b.label == "Compute the catalogue"]  # nothing computed here
    monkeypatch.setenv("LANDSCAPE_MAX_OPERATIONS", "1e10")
    at = _app(link, page="critical-points")
    (error,) = _texts(at.error)
    assert error.startswith("Refused: a gradient flow catalogue of 200 starts at K = 16, M = 16 needs about")
    assert "LANDSCAPE_MAX_OPERATIONS" in error
    assert not [b for b in at.button if b.label == "Compute the catalogue"]


def test_in_demo_mode_a_continuation_over_the_work_budget_is_refused(monkeypatch):
    # K = M = 4 is within LANDSCAPE_MAX_BRANCH_K but its branch costs ~2e10 operations (31 CPU s
    # measured up to lr = 20); a server with a smaller budget refuses it before any work.
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    monkeypatch.setenv("LANDSCAPE_MAX_OPERATIONS", "1e9")
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in {"K": "4", "M": "4", "noise": "0.1", "eta2": "true", "tmax": "30", "runs": "1"}.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("views/learning_rate.py").run()
    assert not at.exception
    (error,) = _texts(at.error)
    assert error.startswith("Refused: continuing the global minimum in lr at K = 4, M = 4")
    assert not _figures(at)
