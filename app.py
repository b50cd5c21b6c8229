"""The landscape dashboard: router and shared sidebar.

Run with ``streamlit run app.py``. Every sidebar widget is bound to the URL query string, so the
address bar is always a share link for the current view; a link with malformed or out-of-range
parameters opens with the defaults for those and a warning saying which.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from landscape.dashboard import (
    PAGE_SETTINGS,
    PRESETS,
    SIDEBAR_SETTINGS,
    DemoCaps,
    apply_symmetric_edits,
    check_query,
    config_from_settings,
    format_matrix,
    link_from_share_string,
    parse_matrix,
    preset_values,
    query_string,
    resize_matrix_text,
    setting,
)
from views.common import PRESENT_KEY, STATE_KEY, DashboardState, start_compiler, widget

PAGES = {
    "flows": st.Page("views/flows.py", title="Flows", icon=":material/timeline:", url_path="flows", default=True),
    "critical-points": st.Page("views/critical_points.py", title="Critical points", icon=":material/scatter_plot:",
                               url_path="critical-points"),
    "hessian-spectra": st.Page("views/hessian_spectra.py", title="Hessian spectra", icon=":material/equalizer:",
                               url_path="hessian-spectra"),
    "landscape-map": st.Page("views/landscape_map.py", title="Landscape map", icon=":material/landscape:",
                             url_path="landscape-map"),
    "families": st.Page("views/families.py", title="Families", icon=":material/account_tree:", url_path="families"),
    "learning-rate": st.Page("views/learning_rate.py", title="Learning rate", icon=":material/speed:",
                             url_path="learning-rate"),
    "theory": st.Page("views/theory.py", title="Theory", icon=":material/menu_book:", url_path="theory"),
}
_WARNINGS = "_link_warnings"
_RESETS = "_pending_resets"


def _caps():
    try:
        return DemoCaps.from_env(), ""
    except ValueError as error:
        return DemoCaps(), f"Ignoring a demo-cap environment variable (default caps apply): {error}"


def _check_link(page, caps):
    """Warn about invalid link parameters; text ones are reset on a rerun (Streamlit drops the others).

    In demo mode a value over a cap is replaced by the cap, with a warning. A link is read when a
    session opens a page for the first time; later the widgets own the URL.

    A bound widget seeds itself from the query string the run *started* with, before any check of
    ours: ``?K=1e400`` raised OverflowError inside Streamlit's number_input (int(inf)). So a link we
    change (a refused value removed, a value over a cap or a ``?config=`` replaced) is written to
    ``st.query_params`` and the script reruns at once, before any widget exists: the rerun starts
    from the corrected query string (public API only; no Streamlit private is touched).
    """
    checked = st.session_state.setdefault("_link_checked", set())
    if page in checked:
        return
    checked.add(page)
    opened = "config" in st.query_params
    shared = _open_shared_config()
    check = check_query(st.query_params.to_dict(), SIDEBAR_SETTINGS + PAGE_SETTINGS[page])
    clamped, clamp_warnings = caps.clamp_link(check.values)
    for key, value in clamped.items():
        st.query_params[key] = str(value)
    if check.success and not clamped and not opened:
        return
    shown = st.session_state.setdefault(_WARNINGS, [])
    shown.extend(w for w in shared + check.warnings + clamp_warnings if w not in shown)
    for key in check.rejected:
        # Out of the address bar: it must not keep a value we refused.
        del st.query_params[key]
    texts = [key for key in check.rejected if setting(key).kind == "text"]
    if texts:
        st.session_state[_RESETS] = texts
    if clamped or check.rejected or opened:
        st.rerun()  # widgets are seeded from the corrected link, not the one the run started with


def _open_shared_config():
    """``?config=<RunConfig.to_share_string()>``: replace it by the settings it holds; warnings if any.

    The share string is what the Python API calls a link; the app now opens it. Parameters given
    next to it are overridden by the config's settings (the caller reruns so widgets see them).
    """
    text = st.query_params.get("config")
    if text is None:
        return ()
    params, warnings = link_from_share_string(text)
    del st.query_params["config"]
    for key, value in params.items():
        st.query_params[key] = value
    return warnings


def _apply_resets():
    for key in st.session_state.pop(_RESETS, []):
        st.session_state[key] = setting(key).default


def _apply_preset(name):
    for key, value in preset_values(name).items():
        st.session_state[key] = value
    st.session_state.pop(_WARNINGS, None)


def _resize_custom_teacher():
    if st.session_state.get("teacher") == "custom":
        st.session_state["T"] = resize_matrix_text(st.session_state.get("T", ""), int(st.session_state["M"]))


def _widget(key, container=st.sidebar, **extra):
    return widget(setting(key), container, **extra)


def _matrix_edited(editor_key, base):
    edits = st.session_state[editor_key].get("edited_rows", {})
    st.session_state["T"] = format_matrix(apply_symmetric_edits(base, edits))


def _matrix_editor(M):
    """Grid editor of a custom teacher matrix above its text form (the one in the link).

    Grid edits are mirrored across the diagonal, so T stays symmetric, and written to the text.
    """
    grid = st.sidebar.container()
    text = str(_widget("T")).strip()
    try:
        base = parse_matrix(text) if text else np.eye(M)
    except ValueError:
        return
    if base.shape != (M, M):
        return
    labels = [str(i) for i in range(1, M + 1)]
    editor_key = f"T_editor_{abs(hash(format_matrix(base)))}"
    # Narrow columns with two decimals: at M = 4 the default width cut the 4th column off the sidebar.
    columns = {label: st.column_config.NumberColumn(label, format="%.2f", width=48 if M <= 5 else 40) for label in labels}
    grid.data_editor(pd.DataFrame(base, columns=labels, index=labels), key=editor_key, num_rows="fixed",
                     on_change=_matrix_edited, args=(editor_key, base), width="stretch", column_config=columns)
    grid.caption("Edits are mirrored across the diagonal. T must be positive semi-definite.")


def _sidebar():
    st.sidebar.title("landscape")
    st.sidebar.caption("Loss landscape and SGD dynamics of two-layer ReLU networks, exactly.")
    with st.sidebar.expander("Lecture presets", expanded=True):
        for preset in PRESETS:
            st.button(preset.name, help=preset.description, on_click=_apply_preset, args=(preset.name,), width="stretch")
    st.sidebar.subheader("Network")
    left, right = st.sidebar.columns(2)
    _widget("K", left)
    _widget("M", right, on_change=_resize_custom_teacher)
    teacher = _widget("teacher", on_change=_resize_custom_teacher)
    if teacher in ("equicorrelated", "block"):
        _widget("rho")
    if teacher == "block":
        _widget("rho_between")
        _widget("blocks")
    if teacher == "random":
        _widget("tseed")
    if teacher == "custom":
        _matrix_editor(int(st.session_state["M"]))
    st.sidebar.subheader("Training")
    _widget("lr")
    _widget("eta2")
    _widget("noise")
    st.sidebar.subheader("Initialisation")
    _widget("scale")
    left, right = st.sidebar.columns(2)
    _widget("d", left)
    _widget("seed", right)
    _widget("tmax")
    with st.sidebar.expander("Catalogue (critical points, spectra, families)"):
        for key in ("starts", "cseed", "regime"):
            _widget(key, st)
    return {item.key: st.session_state.get(item.key, item.default) for item in SIDEBAR_SETTINGS}


def _state(values, caps):
    try:
        config = config_from_settings(values)
    except ValueError as error:
        return DashboardState(values=values, config=None, error=str(error), caps=caps)
    return DashboardState(values=values, config=config, caps=caps, over_cap=caps.violations(config))


def _share(box, current, page):
    with box.container():
        page_values = {item.key: st.session_state.get(item.key, item.default) for item in PAGE_SETTINGS[page]}
        query = "&".join(q for q in (query_string(current.values), query_string(page_values, PAGE_SETTINGS[page])) if q)
        base = st.context.url or f"/{page}"
        st.code(base + (f"?{query}" if query else ""), language=None, wrap_lines=True)
        st.caption("The address bar holds the same link: every setting is in it. Add &present=1 for a "
                   "projector (no sidebar, larger text and figures).")
        if current.config is not None:
            st.download_button("config (JSON)", json.dumps(current.config.to_dict(), indent=2), file_name="config.json",
                               mime="application/json", icon=":material/download:", width="stretch")
        if current.caps.enabled:
            st.caption(current.caps.summary())


#: Presentation mode: no sidebar, larger text (figures are enlarged by views.common.chart).
_PRESENTATION_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
header[data-testid="stHeader"] {display: none !important;}
.stApp, .stMarkdown p, .stCaption, [data-testid="stMetricValue"], .stDataFrame {font-size: 1.35rem !important;}
[data-testid="stWidgetLabel"] p, [data-testid="stExpander"] summary p {font-size: 1.35rem !important;}
h1 {font-size: 3rem !important;} h2, h3 {font-size: 2.1rem !important;}
.block-container {padding-top: 1.5rem !important; max-width: 100% !important;}
/* One figure per screen: side-by-side columns stack, each full width. */
[data-testid="stHorizontalBlock"] {flex-direction: column !important;}
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {width: 100% !important; flex: 1 1 100% !important;}
</style>"""


def _presentation():
    """``?present=1`` (by link): sidebar hidden, larger fonts and markers, figures one screen high."""
    on = str(st.query_params.get("present", "")).strip().lower() in ("1", "true", "yes", "on")
    st.session_state[PRESENT_KEY] = on
    if on:
        st.html(_PRESENTATION_CSS)


def main():
    st.set_page_config(page_title="landscape", page_icon="⛰️", layout="wide")
    _presentation()
    start_compiler()  # in the background: pages never wait for numba
    navigation = st.navigation(list(PAGES.values()))
    page = next((key for key, item in PAGES.items() if item is navigation), "flows")
    _apply_resets()
    caps, caps_problem = _caps()
    _check_link(page, caps)
    values = _sidebar()
    if st.session_state.get(_RESETS):
        st.rerun()
    if caps_problem:
        st.warning(caps_problem)
    if st.session_state.get(_WARNINGS):
        st.warning("\n\n".join(st.session_state[_WARNINGS]), icon=":material/link_off:")
        st.button("Dismiss", key="_dismiss", on_click=lambda: st.session_state.pop(_WARNINGS, None))
    current = _state(values, caps)
    st.session_state[STATE_KEY] = current
    st.sidebar.subheader("Share and export")
    _widget("img", horizontal=True)
    share_box = st.sidebar.empty()
    navigation.run()
    _share(share_box, current, page)


main()
