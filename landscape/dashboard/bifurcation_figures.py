"""Plotly figures of the Learning rate page: the bifurcation diagram and an ODE spectrum (no Streamlit, no
computation: data in, figure out; the conventions of :mod:`landscape.dashboard.figures`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .figures import LOSS_TITLE, PALETTE

__all__ = ["bifurcation_figure", "eigenvalue_figure", "stability_runs"]

_EVENT_SYMBOLS = {"fold": "diamond", "stability_change": "x"}
_EVENT_STYLE = {"fold": (15, "#ef4444"), "stability_change": (9, "#f97316")}
_EVENT_NAMES = {"fold": "fold", "stability_change": "stability change"}


def stability_runs(stable):
    """``(start, stop, stable)`` of the maximal runs of equal stability, overlapping by one point so
    that the drawn pieces join: list of tuples (``stop`` exclusive)."""
    stable = np.asarray(stable, dtype=bool)
    if stable.size == 0:
        return []
    edges = np.flatnonzero(np.diff(stable.astype(int))) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges + 1, [stable.size]])
    return [(int(a), int(min(b, stable.size)), bool(stable[a])) for a, b in zip(starts, stops)]


def bifurcation_figure(branches, events, selected=None, names=None):
    """Loss of fixed points against the learning rate; solid attractive, dashed unstable; events marked.

    Parameters
    ----------
    branches : sequence of dict
        Each with arrays ``lr``, ``loss``, ``stable``, ``max_real_eigenvalue`` (as in ``landscape bifurcation``).
    events : sequence of dict
        ``{"kind": "fold" | "stability_change", "lr", "loss", "branch"}``.
    selected : tuple of int, optional
        ``(branch, point)`` to ring.
    names : sequence of str, optional
        Legend names of the branches.

    Returns
    -------
    plotly.graph_objects.Figure
        Points carry ``customdata = [branch, point]`` (for click selection).

    Raises
    ------
    ValueError
        If a branch's arrays differ in length.
    """
    figure = go.Figure()
    for number, branch in enumerate(branches):
        lr, loss = np.asarray(branch["lr"], float), np.asarray(branch["loss"], float)
        stable, top = np.asarray(branch["stable"], bool), np.asarray(branch["max_real_eigenvalue"], float)
        if not (lr.size == loss.size == stable.size == top.size):
            raise ValueError(f"branch {number}: lr, loss, stable and max_real_eigenvalue differ in length")
        colour = PALETTE[number % len(PALETTE)]
        name = names[number] if names else f"branch {number}"
        for piece, (a, b, is_stable) in enumerate(stability_runs(stable)):
            index = np.arange(a, b)
            figure.add_trace(go.Scatter(
                x=lr[a:b], y=loss[a:b], mode="lines+markers",
                line=dict(color=colour, dash="solid" if is_stable else "dash", width=2.5 if is_stable else 1.8),
                # Invisible markers: they carry the hover and the click; visible ones, as dense as the
                # branch's points, drew the dashed lines solid.
                # One legend entry per branch (solid/dashed is explained beside the figure): with
                # every minimum of a catalogue, two entries each pushed the legend over the axis title.
                marker=dict(size=8, color=colour, opacity=0.0), name=name, legendgroup=str(number),
                showlegend=piece == 0,
                customdata=np.column_stack([np.full(index.size, number), index, top[a:b]]),
                hovertemplate="lr = %{x:.6f}<br>L = %{y:.4e}<br>max Re λ = %{customdata[2]:.3e}"
                              f"<br>{'attractive' if is_stable else 'unstable'}<extra>point %{{customdata[1]}}</extra>",
            ))
    for kind in _EVENT_SYMBOLS:
        chosen = [e for e in events if e["kind"] == kind]
        if chosen:
            figure.add_trace(go.Scatter(
                x=[e["lr"] for e in chosen], y=[e["loss"] for e in chosen], mode="markers",
                marker=dict(symbol=_EVENT_SYMBOLS[kind], size=_EVENT_STYLE[kind][0], color=_EVENT_STYLE[kind][1]),
                name=_EVENT_NAMES[kind], customdata=[[e["branch"]] for e in chosen],
                hovertemplate=(f"{_EVENT_NAMES[kind]} at lr = %{{x:.7f}}<br>L = %{{y:.4e}}"
                               "<extra>branch %{customdata[0]}</extra>"),
            ))
    if selected is not None and selected[0] < len(branches):
        branch = branches[selected[0]]
        point = min(selected[1], len(branch["lr"]) - 1)
        figure.add_trace(go.Scatter(
            x=[branch["lr"][point]], y=[branch["loss"][point]], mode="markers", name="selected",
            marker=dict(size=16, symbol="circle-open", color="#a855f7", line=dict(width=2.5)), hoverinfo="skip",
        ))
    figure.update_layout(
        xaxis_title="learning rate η", yaxis_title=LOSS_TITLE, hovermode="closest",
        margin=dict(l=70, r=30, t=40, b=60), legend=dict(orientation="h", y=-0.2),
        height=460 + 24 * max(len(branches) - 2, 0),
        title="Fixed points of the SGD ODE against the learning rate",
    )
    losses = [value for branch in branches for value in branch["loss"]]
    if losses and min(losses) > 0:
        # One label per decade (Streamlit's theme draws a label at every digit of a log axis otherwise).
        figure.update_yaxes(type="log", exponentformat="power", dtick=1, minor=dict(ticks="", showgrid=False))
    else:  # a linear axis: the realisable minimum without label noise has loss 0 at every lr (no log)
        figure.update_yaxes(rangemode="tozero")
    return figure


def eigenvalue_figure(eigenvalues, title="ODE Jacobian eigenvalues"):
    """Eigenvalues in the complex plane with the imaginary axis (stability boundary) marked.

    Parameters
    ----------
    eigenvalues : array_like of complex, shape (N,)
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
    """
    values = np.asarray(eigenvalues, dtype=complex)
    unstable = values.real >= 0
    figure = go.Figure()
    for mask, name, colour in ((~unstable, "Re λ < 0 (attracting)", PALETTE[0]), (unstable, "Re λ ≥ 0", PALETTE[3])):
        if np.any(mask):
            figure.add_trace(go.Scatter(x=values.real[mask], y=values.imag[mask], mode="markers", name=name,
                                        marker=dict(size=10, color=colour),
                                        hovertemplate="Re λ = %{x:.4e}<br>Im λ = %{y:.3e}<extra></extra>"))
    figure.add_vline(x=0.0, line=dict(dash="dot", color="#888888"))
    figure.update_layout(xaxis_title="Re λ", yaxis_title="Im λ", title=title, height=360,
                         margin=dict(l=70, r=30, t=50, b=60), legend=dict(orientation="h", y=-0.25))
    return figure
