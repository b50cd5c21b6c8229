"""Figure builders: right data in the right traces, labelled axes, no Streamlit, bad input refused."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from landscape.critical_points.hessian import hessian_spectrum
from landscape.dashboard import phase_path
from landscape.dashboard.figures import (
    LOSS_TITLE,
    TIME_TITLE,
    PortraitMarker,
    catalogue_figure,
    family_figure,
    loss_figure,
    overlap_heatmaps_figure,
    overlaps_figure,
    phase_portrait_figure,
    reachability_figure,
    spectrum_figure,
)
from landscape.dynamics.trajectory import FlowStatus, Trajectory


def _trajectory(K=3, M=2, n=50, method="ode", seed=0):
    rng = np.random.default_rng(seed)
    t = np.concatenate([[0.0], np.geomspace(1e-3, 100.0, n - 1)])
    R = rng.normal(size=(n, K, M))
    U = rng.normal(size=(n, K, 4))
    Q = U @ U.transpose(0, 2, 1)
    loss = np.exp(-t / 10.0)
    loss[-1] = 0.0  # exactly zero at the end: a log axis must drop it
    return Trajectory(t=t, Q=Q, R=R, T=np.eye(M), loss=loss, status=FlowStatus.CONVERGED, message="", method=method)


def _axis_titles(figure):
    layout = figure.layout
    return {name: layout[name].title.text for name in layout if name.startswith(("xaxis", "yaxis"))}


def test_figures_module_does_not_import_streamlit():
    code = "import sys, landscape.dashboard.figures, landscape.dashboard; print('streamlit' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_loss_figure_log_axes_and_drawable_points():
    ode, sgd = _trajectory(), _trajectory(method="sgd (d = 100)")
    figure = loss_figure([ode, sgd], ["ODE", "SGD"])
    assert figure.layout.xaxis.type == figure.layout.yaxis.type == "log"
    assert figure.layout.xaxis.title.text == TIME_TITLE and "steps / d" in TIME_TITLE
    assert figure.layout.yaxis.title.text == LOSS_TITLE
    first = figure.data[0]
    keep = (ode.t > 0) & (ode.loss > 0)
    assert np.array_equal(first.x, ode.t[keep]) and np.array_equal(first.y, ode.loss[keep])
    assert [trace.name for trace in figure.data] == ["ODE", "SGD"]
    assert figure.data[1].line.dash == "dot"
    with pytest.raises(ValueError, match="labels"):
        loss_figure([ode], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        loss_figure([])


def test_loss_ticks_per_decade_only_for_wide_ranges():
    wide = _trajectory()
    narrow = Trajectory(t=wide.t, Q=wide.Q, R=wide.R, T=wide.T, loss=np.linspace(0.2, 0.1, wide.t.size),
                        status=wide.status, message="", method="ode")
    assert loss_figure([wide]).layout.yaxis.dtick == 1
    # dtick "D2" labelled 2s and 5s by one digit ("5, 2, 10^-1, 5, 2"): every tick is written out now.
    axis = loss_figure([narrow]).layout.yaxis
    assert list(axis.tickvals) == pytest.approx([0.1, 0.2]) and list(axis.ticktext) == ["0.1", "0.2"]


def test_overlaps_figure_has_one_line_per_entry():
    run = _trajectory(K=3, M=2)
    figure = overlaps_figure(run)
    lines = [trace for trace in figure.data if trace.legendgroup != "teachers"]
    assert len(lines) == 3 * 2 + 3 * 4 // 2
    # R_km: colour = student, pattern = teacher (one colour per student hid which teacher a line was).
    patterns = {trace.hovertemplate.split("<br>")[0]: trace.line.dash for trace in lines}
    assert patterns["R[1,1]"] == patterns["R[3,1]"] != patterns["R[1,2]"] == patterns["R[3,2]"]
    assert [t.name for t in figure.data if t.legendgroup == "teachers"] == ["teacher 1", "teacher 2"]
    names = [trace.hovertemplate.split("<br>")[0] for trace in lines]
    assert "R[3,2]" in names and "Q[1,3]" in names and "Q[3,1]" not in names
    r32 = lines[names.index("R[3,2]")]
    assert np.array_equal(r32.y, run.R[run.t > 0, 2, 1])
    assert sum(bool(trace.showlegend) for trace in lines) == 3
    assert len(overlaps_figure(run, overlay=_trajectory(method="sgd")).data) == 2 * len(lines) + 2
    titles = _axis_titles(figure)
    assert titles["xaxis2"] == TIME_TITLE and titles["yaxis"] == "R_km" and titles["yaxis2"] == "Q_kl"


def test_heatmaps_with_time_slider():
    run = _trajectory(K=3, M=2, n=80)
    figure = overlap_heatmaps_figure(run.Q, run.R, run.t, n_frames=10)
    assert np.array_equal(figure.data[0].z, run.Q[-1]) and np.array_equal(figure.data[1].z, run.R[-1])
    assert 2 <= len(figure.frames) <= 11
    assert np.array_equal(figure.frames[0].data[1].z, run.R[0])
    assert np.array_equal(figure.frames[-1].data[0].z, run.Q[-1])
    times = [float(frame.name) for frame in figure.frames]
    assert times == sorted(times) and times[0] == 0.0
    slider = figure.layout.sliders[0]
    assert slider.active == len(slider.steps) - 1 == len(figure.frames) - 1
    colour = figure.layout.coloraxis
    assert colour.cmin == -colour.cmax and colour.cmax == pytest.approx(max(np.abs(run.Q).max(), np.abs(run.R).max()))
    titles = _axis_titles(figure)
    assert titles["xaxis"] == "student unit l" and titles["xaxis2"] == "teacher unit m" and titles["yaxis"] == "student unit k"


def test_heatmaps_of_one_point_and_bad_shapes():
    figure = overlap_heatmaps_figure(np.eye(2), np.ones((2, 3)))
    assert not figure.frames and not figure.layout.sliders
    with pytest.raises(ValueError, match="disagree"):
        overlap_heatmaps_figure(np.eye(2), np.ones((3, 3)))
    with pytest.raises(ValueError, match="times"):
        overlap_heatmaps_figure(np.ones((4, 2, 2)), np.ones((4, 2, 3)))


def test_phase_portrait_draws_paths_and_markers():
    runs = [_trajectory(seed=s) for s in range(2)]
    paths = [phase_path(run.R) for run in runs]
    markers = [PortraitMarker("saddle A", 0.3, 0.3, "saddle"), PortraitMarker("min", 1.0, 0.0, "minimum"),
               PortraitMarker("end", 0.9, 0.1, "end")]
    figure = phase_portrait_figure(paths, ["seed 0", "seed 1"], markers)
    lines = [trace for trace in figure.data if trace.name in ("seed 0", "seed 1")]
    assert np.array_equal(lines[1].x, paths[1].matched) and np.array_equal(lines[1].y, paths[1].other)
    symbols = {trace.name: trace.marker.symbol for trace in figure.data if trace.name and trace.name.startswith("fixed point")}
    assert symbols == {"fixed point: saddle": "x", "fixed point: minimum": "star", "fixed point: end": "circle"}
    assert all(_axis_titles(figure).values())
    with pytest.raises(ValueError, match="labels"):
        phase_portrait_figure(paths, ["one"])


def test_catalogue_scatter():
    frame = pd.DataFrame({"loss": [0.0, 0.02, 0.1, 0.3], "index": [0, 0, 3, 7], "kind": ["minimum", "minimum", "saddle",
                                                                                         "saddle"],
                          "count": [30, 5, 2, 1]})
    figure = catalogue_figure(frame, selected=2)
    by_name = {trace.name: trace for trace in figure.data}
    assert np.array_equal(by_name["saddle"].x, [4, 8]) and np.array_equal(by_name["minimum"].y, [0.0, 0.02])
    assert figure.layout.xaxis.type == "log"  # of index + 1
    assert by_name["minimum"].marker.size[0] > by_name["minimum"].marker.size[1]  # larger basin, larger marker
    assert list(by_name["selected (row 2)"].y) == [0.1]
    assert all(_axis_titles(figure).values())
    with pytest.raises(ValueError, match="count"):
        catalogue_figure(frame.drop(columns="count"))


def test_spectrum_figure_of_the_global_minimum():
    K, d = 3, 12
    spectrum = hessian_spectrum(np.eye(K), np.eye(K), np.eye(K), d)
    figure = spectrum_figure([spectrum, spectrum], ["global minimum", "again"])
    span, bulk = figure.data[0], figure.data[1]
    xs = np.concatenate([span.x, bulk.x])
    assert np.any(np.isclose(xs, 0.25 - 1 / (2 * np.pi)))  # published K-independent eigenvalue
    multiplicities = [int(text.split()[-1]) for text in list(span.text) + list(bulk.text)]
    assert sum(multiplicities) == 2 * K * d  # two rows, each the whole K d spectrum
    rings = [trace for trace in figure.data if trace.name == "3 smallest"]
    assert len(rings) == 2 and np.allclose(rings[0].x, spectrum.eigenvalues[:3])
    assert all(_axis_titles(figure).values())
    with pytest.raises(ValueError, match="labels"):
        spectrum_figure([spectrum], [])


def test_family_and_reachability_figures():
    icicle = family_figure(["all", "a", "b"], ["all", "global", "spurious"], ["", "all", "all"], [10, 7, 3], [0.01, 0.0, 0.02])
    assert icicle.data[0].type == "icicle" and list(icicle.data[0].parents) == ["", "all", "all"]
    assert icicle.data[0].branchvalues == "total" and list(icicle.data[0].marker.colors) == [0.01, 0.0, 0.02]
    with pytest.raises(ValueError, match="equal length"):
        family_figure(["a"], ["a"], [""], [1, 2], [0.0])
    K = [4, 5, 6]
    fractions = np.array([[0.9, 0.8, 0.6], [0.1, 0.2, 0.4]])
    figure = reachability_figure(K, fractions, fractions - 0.05, fractions + 0.1, ["global", "spurious"])
    assert np.allclose(figure.data[0].error_y.array, 0.1) and np.allclose(figure.data[1].error_y.arrayminus, 0.05)
    assert all(_axis_titles(figure).values())
    with pytest.raises(ValueError, match="shape"):
        reachability_figure(K, fractions[:, :2], fractions, fractions, ["global", "spurious"])


def test_heatmap_colours_neither_saturate_nor_wash_out():
    from landscape.dashboard.figures import colour_range

    # Q_11 = 1.59 must be inside the scale (it saturated at +-1).
    Q = np.array([[[1.59, 0.2], [0.2, 1.0]]] * 3)
    R = np.full((3, 2, 2), 0.5)
    assert colour_range(Q, R) == pytest.approx(1.59)
    # A diverged run: its last frames reach 4e5; the scale stays at the ordinary frames' 1.2.
    Q = np.stack([np.eye(2) * v for v in (1.0, 1.1, 1.2, 1.2, 4e5)])
    assert colour_range(Q, np.zeros((5, 2, 2))) == pytest.approx(1.2)


def test_a_single_family_equal_to_the_aggregate_stays_visible():
    # "spurious (all families)" equal to its one family hid under it: the aggregate is a wide band
    # below, the family a narrow line on top.
    fractions = np.array([[0.8, 0.7], [0.2, 0.3], [0.2, 0.3]])
    figure = reachability_figure([4, 5], fractions, fractions, fractions,
                                 ["global minimum", "spurious (all families)", "1 teacher missed"])
    aggregate, family = figure.data[1], figure.data[2]
    assert aggregate.line.width > 2 * family.line.width and aggregate.opacity < 1 and family.opacity == 1
    assert aggregate.marker.symbol != family.marker.symbol


def test_presentation_enlarges_text_lines_and_markers_of_a_copy():
    from landscape.dashboard.figures import presentation_figure

    run = _trajectory(K=2, M=2)
    figure = loss_figure([run])
    big = presentation_figure(figure)
    assert big.layout.font.size == 22 and big.layout.height >= 760
    assert big.data[0].line.width == pytest.approx(1.8 * figure.data[0].line.width)
    assert figure.layout.font.size is None  # the original is left as it was


def test_families_across_figure_marks_minima_and_draws_reached_fractions():
    from landscape.dashboard.family_figures import PROJECTOR_FONT, families_across_figure

    families = [
        {"name": "global minimum", "K": [4, 5], "loss": [0.0, 0.0], "kind": ["minimum", "minimum"],
         "fraction": [1.0, 0.9], "lower": [0.97, 0.85], "upper": [1.0, 0.94]},
        {"name": "type A", "K": [4, 5, 6], "loss": [0.028, 0.027, 0.025], "kind": ["saddle", "saddle", "minimum"],
         "fraction": [0.0, 0.0, 0.0], "lower": [0.0, 0.0, 0.0], "upper": [0.02, 0.02, 0.02]},
    ]
    figure = families_across_figure(families)
    names = [trace.name for trace in figure.data]
    assert names == ["global minimum", "global minimum", "type A"]  # type A caught no start: no fraction line
    type_a = figure.data[2]
    assert list(type_a.marker.color[:2]) == ["rgba(0,0,0,0)"] * 2 and type_a.marker.color[2] != "rgba(0,0,0,0)"
    fraction = figure.data[1]
    assert list(fraction.error_y.array) == pytest.approx([0.0, 0.04])
    assert list(fraction.error_y.arrayminus) == pytest.approx([0.03, 0.05])
    assert figure.layout.font.size == PROJECTOR_FONT
    with pytest.raises(ValueError, match="at least one"):
        families_across_figure([])
    with pytest.raises(ValueError, match="differ in length"):
        families_across_figure([{**families[0], "loss": [0.0]}])


def test_escape_figure_ends_each_flow_at_its_family():
    from landscape.dashboard.family_figures import escape_figure

    figure = escape_figure([{"label": "split 0, push +", "t": [0.0, 1.0, 10.0], "loss": [0.02, 0.01, 0.0],
                             "end": "global minimum", "end_loss": 0.0}])
    line, end = figure.data
    assert list(line.x) == [1.0, 2.0, 11.0] and end.text == ("global minimum",) and list(end.y) == [0.0]
    assert figure.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="equal length"):
        escape_figure([{"label": "x", "t": [0.0], "loss": [1.0, 2.0], "end": "", "end_loss": 0.0}])
