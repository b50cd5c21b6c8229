"""Families: the hierarchy of critical points, and how often random starts reach each as K grows."""

import streamlit as st

from landscape.dashboard import leaf_counts, series_configs
from landscape.critical_points.families import family_tree
from landscape.dashboard.figures import family_figure, reachability_figure
from landscape.catalogues.reachability import reachability_curve
from views import common


def _hierarchy(catalogue):
    st.subheader("Family hierarchy")
    tree = family_tree([catalogue])
    size = common.page_widget("families", "size", horizontal=True)
    values = tree.values if size == "basin count" else leaf_counts(tree.ids, tree.parents)
    common.chart(family_figure(tree.ids, tree.labels, tree.parents, values, tree.colour), key="families")
    st.caption(
        "Left: the catalogue (K); middle: families, named by which teacher units the students recover, miss "
        "or split; right: the critical points, labelled by loss, kind and index. Click a box to zoom in. "
        "Colour: loss (lowest of a family). "
        + ("Box size: starts that ended there, so saddles (count 0) do not show; choose 'one per point' to see them."
           if size == "basin count" else "Every point counts one.")
    )


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
    starts, seed, regime = common.catalogue_settings(current)
    catalogue = common.catalogue(current, regime, starts, seed, key="compute_catalogue_families")
    if catalogue is not None and catalogue.points:
        _hierarchy(catalogue)
    _reachability(current, starts, seed, regime)


main()
