"""Flows: the ODE of one-pass SGD in overlap space, with an optional direct SGD simulation."""

import streamlit as st

from landscape.catalogues.costs import flow_cost
from landscape.dashboard import phase_path, phase_point
from landscape.dashboard.figures import (
    PortraitMarker,
    loss_figure,
    overlap_heatmaps_figure,
    overlaps_figure,
    phase_portrait_figure,
)
from landscape.dashboard.run_summary import loss_curve_caption
from views import common

#: The lowest critical points of a catalogue that the phase portrait marks.
_MAX_CATALOGUE_MARKERS = 12


def _status(run):
    text = f"{run.method}: {run.message}; final loss {run.loss[-1]:.3e}."
    if run.status.code in ("diverged", "failed"):
        st.warning(text, icon=":material/warning:")
    else:
        st.caption(text)


def _fixed_point_marker(point, config):
    position = phase_point(point.R)
    label = f"unspecialised fixed point, L = {point.loss:.4f}"
    if point.index is None:
        return PortraitMarker(label, float(position.matched[0]), float(position.other[0]), "end")
    return PortraitMarker(f"{label}, index {point.index} at d = {config.init.d}", float(position.matched[0]),
                          float(position.other[0]), "minimum" if point.is_minimum else "saddle")


def _end_markers(runs, seeds):
    markers = []
    for run, seed in zip(runs, seeds):
        if run.success:
            end = phase_path(run.R)
            markers.append(PortraitMarker(f"end of seed {seed}: L = {run.loss[-1]:.3g}", float(end.matched[-1]),
                                          float(end.other[-1]), "end"))
    return markers


def _catalogue_markers(current):
    """Critical points of the catalogue of these settings, if one is at hand (gradient flow only)."""
    config = current.config
    catalogue = None if config.eta2 else common.known_catalogue(current, "gradient_flow")
    if catalogue is None:
        return []
    markers = []
    for point in catalogue.points[:_MAX_CATALOGUE_MARKERS]:
        position = phase_point(point.R)
        markers.append(PortraitMarker(f"catalogue: {point.kind.value}, L = {point.loss:.4g}, index {point.index}",
                                      float(position.matched[0]), float(position.other[0]), point.kind.value))
    return markers


def _phase_portrait(current, runs, seeds):
    config = current.config
    paths = [phase_path(run.R) for run in runs]
    markers = _end_markers(runs, seeds) + _catalogue_markers(current)
    point = common.call(common.symmetric_fixed_point, config.to_json())
    if point is not None:
        markers.append(_fixed_point_marker(point, config))
    common.chart(phase_portrait_figure(paths, [f"seed {s}" for s in seeds], markers), key="portrait")
    st.caption(
        "Each run is reduced to two numbers: every student unit k is matched to one teacher unit π(k) "
        "(the assignment maximising the overlaps at the end of that run); x is the mean of the matched "
        "overlaps R_k,π(k), y the mean of all other entries of R. Unspecialised states, where each student "
        "overlaps all teachers alike, lie on the dashed diagonal; the global minimum of an orthonormal teacher "
        "is (1, 0). Circles: converged end points (fixed points). Red marks: critical points (stars minima, crosses "
        "saddles): the unspecialised fixed point reached from a permutation-symmetric start (orthonormal teacher), "
        "classified by its exact Hessian, and the catalogue's points once it has been computed (Critical points page)."
    )


def _downloads(run, overlay):
    columns = st.columns(2)
    columns[0].download_button("trajectory (CSV)", run.to_frame().to_csv(index=False), file_name="trajectory_ode.csv",
                               mime="text/csv", icon=":material/download:", help="Indices in the column names start at 0.")
    if overlay is not None:
        columns[1].download_button("SGD trajectory (CSV)", overlay.to_frame().to_csv(index=False),
                                   file_name="trajectory_sgd.csv", mime="text/csv", icon=":material/download:")


def _sgd_overlay(current, config):
    with st.expander("Direct SGD overlay", expanded=bool(st.session_state.get("sgd"))):
        left, middle, right = st.columns(3)
        on = common.page_widget("flows", "sgd", left)
        d = common.page_widget("flows", "sgd_d", middle)
        seed = common.page_widget("flows", "sgd_seed", right)
    if not on:
        return None
    over = current.caps.violations(config, sgd_d=d)
    if over:
        st.error(" ".join(over))
        return None
    steps = int(round(config.t_max * d))
    with st.spinner(f"Simulating one-pass SGD: {steps:,} steps at d = {d}..."):
        return common.call(common.sgd, config.to_json(), d, seed)


def _over_budget(current, runs):
    """Why ``runs`` flows of the sidebar's config are over the demo's budget (empty if they are not)."""
    config = current.config
    return current.caps.over_budget(f"{runs} ODE flow{'s' if runs > 1 else ''} at K = {config.K}, M = {config.M}"
                                    + (" with the η² term" if config.eta2 else ""), flow_cost(config, runs))


def main():
    st.title("Flows")
    current = common.state()
    if not common.ready(current):
        return
    config = current.config
    st.caption(
        f"K = {config.K} students, M = {config.M} teachers ({config.teacher.kind}), learning rate {config.lr:g}, "
        f"{'with' if config.eta2 else 'without'} the η² term, noise {config.noise:g}, t_max = {config.t_max:g}."
    )
    over = _over_budget(current, 1)
    if over:
        st.error(" ".join(over))
        return
    spinner = ("Integrating the ODE with the η² term (a second or two if it converges onto the teacher)..."
               if config.eta2 else "Integrating the ODE...")
    with st.spinner(spinner):
        run = common.call(common.flow, config.to_json())
    if run is None:
        return
    _status(run)
    common.solver_note()
    overlay = _sgd_overlay(current, config)
    if overlay is not None:
        _status(overlay)
    left, right = st.columns(2)
    with left:
        st.subheader("Loss")
        common.chart(loss_figure([run] + ([overlay] if overlay is not None else []),
                                    ["ODE (d → ∞)"] + ([overlay.method] if overlay is not None else [])), key="loss")
        st.caption(f"ODE: {loss_curve_caption(run)}")
        st.subheader("Overlaps over time")
        common.chart(overlaps_figure(run, overlay), key="overlaps")
        if overlay is not None:
            st.caption("Solid: ODE (d → ∞). Dotted: one-pass SGD at finite d, started from the same overlaps "
                       "(embedded in d dimensions); the gap is the finite-d fluctuation, of order 1/√d."
                       + ("" if config.eta2 else " With the η² term off the ODE is gradient flow, while SGD "
                          "keeps its finite-learning-rate effect (Q_kk grows): switch the η² term on to compare "
                          "like with like."))
    with right:
        st.subheader("Phase portrait")
        runs_count = common.page_widget("flows", "runs")
        seeds = [config.init.seed + i for i in range(runs_count)]
        configs = [common.with_seed(config, seed) for seed in seeds]
        over = _over_budget(current, runs_count)
        runs = None if over else common.call(common.progress_runs, configs, "Runs for the phase portrait")
        if over:
            st.error(" ".join(over))
        if runs is not None:
            _phase_portrait(current, runs, seeds)
        st.subheader("Overlap matrices")
        common.chart(overlap_heatmaps_figure(run.Q, run.R, run.t), key="heatmaps")
        st.caption("Drag the slider (or press ▶) to move through time; rows and columns are numbered from 1.")
    _downloads(run, overlay)


main()
