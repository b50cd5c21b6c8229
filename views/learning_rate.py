"""Learning rate: the branches of ODE fixed points of every minimum of the catalogue against lr (bifurcation
diagram; the global minimum's alone until the catalogue is there), the spectrum of a chosen point, and direct
SGD below and above the fold."""

import json

import streamlit as st

from landscape.catalogues.costs import Cost, branch_cost
from landscape.dashboard.bifurcation_figures import bifurcation_figure, eigenvalue_figure
from landscape.dashboard.figures import loss_figure, overlap_heatmaps_figure, presentation_figure
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
            st.session_state["bbranch"] = int(data[0])
            st.session_state["bpoint"] = int(data[1])
            return


def _diagram(branches, names, selected):
    events = [e.to_dict(i) for i, branch in enumerate(branches) for e in branch.events]
    figure = bifurcation_figure([branch.to_dict() for branch in branches], events, selected=selected, names=names)
    if st.session_state.get(common.PRESENT_KEY):  # this chart is clickable, so it does not go through common.chart
        figure = presentation_figure(figure)
    image = st.session_state.get("img", "png")
    config = {"displaylogo": False, "toImageButtonOptions": {"format": image, "filename": "bifurcation", "scale": 2}}
    st.plotly_chart(figure, key="bifurcation", theme="streamlit", config=config, on_select=_select_point,
                    selection_mode="points")
    branch = branches[selected[0]]
    folds = [e for e in branch.events if e.kind.code == "fold"]
    text = ("Solid: attractive fixed points (every eigenvalue of the ODE Jacobian has negative real part); dashed: "
            f"unstable. Selected branch ({names[selected[0]]}): {branch.message}.")
    changes = [e for e in branch.events if e.kind.code == "stability_change"]
    if folds:
        text += (f" It folds at lr = {folds[0].lr:.6f}: beyond it there is no fixed point near this minimum and SGD "
                 "escapes.")
    elif changes:  # the realisable minimum without label noise: no fold, it stops attracting
        text += f" Beyond lr = {changes[0].lr:.6f} SGD leaves it."  # the branch's message already says where
        folds = changes
    st.caption(text + " Click a point of a branch to show it below.")
    return folds


def _branches(current, config, lr_max):
    """The branches to draw and their legend names: every minimum of the catalogue when it is there, else the
    global minimum's alone (with the catalogue's button below)."""
    starts, seed, regime = common.catalogue_settings(current)
    catalogue = common.known_catalogue(current, regime)
    minima = 0 if catalogue is None else sum(p.kind.value == "minimum" for p in catalogue.points)
    if minima:
        one = branch_cost(config.K, config.M)
        over = current.caps.over_budget(f"continuing the catalogue's {minima} minima in lr at K = {config.K}, M = {config.M}",
                                        Cost(minima * one.operations, minima * one.bytes))
        if over:
            st.error(" ".join(over))
            return None, None
        with st.spinner("Continuing every minimum of the catalogue in lr..."):
            result = common.call(common.catalogue_branches, catalogue, config.to_json(), lr_max, (starts, seed, regime))
        if result is None:
            return None, None
        names = [_minimum_name(catalogue.points[i], i) for i in result.points]
        if result.branches:
            for index, reason in result.skipped.items():
                st.caption(f"{_minimum_name(catalogue.points[index], index)}: no branch ({reason}).")
            return list(result.branches), names
        if result.skipped:  # the global minimum alone would fail for the same reason: say it once
            index, reason = next(iter(result.skipped.items()))
            st.warning(f"No branch to draw: {_minimum_name(catalogue.points[index], index)}: {reason}.")
            return None, None
    with st.spinner("Continuing the fixed point in lr..."):
        branch = common.call(common.global_minimum_branch, config.to_json(), lr_max)
    if branch is None:
        return None, None
    with st.expander("Every minimum of the catalogue", expanded=False):
        st.caption("The diagram shows the global minimum's branch; with the catalogue of the sidebar's settings it "
                   "continues every minimum of it.")
        common.catalogue(current, regime, starts, seed, key="lr_catalogue")
    return [branch], ["global minimum"]


def _minimum_name(point, index):
    family = f", {point.family}" if point.family else ""
    return f"minimum {index} (L = {point.loss:.3g}{family})"


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
    # ``folds``: the fold, or where a branch without one stops attracting (the SGD run above it).
    with st.expander("Direct SGD at finite d: convergence below the fold, escape above it",
                     expanded=bool(st.session_state.get("lrsgd", st.query_params.get("lrsgd") == "true"))):
        left, right = st.columns(2)
        on = common.page_widget(PAGE, "lrsgd", left)
        d = common.page_widget(PAGE, "lrsgd_d", right)
        rates = [float(branch.lr[number])]
        if folds:
            rates.append(round(1.1 * folds[0].lr, 4))
        st.caption(f"One-pass SGD from point {number}'s overlaps at lr = " + " and ".join(f"{r:g}" for r in rates)
                   + ((" (10% above the fold)" if folds[0].kind.code == "fold" else
                       " (10% above where it stops attracting)") if folds else "") + f", d = {d}, up to t = {SGD_T_MAX:g}.")
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
    left, middle, right = st.columns(3)
    lr_max = common.page_widget(PAGE, "lrmax", left)
    chosen_branch = int(common.page_widget(PAGE, "bbranch", middle))
    chosen = int(common.page_widget(PAGE, "bpoint", right))
    if lr_max <= config.lr:
        st.error(f"Continue up to lr = {lr_max:g} must be above the sidebar's learning rate {config.lr:g}.")
        return
    over = current.caps.branch_violations(config) or current.caps.over_budget(
        f"continuing the global minimum in lr at K = {config.K}, M = {config.M}", branch_cost(config.K, config.M))
    if over:
        st.error(" ".join(over))
        return
    branches, names = _branches(current, config, lr_max)
    if branches is None:
        return
    chosen_branch = min(chosen_branch, len(branches) - 1)
    branch = branches[chosen_branch]
    number = min(chosen, len(branch.lr) - 1)
    folds = _diagram(branches, names, (chosen_branch, number))
    _point_details(branch, number)
    _sgd(current, config, branch, number, folds)
    result = {"branches": [b.to_dict() for b in branches],
              "events": [e.to_dict(i) for i, b in enumerate(branches) for e in b.events]}
    st.download_button("branches (JSON, as landscape bifurcation prints them)", json.dumps(result),
                       file_name="bifurcation.json", mime="application/json", icon=":material/download:")


main()
