"""Hessian spectra: the exact spectrum of chosen critical points for a chosen input dimension d."""

import numpy as np
import pandas as pd
import streamlit as st

from landscape.catalogues.costs import spectrum_cost
from landscape.dashboard import parse_rows, setting
from landscape.dashboard.figures import spectrum_figure
from views import common


def _rows(text, count):
    """Row numbers in ``text`` (e.g. ``0,1,2``) that exist; the first three when none does.

    Rows that do not exist are named in a warning, unless ``text`` is the default (which asks
    for "the first three", however many there are).
    """
    wanted, ignored = parse_rows(text, count)
    if ignored and text != setting("compare").default:
        st.warning(f"Ignoring rows {', '.join(ignored)}: the catalogue has rows 0 to {count - 1}.")
    return wanted or list(range(min(3, count)))


def _summary(points, rows, spectra):
    return pd.DataFrame([{
        "row": row, "kind": point.kind.value, "loss": point.loss, "index": spectrum.index,
        "ODE attractive": None if point.stability is None else point.stability.attractive,
        "max Re λ (ODE)": np.nan if point.stability is None else point.stability.max_real_eigenvalue,
        "zero modes": spectrum.n_zero, "rotations": spectrum.n_symmetry_zero, "flat": spectrum.n_flat,
        "λ_min": spectrum.min_eigenvalue, "rank r": spectrum.rank,
    } for point, row, spectrum in zip(points, rows, spectra)])


def _eigenvalue_table(spectrum):
    return pd.DataFrame({
        "eigenvalue": spectrum.eigenvalues, "multiplicity": spectrum.multiplicities,
        "block": np.where(spectrum.bulk, "bulk", "span"),
    })


def main():
    st.title("Hessian spectra")
    current = common.state()
    if not common.ready(current):
        return
    starts, seed, regime = common.catalogue_settings(current)
    catalogue = common.catalogue(current, regime, starts, seed, key="compute_catalogue_spectra")
    if catalogue is None or not catalogue.points:
        return
    left, right = st.columns(2)
    d = common.page_widget("hessian-spectra", "hd", left)
    rows = _rows(common.page_widget("hessian-spectra", "compare", right), len(catalogue.points))
    points = [catalogue.points[row] for row in rows]
    T = catalogue.config.teacher_matrix()
    K, M = catalogue.config.K, catalogue.config.M
    cost = spectrum_cost(K, M, int(d))
    over = current.caps.over_budget(f"{len(points)} Hessian spectra at K = {K}, M = {M}, d = {d:,}",
                                    (len(points) * cost.operations, cost.bytes))
    if over:
        st.error(" ".join(over))
        return
    spectra = [common.call(common.spectrum, point.Q, point.R, T, d) for point in points]
    if any(spectrum is None for spectrum in spectra):
        return
    labels = [f"row {row}: {point.kind.value}, L = {point.loss:.3g}<br>λ_min = {spectrum.min_eigenvalue:.3g}"
              for row, point, spectrum in zip(rows, points, spectra)]
    common.chart(spectrum_figure(spectra, labels), key="spectra")
    st.caption(
        f"Exact spectrum of the {current.config.K}·d = {current.config.K * d:,}-dimensional Hessian at d = {d:,}: "
        "blue, the K r eigenvalues of the block on the span of the units; orange, the K bulk eigenvalues, each "
        "repeated d − r times (marker area grows with the log of the multiplicity). Red rings: the three smallest "
        "distinct eigenvalues. Rotations of the input space that fix the teacher are exact zero modes."
    )
    st.subheader("Summary")
    st.dataframe(_summary(points, rows, spectra), hide_index=True, width="stretch",
                 column_config={"loss": st.column_config.NumberColumn(format="%.4e"),
                                "λ_min": st.column_config.NumberColumn(format="%.4e"),
                                "max Re λ (ODE)": st.column_config.NumberColumn(format="%.3e")})
    st.caption("ODE attractive: the point is an attractive fixed point of the ODE of one-pass SGD. In the "
               "gradient-flow regime its linearisation is minus the Hessian's span block and minus the pair sums of "
               "its bulk eigenvalues, so it has the Hessian's signs: a minimum is attractive, a saddle is not.")
    st.subheader("Eigenvalues with multiplicities")
    tabs = st.tabs([label.replace("<br>", ", ") for label in labels])
    for tab, spectrum in zip(tabs, spectra):
        tab.dataframe(_eigenvalue_table(spectrum), hide_index=True, width="stretch",
                      column_config={"eigenvalue": st.column_config.NumberColumn(format="%.6e")})


main()
