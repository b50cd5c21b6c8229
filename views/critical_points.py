"""Critical points: the catalogue as a sortable table, loss against index, and the overlaps of one point."""

import json

import streamlit as st

from landscape.dashboard.figures import catalogue_figure, overlap_heatmaps_figure
from views import common

# The identifying columns first (row, kind, loss, index, family, basins), then the other numbers.
# At 1400 px with the sidebar open not every column fits (the ODE-stability columns were added): the
# family name and the basin count stay in view, the rest scroll (and the selected row's details show
# them all). "row" is the number the links and the "selected point (row)" widget use.
COLUMNS = {
    "row": st.column_config.NumberColumn("row", width=40, help="Row number, as in 'selected point (row)' and the downloads"),
    "kind": st.column_config.TextColumn("kind", width=72),
    "loss": st.column_config.NumberColumn("loss", format="%.3e", width=82, help="L = ½E[(f − f*)²]"),
    "index": st.column_config.NumberColumn("index", width=52, help="Negative Hessian eigenvalues at this d, with multiplicity"),
    "family": st.column_config.TextColumn("family", width="large"),
    "count": st.column_config.NumberColumn("basins", width=58, help="Basin count: random starts that ended here"),
    "attractive": st.column_config.CheckboxColumn(
        "ODE attr.", width=62, help="Attractive fixed point of the ODE of one-pass SGD (every eigenvalue of its "
        "linearisation has negative real part, exact zero modes aside); gradient flow: from the Hessian"),
    "max_real_eigenvalue": st.column_config.NumberColumn(
        "max Re λ", format="%.1e", width=72, help="Largest real part of the ODE linearisation's eigenvalues "
        "(per unit lr in the gradient-flow regime)"),
    "n_zero": st.column_config.NumberColumn("zero", width=50,
                                            help="Zero modes: zero eigenvalues (rotations and flat directions)"),
    "orbit_size": st.column_config.NumberColumn("orbit", width=52, help="Orbit size: distinct copies under the symmetries"),
    "min_eigenvalue": st.column_config.NumberColumn("λ_min", format="%.2e", width=80, help="Smallest Hessian eigenvalue"),
    "gradient_norm": st.column_config.NumberColumn("|∇L|", format="%.0e", width=62, help="Gradient norm"),
}


def _select_row():
    rows = st.session_state["table"].selection.rows
    if rows:
        st.session_state["point"] = int(rows[0])


def _details(point, number, catalogue):
    st.subheader(f"Row {number}: {point.kind.value}, L = {point.loss:.4e}")
    metrics = st.columns(5)
    metrics[0].metric("index", point.index)
    metrics[1].metric("zero modes", point.n_zero, help=f"{point.n_symmetry_zero} of them are rotations of the input space")
    metrics[2].metric("basin count", f"{point.count} / {catalogue.starts}")
    metrics[3].metric("λ_min", "≈ 0" if abs(point.min_eigenvalue) < 1e-10 else f"{point.min_eigenvalue:.3g}",
                      help=f"Smallest Hessian eigenvalue at d = {catalogue.d}: {point.min_eigenvalue:.3e}")
    if point.stability is not None:
        metrics[4].metric("ODE fixed point", "attractive" if point.stability.attractive else "unstable",
                          help=f"Largest real part of the ODE linearisation's eigenvalues: "
                               f"{point.stability.max_real_eigenvalue:.3e}"
                               + (" (per unit lr)" if catalogue.regime == "gradient_flow"
                                 else f" at lr = {catalogue.config.lr:g}"))
    st.caption(f"Family: {point.family}. Orbit size {point.orbit_size}; found by {' and '.join(point.found_by)}; "
               f"|∇L| = {point.gradient_norm:.1e}; spectrum at d = {catalogue.d}."
               + (f" Flat directions: {point.manifold.description}." if point.manifold is not None else ""))
    common.chart(overlap_heatmaps_figure(point.Q, point.R), key="point_heatmaps")


def main():
    st.title("Critical points")
    current = common.state()
    if not common.ready(current):
        return
    starts, seed, regime = common.catalogue_settings(current)
    catalogue = common.catalogue(current, regime, starts, seed, key="compute_catalogue")
    if catalogue is None or not catalogue.points:
        if catalogue is not None:
            st.warning(f"No critical point found: {catalogue.message}.")
        return
    frame = catalogue.to_frame()
    frame.insert(0, "row", range(len(frame)))
    st.subheader("Catalogue")
    table = st.container()
    left, right = st.columns([2, 3])
    with left:
        st.caption("Click a column header to sort, a row to show its overlaps. Rows are numbered from 0 as in the downloads.")
        number = common.page_widget("critical-points", "point")
        if number >= len(frame):
            # A link's row past the end used to show the last row silently.
            st.warning(f"Row {number} does not exist (the catalogue has rows 0 to {len(frame) - 1}); showing row 0.")
            number = 0
        # The row chosen by a link (or the widget) is ticked in the table too.
        table.dataframe(frame[list(COLUMNS)], column_config=COLUMNS, on_select=_select_row, hide_index=True,
                        selection_mode="single-row", selection_default={"selection": {"rows": [number]}},
                        key="table", height=min(420, 38 + 35 * len(frame)), width="stretch")
    with right:
        st.subheader("Loss against index")
        common.chart(catalogue_figure(frame, selected=number), key="scatter")
        st.caption("Marker area grows with the basin count (starts that ended there); ansatz saddles have count 0.")
    _details(catalogue.points[number], number, catalogue)
    left, right = st.columns(2)
    left.download_button("catalogue (CSV)", frame.drop(columns="row").to_csv(index=False), file_name="catalogue.csv",
                         mime="text/csv",
                         icon=":material/download:", width="stretch")
    right.download_button("catalogue (JSON, with Q, R and spectra)", json.dumps(catalogue.to_dict()),
                          file_name="catalogue.json", mime="application/json", icon=":material/download:", width="stretch")


main()
