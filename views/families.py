"""Families: the hierarchy of critical points across widths, adding a student, and reachability."""

import pandas as pd
import streamlit as st

from landscape.catalogues.costs import add_student_cost
from landscape.catalogues.reachability import reachability_curve
from landscape.catalogues.widths import families_across_widths
from landscape.critical_points.embedding import add_student
from landscape.critical_points.families import family_tree
from landscape.dashboard import leaf_counts, series_configs, setting
from landscape.dashboard.catalogues import leading_families
from landscape.dashboard.family_figures import escape_figure, families_across_figure
from landscape.dashboard.figures import family_figure, reachability_figure, spectrum_figure
from views import common

_OFFSET = {"K = M": 0, "K = M + 1": 1}


@st.cache_data(max_entries=8, show_spinner=False)
def _across(stamp, _catalogues):
    """Families across widths of the given catalogues (``stamp``: their keys, the cache key)."""
    return families_across_widths(_catalogues)


@st.cache_data(max_entries=16, show_spinner=False)
def _add_student(Q, R, T):
    return add_student(Q, R, T, trajectories=True)


def _series_catalogues(series):
    """The shipped sweep's gradient-flow catalogues of one series (K = M or K = M + 1), by K."""
    offset = _OFFSET[series]
    found = [c for c in common.sweep_catalogues().values()
             if c.regime == "gradient_flow" and c.config.K - c.config.M == offset]
    return sorted(found, key=lambda c: c.config.K)


def _across_widths(catalogues, series):
    st.subheader("Families across widths")
    stamp = tuple((c.config.K, c.config.M, c.starts, c.seed) for c in catalogues)
    across = common.call(_across, stamp, catalogues)
    if across is None:
        return None
    saddles = common.page_widget("families", "fsaddles")
    candidates = [f.to_dict() for f in across.families if saddles or "minimum" in f.kind]
    shown = leading_families(candidates)
    title = "student units K (= teacher units M)" if series == "K = M" else "student units K (= M + 1)"
    common.chart(families_across_figure(shown, x_title=title), key="families_across")
    starts = sorted({c.starts for c in catalogues})
    st.caption(
        f"Each line is one family, named by its symmetry (the same name at every K). Top: the family's lowest loss; "
        "filled markers are minima, open ones saddles (type A is a saddle up to K = 5 and a minimum from K = 6). "
        f"Bottom: fraction of the {'/'.join(map(str, starts))} random starts per width (Safran & Shamir's protocol) "
        "ending in the family, with 95% Wilson intervals; families no start reached are not drawn there. "
        "Same numbers: `landscape families --store assets/sweep_default --where K-M="
        f"{_OFFSET[series]}`."
        + (f" Shown: the {len(shown)} families that catch the most starts, of {len(candidates)} (the others: that "
           "command)." if len(shown) < len(candidates) else "")
    )
    return across


def _hierarchy(catalogues, key):
    st.subheader("Family hierarchy")
    tree = family_tree(catalogues)
    size = common.page_widget("families", "size", horizontal=True)
    values = tree.values if size == "basin count" else leaf_counts(tree.ids, tree.parents)
    common.chart(family_figure(tree.ids, tree.labels, tree.parents, values, tree.colour), key=key)
    st.caption(
        "Left: the catalogue (K); middle: families; right: the critical points, labelled by loss, kind and index. "
        "Click a box to zoom in. Colour: loss (lowest of a family). "
        + ("Box size: starts that ended there, so saddles (count 0) do not show; choose 'one per point' to see them. "
           if size == "basin count" else "Every point counts one. ")
        + "An icicle rather than a sunburst: family names are long, and an icicle keeps them horizontal and large "
        "enough to read on a projector, where a sunburst bends them along thin arcs."
    )


def _split_table(result):
    rows = []
    for point in result.points:
        ends = sorted({(round(e.loss, 9), e.family) for e in point.escapes})
        rows.append({"split student": point.split_unit, "orbit size": point.orbit_size, "loss": point.loss,
                     "gradient norm": point.gradient_norm, "index": point.index, "smallest eigenvalue": point.min_eigenvalue,
                     "kind": "saddle" if point.is_saddle else "minimum",
                     "escapes end at": "; ".join(f"{family} (L = {loss:.6g})" for loss, family in ends) or "-"})
    return pd.DataFrame(rows)


def _add_a_student(current, across, catalogues):
    st.subheader("Add a student")
    by_K = {c.config.K: c for c in catalogues}
    columns = st.columns([1, 3])
    K = common.page_widget("families", "addk", columns[0])
    catalogue = by_K.get(K)
    if catalogue is None:
        st.info(f"No catalogue of width K = {K} in this series; widths: {', '.join(map(str, sorted(by_K)))}.",
                icon=":material/info:")
        return
    minima = [f.name for f in across.families if K in f.K.tolist() and f.kind[f.K.tolist().index(K)] == "minimum"]
    wanted = st.query_params.get("addfam", setting("addfam").default)
    if wanted not in minima:
        st.warning(f"No minimum of family {wanted!r} at K = {K}; showing {minima[0]!r}.")
        wanted = minima[0]
    if st.session_state.get("addfam_pick") not in minima:
        st.session_state["addfam_pick"] = wanted
    family = columns[1].selectbox("minimum to add a student to", minima, key="addfam_pick",
                                  help="The families with a minimum at this width (lowest-loss point of the family).")
    st.query_params["addfam"] = family  # the share link carries the selection
    T = catalogue.config.teacher_matrix()
    point = next(f for f in across.families if f.name == family)
    chosen = min((p for p in catalogue.points if p.kind.value == "minimum"
                  and abs(p.loss - point.loss[point.K.tolist().index(K)]) < 1e-12), key=lambda p: p.loss)
    over = current.caps.over_budget(f"adding a student to a minimum at K = {K}, M = {catalogue.config.M}",
                                    add_student_cost(K, catalogue.config.M))
    if over:
        st.error(" ".join(over))
        return
    with st.spinner(f"Splitting each student of the K = {K} minimum and following the escapes (seconds)..."):
        result = common.call(_add_student, chosen.Q, chosen.R, T)
    if result is None:
        return
    st.dataframe(_split_table(result), hide_index=True, width="stretch", column_config={
        "loss": st.column_config.NumberColumn(format="%.6g"), "gradient norm": st.column_config.NumberColumn(format="%.1e"),
        "smallest eigenvalue": st.column_config.NumberColumn(format="%.4g")})
    st.caption(
        f"Splitting a student u into (u/2, u/2) keeps the function, so each split is a critical point of width K + 1 = "
        f"{K + 1} at the same loss ({result.loss:.6g}); one split per orbit of students. {result.message}. "
        "Escapes: gradient flow from the split saddle pushed both ways along its most negative Hessian direction, "
        "Newton-polished to a certified critical point."
    )
    labels = [f"split student {p.split_unit} (index {p.index})" for p in result.points]
    common.chart(spectrum_figure([p.spectrum for p in result.points], labels), key="split_spectra")
    paths = [{"label": f"split {p.split_unit}, push {'+' if e.direction > 0 else '-'}", "t": e.t, "loss": e.loss_path,
              "end": e.family, "end_loss": e.loss} for p in result.points for e in p.escapes if e.t.size]
    if paths:
        common.chart(escape_figure(paths), key="escapes")
        st.caption("Loss along each escape flow (time + 1 on a log axis, so the start shows); stars: where they end.")
    else:
        st.caption("Every split point is a minimum: no escape.")


def _reachability(current, starts, seed, regime):
    st.subheader("Reachability as the networks grow")
    columns = st.columns([3, 2, 1, 1])
    series = common.page_widget("families", "series", columns[0], horizontal=True)
    dims = common.page_widget("families", "dims", columns[1], horizontal=True)
    kmin = common.page_widget("families", "kmin", columns[2])
    kmax = common.page_widget("families", "kmax", columns[3])
    configs = common.call(series_configs, current.config, series, kmin, kmax, d_equals_m=dims == "d = M")
    if configs is None:
        return
    catalogues = common.catalogue_series(current, configs, regime, starts, seed, key="compute_reachability")
    if catalogues is None:
        return
    curve = reachability_curve(catalogues, parameter="K")
    # Global and all-spurious always; other outcomes (single families, saddles, failures) when they occur.
    shown = [c for c in range(len(curve.labels)) if c < 2 or curve.fractions[c].any()]
    widths = [config.M for config in configs] if series != "M fixed" else [config.K for config in configs]
    title = {"K = M": "teacher units M (= student units K)", "K = M + 1": "teacher units M (student units K = M + 1)"}
    common.chart(reachability_figure(widths, curve.fractions[shown], curve.lower[shown], curve.upper[shown],
                                     [curve.labels[c] for c in shown], x_title=title.get(series, "student units K")),
                 key="reachability")
    fixed = series if series != "M fixed" else f"M = {current.config.M}"
    start = "starts drawn in d = M" if dims == "d = M" else f"starts drawn in d = {current.config.init.d}"
    st.caption(
        f"Fraction of the random starts ({fixed}, {start}, {regime.replace('_', ' ')}) whose dynamics ended at the global "
        "minimum, at a spurious minimum (all families together, then family by family), at a saddle or nowhere; "
        "error bars: 95% Wilson intervals. Spurious minima are rare for small K: resolving them takes thousands "
        "of starts (Safran & Shamir 2018), which is what the shipped sweep is for."
    )
    frame = curve.to_frame()
    st.download_button("reachability (CSV)", frame.to_csv(index=False), file_name="reachability.csv", mime="text/csv",
                       icon=":material/download:")


def main():
    st.title("Families")
    current = common.state()
    if not common.ready(current):
        return
    series = common.page_widget("families", "fseries", horizontal=True)
    catalogues = _series_catalogues(series)
    if catalogues:
        across = _across_widths(catalogues, series)
        _hierarchy(catalogues, key="families")
        if across is not None:
            _add_a_student(current, across, catalogues)
    else:
        st.info("No shipped sweep found (assets/sweep_default, or LANDSCAPE_SWEEP): showing the sidebar's catalogue.",
                icon=":material/info:")
    starts, seed, regime = common.catalogue_settings(current)
    if not catalogues:
        catalogue = common.catalogue(current, regime, starts, seed, key="compute_catalogue_families")
        if catalogue is not None and catalogue.points:
            _hierarchy([catalogue], key="families")
    _reachability(current, starts, seed, regime)


main()
