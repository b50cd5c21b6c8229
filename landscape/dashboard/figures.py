"""Plotly figure builders for the dashboard: data in, figure out (no Streamlit).

Conventions shared by every figure: time is in steps / d on a log axis, the loss is
``L = 1/2 E[(f - f*)^2]``, units are numbered from 1 as in the formulas (the CSV downloads keep
the package's 0-based indices), and no figure fixes background or font colours, so the
Streamlit theme (light or dark) applies. Trace colours come from a palette readable on both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "PALETTE",
    "TIME_TITLE",
    "LOSS_TITLE",
    "PortraitMarker",
    "loss_figure",
    "overlaps_figure",
    "overlap_heatmaps_figure",
    "phase_portrait_figure",
    "catalogue_figure",
    "spectrum_figure",
    "family_figure",
    "reachability_figure",
    "log_ticks",
    "colour_range",
    "presentation_figure",
]

#: Qualitative colours that keep their contrast on white and on near-black backgrounds.
PALETTE = ("#3b82f6", "#f97316", "#22c55e", "#ef4444", "#a855f7", "#14b8a6", "#eab308", "#ec4899",
           "#6366f1", "#84cc16", "#06b6d4", "#f43f5e")
TIME_TITLE = "time t (steps / d, log scale)"
LOSS_TITLE = "population loss L = ½ E[(f − f*)²]"
_DIVERGING = "RdBu_r"
_MARGIN = dict(l=70, r=30, t=50, b=60)


def _colour(index):
    return PALETTE[index % len(PALETTE)]


def _positive_time(trajectory):
    """Mask of the samples that a log time axis can show (``t > 0``)."""
    return np.asarray(trajectory.t) > 0


def _drawable(values):
    """Mask of the values a log axis can show (finite and positive)."""
    values = np.asarray(values, dtype=float)
    return np.isfinite(values) & (values > 0)


def _check_series(items, labels, name):
    """``items`` and ``labels`` as lists, or ValueError if there is no item or the lengths differ."""
    items = list(items)
    if not items:
        raise ValueError(f"{name} must contain at least one entry")
    labels = list(labels)
    if len(labels) != len(items):
        raise ValueError(f"labels has {len(labels)} entries for {len(items)} {name}")
    return items, labels


def loss_figure(trajectories, labels=None):
    """Loss against time, both on log axes, one line per run.

    Parameters
    ----------
    trajectories : sequence of Trajectory
        Runs to draw (ODE as lines, SGD simulations as thinner dotted lines).
    labels : sequence of str, optional
        Legend entries (default: each run's ``method``).

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If no run is given or ``labels`` has the wrong length.
    """
    trajectories = list(trajectories)
    runs, labels = _check_series(trajectories, [run.method for run in trajectories] if labels is None else labels,
                                 "trajectories")
    figure = go.Figure()
    for number, (run, label) in enumerate(zip(runs, labels)):
        keep = _positive_time(run) & _drawable(run.loss)
        sgd = run.method.startswith("sgd")
        figure.add_trace(go.Scatter(
            x=run.t[keep], y=run.loss[keep], name=label, mode="lines",
            line=dict(color=_colour(number), width=1.5 if sgd else 2.5, dash="dot" if sgd else "solid"),
            hovertemplate="t = %{x:.4g}<br>L = %{y:.3e}<extra>" + label + "</extra>",
        ))
    figure.update_xaxes(type="log", title_text=TIME_TITLE, exponentformat="power")
    figure.update_yaxes(type="log", title_text=LOSS_TITLE, exponentformat="power", **_log_ticks(runs))
    figure.update_layout(margin=_MARGIN, legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), height=420)
    return figure


def log_ticks(values) -> dict:
    """Tick settings of a log axis over ``values``: one label per decade, or full numbers at 1, 2, 5.

    Plotly's ``dtick="D2"`` labels the 2s and 5s by their leading digit only, so a short range read
    "5, 2, 10^-1, 5, 2" on a projector; within three decades every tick is written out in full.

    Parameters
    ----------
    values : array_like
        The positive values the axis shows (others are ignored).

    Returns
    -------
    dict
        Keyword arguments of ``update_yaxes`` / ``update_xaxes``.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0 or np.log10(values.max() / values.min()) >= 3:
        return {"dtick": 1}
    low, high = np.floor(np.log10(values.min())), np.ceil(np.log10(values.max()))
    ticks = [m * 10.0**e for e in np.arange(low, high + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if values.min() / 1.5 <= t <= values.max() * 1.5]
    return {"tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks]}


def _log_ticks(runs):
    return log_ticks(np.concatenate([np.asarray(run.loss, dtype=float) for run in runs]))


#: Line patterns of the teacher units in the R_km panel (colour is the student): with colour alone,
#: the M lines of one student could not be told apart.
_TEACHER_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _entry_traces(run, matrix, name, row, upper_only, dash, showlegend):
    values = np.asarray(matrix)
    K, columns = values.shape[1:]
    keep = _positive_time(run)
    traces = []
    for k in range(K):
        for m in range(k if upper_only else 0, columns):
            label = f"{name}[{k + 1},{m + 1}]"
            # R: the pattern says the teacher (the overlay keeps dots to say "SGD").
            pattern = _TEACHER_DASHES[m % len(_TEACHER_DASHES)] if (name == "R" and dash == "solid") else dash
            traces.append((row, go.Scatter(
                x=run.t[keep], y=values[keep, k, m], mode="lines", name=f"student {k + 1}",
                legendgroup=f"student {k + 1}", showlegend=showlegend and m == (k if upper_only else 0),
                line=dict(color=_colour(k), width=1.8 if (upper_only and m == k) else 1.5, dash=pattern),
                hovertemplate=f"{label}<br>t = %{{x:.4g}}<br>value = %{{y:.4f}}<extra>{run.method}</extra>",
            )))
    return traces


def overlaps_figure(trajectory, overlay=None):
    """Every entry of ``R`` (top) and of ``Q`` (bottom, ``k <= l``) against log time.

    Lines are coloured by student unit; clicking a legend entry hides that unit's lines.

    Parameters
    ----------
    trajectory : Trajectory
    overlay : Trajectory, optional
        A second run (e.g. SGD at finite d) drawn dotted in the same colours.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=("student-teacher overlaps R_km", "student-student overlaps Q_kl (k ≤ l)"))
    for run, dash, legend in ((trajectory, "solid", True), (overlay, "dot", False)):
        if run is None:
            continue
        for row, trace in _entry_traces(run, run.R, "R", 1, False, dash, legend) + _entry_traces(run, run.Q, "Q", 2, True,
                                                                                                 dash, False):
            figure.add_trace(trace, row=row, col=1)
    M = np.asarray(trajectory.R).shape[2]
    for m in range(min(M, len(_TEACHER_DASHES))):  # legend of the patterns: which line is which teacher
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"teacher {m + 1}", legendgroup="teachers",
                                    legendgrouptitle_text="R_km: teacher m" if m == 0 else None,
                                    line=dict(color="#9ca3af", dash=_TEACHER_DASHES[m], width=2)), row=1, col=1)
    figure.update_xaxes(type="log", exponentformat="power")
    figure.update_xaxes(title_text=TIME_TITLE, row=2, col=1)
    figure.update_yaxes(title_text="R_km", row=1, col=1)
    figure.update_yaxes(title_text="Q_kl", row=2, col=1)
    figure.update_layout(margin=_MARGIN, height=620, legend=dict(title_text="unit"))
    return figure


def _snapshot_indices(t, count):
    """About ``count`` indices at log-spaced times (always the first and the last)."""
    t = np.asarray(t)
    positive = t[t > 0]
    if positive.size == 0:
        return np.array([len(t) - 1])
    targets = np.geomspace(positive[0], t[-1], max(count - 1, 1))
    indices = np.searchsorted(t, targets).clip(0, len(t) - 1)
    return np.unique(np.concatenate([[0], indices, [len(t) - 1]]))


def _heatmap(matrix, show_text):
    values = np.asarray(matrix)
    rows, columns = values.shape
    return go.Heatmap(
        z=values, x=np.arange(1, columns + 1), y=np.arange(1, rows + 1), coloraxis="coloraxis",
        texttemplate="%{z:.2f}" if show_text else None, xgap=1, ygap=1,
        hovertemplate="row %{y}, column %{x}<br>value %{z:.4f}<extra></extra>",
    )


def _plot_height(K, M):
    return max(240, 110 + 40 * max(K, M))


def _heatmap_layout(figure, K, M, colour_max, bottom):
    figure.update_layout(
        coloraxis=dict(colorscale=_DIVERGING, cmin=-colour_max, cmax=colour_max, colorbar=dict(title="overlap", thickness=14)),
        margin=dict(l=70, r=30, t=60, b=bottom),
        height=_plot_height(K, M) + 60 + bottom,
    )
    figure.update_yaxes(autorange="reversed", dtick=1)
    figure.update_yaxes(title_text="student unit k", row=1, col=1)
    figure.update_xaxes(title_text="student unit l", dtick=1, row=1, col=1)
    figure.update_xaxes(title_text="teacher unit m", dtick=1, row=1, col=2)


def colour_range(Q, R) -> float:
    """Half-width of the symmetric colour scale of overlap heatmaps.

    The largest ``|entry|`` over the snapshots that have not blown up: a diverged run (entries of
    1e5 in its last snapshots) used to stretch the colour bar to +-400k and wash out every earlier
    frame; its blown-up frames saturate instead. Never below 1 (the teacher's scale), never below
    the largest entry of an ordinary run (``Q = 1.59`` must not saturate).

    Parameters
    ----------
    Q : ndarray, shape (n, K, K)
    R : ndarray, shape (n, K, M)

    Returns
    -------
    float
    """
    frames = np.maximum(np.nan_to_num(np.abs(Q), nan=0.0, posinf=0.0).reshape(len(Q), -1).max(axis=1),
                        np.nan_to_num(np.abs(R), nan=0.0, posinf=0.0).reshape(len(R), -1).max(axis=1))
    typical = max(float(np.median(frames)), 1e-12)
    ordinary = frames[frames <= 100.0 * typical]
    return float(max(ordinary.max() if ordinary.size else typical, 1e-12))


def overlap_heatmaps_figure(Q, R, times=None, n_frames=30):
    """Heatmaps of ``Q`` and ``R`` side by side, with a time slider and a play button.

    Parameters
    ----------
    Q : array_like, shape (n, K, K) or (K, K)
        Student-student overlaps, over time or at one point.
    R : array_like, shape (n, K, M) or (K, M)
    times : array_like, shape (n,), optional
        Times of the snapshots (steps / d); required for more than one snapshot.
    n_frames : int, optional
        About this many log-spaced snapshots go on the slider.

    Returns
    -------
    plotly.graph_objects.Figure
        Shows the last snapshot; the slider moves through time on the client (no rerun).

    Raises
    ------
    ValueError
        If the shapes disagree or ``times`` is missing for several snapshots.
    """
    Q, R = np.asarray(Q, dtype=float), np.asarray(R, dtype=float)
    if Q.ndim == 2:
        Q, R, times = Q[None], R[None], np.zeros(1)
    if Q.ndim != 3 or R.ndim != 3 or Q.shape[:2] != R.shape[:2] or Q.shape[1] != Q.shape[2]:
        raise ValueError(f"Q (n, K, K) and R (n, K, M) disagree: shapes {Q.shape} and {R.shape}")
    if times is None or len(times) != Q.shape[0]:
        raise ValueError("times must give one time per snapshot of Q and R")
    K, M = R.shape[1:]
    show_text = max(K, M) <= 6
    colour_max = colour_range(Q, R)
    figure = make_subplots(rows=1, cols=2, column_widths=[K, M], horizontal_spacing=0.1,
                           subplot_titles=("Q (student-student)", "R (student-teacher)"))
    figure.add_trace(_heatmap(Q[-1], show_text), row=1, col=1)
    figure.add_trace(_heatmap(R[-1], show_text), row=1, col=2)
    sliding = Q.shape[0] > 1
    _heatmap_layout(figure, K, M, colour_max, 190 if sliding else 60)
    if sliding:
        _add_time_slider(figure, Q, R, np.asarray(times, dtype=float), n_frames, show_text, _plot_height(K, M))
    return figure


def _add_time_slider(figure, Q, R, times, n_frames, show_text, plot_height):
    indices = _snapshot_indices(times, n_frames)
    names = [f"{times[i]:.3g}" for i in indices]
    figure.frames = [
        go.Frame(name=name, data=[_heatmap(Q[i], show_text), _heatmap(R[i], show_text)], traces=[0, 1])
        for name, i in zip(names, indices)
    ]
    steps = [
        dict(method="animate", label=name, args=[[name], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                              transition=dict(duration=0))])
        for name in names
    ]
    below = -80.0 / plot_height  # clear of the x-axis titles, in paper units
    figure.update_layout(
        sliders=[dict(active=len(steps) - 1, steps=steps, x=0.1, len=0.9, y=below, yanchor="top",
                      currentvalue=dict(prefix="time t (steps / d) = "), pad=dict(t=10))],
        updatemenus=[dict(type="buttons", showactive=False, x=0.0, y=below, xanchor="left", yanchor="top", pad=dict(t=45),
                          buttons=[dict(label="▶", method="animate",
                                        args=[None, dict(frame=dict(duration=250, redraw=True), fromcurrent=False,
                                                         transition=dict(duration=0))])])],
    )


@dataclass(frozen=True)
class PortraitMarker:
    """A fixed point drawn on the phase portrait.

    Attributes
    ----------
    label : str
        Legend entry and hover text.
    x, y : float
        Coordinates (matched overlap, other overlaps).
    kind : str
        ``minimum``, ``saddle`` or ``end`` (the end point of a run that converged); sets the symbol.
    """

    label: str
    x: float
    y: float
    kind: str = "end"


_SYMBOLS = {"minimum": "star", "saddle": "x", "end": "circle"}


def phase_portrait_figure(paths, labels, markers=()):
    """Runs in the plane (matched overlap, other overlaps), with fixed points marked.

    Parameters
    ----------
    paths : sequence of PhasePath
        One reduced run each (see :func:`landscape.dashboard.phase_path`).
    labels : sequence of str
        One legend entry per run.
    markers : sequence of PortraitMarker, optional
        Fixed points to mark.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If ``paths`` is empty or ``labels`` has the wrong length.
    """
    paths, labels = _check_series(paths, labels, "paths")
    figure = go.Figure()
    low = min(0.0, *(min(p.matched.min(), p.other.min()) for p in paths))
    high = max(1.0, *(max(p.matched.max(), p.other.max()) for p in paths))
    figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="unspecialised: matched = other",
                                line=dict(color="#9ca3af", dash="dash", width=1), hoverinfo="skip"))
    for number, (path, label) in enumerate(zip(paths, labels)):
        colour = _colour(number)
        arrows = np.unique(np.linspace(0, len(path.matched) - 1, 8).astype(int))[1:-1]
        figure.add_trace(go.Scatter(
            x=path.matched, y=path.other, mode="lines", name=label, legendgroup=label,
            line=dict(color=colour, width=2), hovertemplate="matched %{x:.4f}<br>other %{y:.4f}<extra>" + label + "</extra>",
        ))
        figure.add_trace(go.Scatter(
            x=path.matched[arrows], y=path.other[arrows], mode="markers", legendgroup=label, showlegend=False,
            marker=dict(symbol="arrow", angleref="previous", size=11, color=colour), hoverinfo="skip",
        ))
        figure.add_trace(go.Scatter(
            x=path.matched[:1], y=path.other[:1], mode="markers", legendgroup=label, showlegend=False,
            marker=dict(symbol="circle-open", size=9, color=colour), hovertemplate="start<extra>" + label + "</extra>",
        ))
    for kind in ("end", "saddle", "minimum"):
        chosen = [m for m in markers if m.kind == kind]
        if chosen:
            figure.add_trace(go.Scatter(
                x=[m.x for m in chosen], y=[m.y for m in chosen], mode="markers", name=f"fixed point: {kind}",
                text=[m.label for m in chosen], hovertemplate="%{text}<br>matched %{x:.4f}, other %{y:.4f}<extra></extra>",
                marker=dict(symbol=_SYMBOLS.get(kind, "circle"), size=15 if kind != "end" else 10,
                            color="#111827" if kind == "end" else "#ef4444",
                            line=dict(width=1.5, color="#f9fafb")),
            ))
    figure.update_xaxes(title_text="matched overlap: mean of R_k,π(k)")
    figure.update_yaxes(title_text="other overlaps: mean of R_km, m ≠ π(k)")
    figure.update_layout(margin=_MARGIN, height=520, legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
    return figure


def catalogue_figure(frame, selected=None):
    """Critical points: loss against index (number of descent directions), coloured by kind.

    The index counts negative eigenvalues with multiplicity, so a negative bulk eigenvalue adds
    ``d - r``: the x axis is logarithmic in ``index + 1`` to keep minima (index 0) and saddles of
    index 1 and ``~d`` readable together.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per point with columns ``loss``, ``index``, ``kind`` and ``count`` (basin count).
    selected : int, optional
        Row position to highlight.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If a column is missing.
    """
    missing = {"loss", "index", "kind", "count"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks the column(s) {sorted(missing)}")
    figure = go.Figure()
    counts = frame["count"].to_numpy(dtype=float)
    for number, kind in enumerate(sorted(frame["kind"].unique())):
        rows = np.flatnonzero(frame["kind"].to_numpy() == kind)
        part = frame.iloc[rows]
        figure.add_trace(go.Scatter(
            x=part["index"] + 1, y=part["loss"], mode="markers", name=str(kind),
            customdata=np.stack([rows, counts[rows], part["index"]], axis=1),
            marker=dict(size=8 + 14 * np.sqrt(counts[rows] / max(counts.max(), 1.0)), color=_colour(number), opacity=0.85,
                        line=dict(width=1, color="#6b7280")),
            hovertemplate="row %{customdata[0]}<br>loss %{y:.4e}<br>index %{customdata[2]}<br>basin count %{customdata[1]:.0f}"
                          "<extra>%{fullData.name}</extra>",
        ))
    if selected is not None and 0 <= selected < len(frame):
        row = frame.iloc[selected]
        figure.add_trace(go.Scatter(x=[row["index"] + 1], y=[row["loss"]], mode="markers", name=f"selected (row {selected})",
                                    marker=dict(symbol="circle-open", size=30, color="#ef4444", line=dict(width=3)),
                                    hoverinfo="skip"))
    top = float(frame["loss"].max()) if len(frame) else 1.0
    # Written-out ticks: Plotly's default labelled the 2s and 5s of each decade by one digit.
    figure.update_xaxes(title_text="Hessian index + 1 (log scale)", type="log",
                        **log_ticks(frame["index"].to_numpy(dtype=float) + 1))
    figure.update_yaxes(title_text=LOSS_TITLE, range=[-0.06 * top, 1.1 * top])
    figure.update_layout(margin=_MARGIN, height=430, legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return figure


def spectrum_figure(spectra, labels, n_smallest=3):
    """Exact Hessian spectra of several points, one row each, with multiplicities.

    Marker area grows with the logarithm of the multiplicity; colours tell the span block
    (``K r`` outliers) from the bulk (multiplicity ``d - r``). The ``n_smallest`` smallest
    distinct eigenvalues of each point are ringed in red (put the value of the smallest in the
    row labels if it should be read off).

    Parameters
    ----------
    spectra : sequence of HessianSpectrum
    labels : sequence of str
        Row labels.
    n_smallest : int, optional

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If ``spectra`` is empty or ``labels`` has the wrong length.
    """
    spectra, labels = _check_series(spectra, labels, "spectra")
    figure = go.Figure()
    groups = {"span block (outliers)": ("#3b82f6", lambda s: ~s.bulk), "bulk (multiplicity d − r)": ("#f97316", lambda s: s.bulk)}
    for name, (colour, pick) in groups.items():
        xs, ys, sizes, hover = [], [], [], []
        for spectrum, label in zip(spectra, labels):
            chosen = np.flatnonzero(pick(spectrum))
            xs += list(spectrum.eigenvalues[chosen])
            ys += [label] * chosen.size
            sizes += list(7 + 4 * np.log10(spectrum.multiplicities[chosen]))
            hover += [f"multiplicity {m}" for m in spectrum.multiplicities[chosen]]
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=name, text=hover, marker=dict(size=sizes, color=colour,
                                                                                                   opacity=0.8),
                                    hovertemplate="λ = %{x:.6g}<br>%{text}<extra>%{y}</extra>"))
    for spectrum, label in zip(spectra, labels):
        smallest = spectrum.eigenvalues[:n_smallest]
        figure.add_trace(go.Scatter(
            x=smallest, y=[label] * len(smallest), mode="markers", showlegend=label == labels[0], name=f"{n_smallest} smallest",
            marker=dict(symbol="circle-open", size=22, color="#ef4444", line=dict(width=2)), hoverinfo="skip",
        ))
    figure.add_vline(x=0, line=dict(color="#9ca3af", dash="dash", width=1))
    figure.update_xaxes(title_text="Hessian eigenvalue λ (of L in the normalised weights u = w / √d)", zeroline=False)
    figure.update_yaxes(title_text="critical point", type="category", autorange="reversed")
    figure.update_layout(margin=_MARGIN, height=170 + 90 * len(spectra), legend=dict(orientation="h", yanchor="bottom", y=1.02,
                                                                                     x=0))
    return figure


def family_figure(ids, labels, parents, values, colour, colour_title="loss"):
    """The family hierarchy as an icicle (catalogue -> family -> point): size = ``values``, colour = loss.

    An icicle rather than a sunburst: its labels stay horizontal and readable at every level
    (family names are long; on a sunburst they run along thin arcs and shrink past reading on a
    projector). Labels too small for their box are hidden rather than shrunk (hover shows them).

    Parameters
    ----------
    ids, labels, parents : sequence of str
        Flat tree (the root has parent ``""``).
    values : sequence of float
        Sizes, e.g. basin counts; a parent's value is the sum of its children's.
    colour : sequence of float
        Loss of each node.
    colour_title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If the sequences have different lengths or are empty.
    """
    lengths = {len(ids), len(labels), len(parents), len(values), len(colour)}
    if len(lengths) != 1 or not len(ids):
        raise ValueError("ids, labels, parents, values and colour must be non-empty and of equal length")
    figure = go.Figure(go.Icicle(
        ids=list(ids), labels=list(labels), parents=list(parents), values=list(values), branchvalues="total",
        marker=dict(colors=list(colour), colorscale="Viridis", colorbar=dict(title=colour_title, thickness=14),
                    line=dict(width=1)),
        textinfo="label+value", tiling=dict(orientation="h", pad=2), pathbar=dict(visible=True, textfont=dict(size=16)),
        # Labels at 16 px (and never shrunk below 13) stay readable on a projector.
        textfont=dict(size=16), insidetextfont=dict(size=16),
        hovertemplate="%{label}<br>size %{value}<br>" + colour_title + " %{color:.4g}<extra></extra>",
    ))
    figure.update_layout(margin=dict(l=10, r=10, t=30, b=10), height=560, uniformtext=dict(minsize=13, mode="hide"),
                         font=dict(size=16))
    return figure


def reachability_figure(K, fractions, lower, upper, names, x_title="student units K"):
    """Fraction of starts that reach each outcome as the width grows, with confidence intervals.

    Parameters
    ----------
    K : array_like, shape (n,)
        Widths on the x axis (student ``K``, or teacher ``M`` for a series ``K = M + 1``).
    fractions, lower, upper : array_like, shape (c, n)
        For each of ``c`` outcomes: fraction of starts and the interval bounds (e.g. Wilson 95%).
    names : sequence of str
        The ``c`` outcomes, e.g. ``("global minimum", "spurious minimum")``.
    x_title : str, optional
        Title of the x axis.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    K = np.asarray(K)
    fractions, lower, upper = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (fractions, lower, upper))
    if not (fractions.shape == lower.shape == upper.shape == (len(names), K.size)):
        raise ValueError(f"fractions, lower and upper must have shape ({len(names)}, {K.size})")
    figure = go.Figure()
    for number, name in enumerate(names):
        aggregate = "all" in name
        figure.add_trace(go.Scatter(
            x=K, y=fractions[number], mode="lines+markers", name=name,
            # An aggregate ("... all families") is a wide translucent band with square markers: a single
            # family equal to it is drawn on top and both stay visible (a dashed line hid under it).
            line=dict(color=_colour(number), width=9 if aggregate else 2.5),
            marker=dict(symbol="square" if aggregate else "circle", size=13 if aggregate else 8),
            opacity=0.45 if aggregate else 1.0,
            error_y=dict(type="data", symmetric=False, array=upper[number] - fractions[number],
                         arrayminus=fractions[number] - lower[number], thickness=1.5, width=5),
            hovertemplate="width %{x}<br>fraction %{y:.3f}<extra>" + name + "</extra>",
        ))
    figure.update_xaxes(title_text=x_title, dtick=1)
    figure.update_yaxes(title_text="fraction of random starts", range=[-0.02, 1.02])
    figure.update_layout(margin=_MARGIN, height=420, legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return figure


#: Presentation mode (``?present=1``): sizes for a projector seen from the back of a room.
PRESENTATION_FONT = 22
PRESENTATION_HEIGHT = 760


def presentation_figure(figure: go.Figure) -> go.Figure:
    """The same figure for a projector: larger fonts, thicker lines, larger markers, one screen high.

    Parameters
    ----------
    figure : plotly.graph_objects.Figure
        Left unchanged (a copy is returned).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    big = go.Figure(figure)
    big.update_layout(font=dict(size=PRESENTATION_FONT), height=max(PRESENTATION_HEIGHT, big.layout.height or 0),
                      hoverlabel=dict(font_size=PRESENTATION_FONT), legend=dict(font_size=PRESENTATION_FONT))
    # Per axis too: Streamlit's theme sets the tick and title fonts, which a layout font does not reach.
    axis_fonts = dict(tickfont_size=PRESENTATION_FONT - 2, title_font_size=PRESENTATION_FONT)
    big.update_xaxes(**axis_fonts)
    big.update_yaxes(**axis_fonts)
    for trace in big.data:
        line, marker = getattr(trace, "line", None), getattr(trace, "marker", None)
        if line is not None and line.width is not None:
            line.width = 1.8 * line.width
        if marker is not None and trace.type == "scatter":
            size = marker.size
            if size is not None:
                marker.size = [1.6 * s for s in size] if isinstance(size, (list, tuple, np.ndarray)) else 1.6 * size
            else:
                marker.size = 12
    for annotation in big.layout.annotations or ():
        annotation.font.size = PRESENTATION_FONT  # subplot titles
    return big
