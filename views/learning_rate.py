"""Learning rate: the branch of ODE fixed points of the global minimum against lr (bifurcation diagram),
the spectrum of a chosen point, and direct SGD below and above the fold."""

import json

import streamlit as st

from landscape.catalogues.costs import branch_cost
from landscape.dashboard.bifurcation_figures import bifurcation_figure, eigenvalue_figure
from landscape.dashboard.figures import loss_figure, overlap_heatmaps_figure
from landscape.dynamics.trajectory import FlowStatus
from views import common

PAGE = "learning-rate"
#: Horizon of the SGD runs (time = steps / d): long enough to see a run settle or escape.
SGD_T_MAX = 60.0


def _select_point():
    points = st.session_state["bifurcation"].selection.points
    for point in points:
        data = point.get("customdata")
        if data is not None and len(data) >= 2:
            st.session_state["bpoint"] = int(data[1])
            return


def _diagram(branch, selected):
    events = [e.to_dict(0) for e in branch.events]
    figure = bifurcation_figure([branch.to_dict()], events, selected=(0, selected), names=["global minimum"])
    image = st.session_state.get("img", "png")
    config = {"displaylogo": False, "toImageButtonOptions": {"format": image, "filename": "bifurcation", "scale": 2}}
    st.plotly_chart(figure, key="bifurcation", theme="streamlit", config=config, on_select=_select_point,
                    selection_mode="points")
    folds = [e for e in branch.events if e.kind.code == "fold"]
    text = (f"Solid: attractive fixed points (every eigenvalue of the ODE Jacobian has negative real part); dashed: "
            f"unstable. Branch: {branch.message}.")
    if folds:
        text += (f" The branch folds at lr = {folds[0].lr:.6f}: beyond it there is no fixed point near the global "
                 "minimum and SGD escapes.")
    st.caption(text + " Click a point of the branch to show it below.")
    return folds


def _point_details(branch, number):
    lr, loss = float(branch.lr[number]), float(branch.loss[number])
    verdict = "attractive" if branch.stable[number] else "unstable"
    st.subheader(f"Point {number}: lr = {lr:.5f}, L = {loss:.4e}, {verdict}")
    left, right = st.columns(2)
    with left:
        common.chart(overlap_heatmaps_figure(branch.Q[number], branch.R[number]), key="branch_heatmaps")
    with right:
        common.chart(eigenvalue_figure(branch.eigenvalues[number],
                                       title=f"ODE Jacobian eigenvalues (max Re λ = {branch.max_real_eigenvalue[number]:.3e})"),
                     key="branch_spectrum")


def _sgd(current, config, branch, number, folds):
    with st.expander("Direct SGD at finite d: convergence below the fold, escape above it",
                     expanded=bool(st.session_state.get("lrsgd", st.query_params.get("lrsgd") == "true"))):
        left, right = st.columns(2)
        on = common.page_widget(PAGE, "lrsgd", left)
        d = common.page_widget(PAGE, "lrsgd_d", right)
        rates = [float(branch.lr[number])]
        if folds:
            rates.append(round(1.1 * folds[0].lr, 4))
        st.caption(f"One-pass SGD from point {number}'s overlaps at lr = " + " and ".join(f"{r:g}" for r in rates)
                   + (" (10% above the fold)" if folds else "") + f", d = {d}, up to t = {SGD_T_MAX:g}.")
    if not on:
        return
    probe = config.replace(t_max=SGD_T_MAX)
    over = current.caps.violations(probe, sgd_d=d)
    if over:
        st.error(" ".join(over))
        return
    runs = []
    with st.spinner("Simulating one-pass SGD..."):
        for lr in rates:
            run = common.call(common.sgd_from_overlaps, config.to_json(), branch.Q[number].tolist(),
                              branch.R[number].tolist(), lr, int(d), 0, SGD_T_MAX)
            if run is None:
                return
            runs.append(run)
    labels = [f"SGD lr = {lr:.4g}: {'diverged' if run.status is FlowStatus.DIVERGED else 'bounded'}"
              for lr, run in zip(rates, runs)]
    common.chart(loss_figure(runs, labels), key="branch_sgd")
    st.caption(f"The branch's loss at the selected point is {float(branch.loss[number]):.4e}; SGD at finite d "
               "fluctuates around an attractive fixed point and runs away from an unstable one or past the fold.")


def main():
    st.title("Learning rate")
    current = common.state()
    if not common.ready(current):
        return
    config = current.config.replace(eta2=True)
    if not current.config.eta2:
        st.info("This page always includes the η² term of the ODE: without it the fixed points do not depend on lr.")
    left, right = st.columns(2)
    lr_max = common.page_widget(PAGE, "lrmax", left)
    chosen = int(common.page_widget(PAGE, "bpoint", right))
    if lr_max <= config.lr:
        st.error(f"Continue up to lr = {lr_max:g} must be above the sidebar's learning rate {config.lr:g}.")
        return
    over = current.caps.branch_violations(config) or current.caps.over_budget(
        f"continuing the global minimum in lr at K = {config.K}, M = {config.M}", branch_cost(config.K, config.M))
    if over:
        st.error(" ".join(over))
        return
    with st.spinner("Continuing the fixed point in lr..."):
        branch = common.call(common.global_minimum_branch, config.to_json(), lr_max)
    if branch is None:
        return
    number = min(chosen, len(branch.lr) - 1)
    folds = _diagram(branch, number)
    _point_details(branch, number)
    _sgd(current, config, branch, number, folds)
    result = {"branches": [branch.to_dict()], "events": [e.to_dict(0) for e in branch.events]}
    st.download_button("branch (JSON, as landscape bifurcation prints it)", json.dumps(result),
                       file_name="bifurcation.json", mime="application/json", icon=":material/download:")


main()
