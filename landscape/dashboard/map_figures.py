"""Plotly figures of the landscape map: the disconnectivity tree and the profile of one pass.

Data in, figure out, as in :mod:`landscape.dashboard.figures` (no Streamlit, no computation):
the tree is a :class:`~landscape.catalogues.disconnectivity.DisconnectivityTree` (read through its
attributes only) and a pass is the two loss-against-arclength paths of a connection.
"""

from __future__ import annotations

import textwrap

import numpy as np
import plotly.graph_objects as go

from .figures import LOSS_TITLE, PALETTE

__all__ = ["disconnectivity_figure", "pass_figure", "SADDLE_TRACE"]

#: Name of the trace of the saddle markers (its points carry the saddle's catalogue index as customdata).
SADDLE_TRACE = "saddles"
_MARGIN = dict(l=70, r=30, t=40, b=120)
_BRANCH = "#94a3b8"


def _wrapped(label, width=16):
    return "<br>".join(textwrap.wrap(label, width)) or label


def _branch(figure, xs, ys, width, colour=_BRANCH):
    figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=width),
                                hoverinfo="skip", showlegend=False))


def disconnectivity_figure(tree, saddle_index=None, selected=None):
    """The disconnectivity tree: minima at the bottom of their branches, merging at saddle losses.

    Parameters
    ----------
    tree : DisconnectivityTree
        Nodes with ``level``, ``top``, ``x``, ``width``, ``children``, ``point``; ``saddles`` marks.
    saddle_index : dict, optional
        Hessian index of each saddle (catalogue index -> int), shown on hover.
    selected : int, optional
        Catalogue index of a saddle to highlight.

    Returns
    -------
    plotly.graph_objects.Figure
        Vertical axis: loss. A leaf's line width grows with its basin fraction; leaves are labelled
        by family on the horizontal axis. The trace named :data:`SADDLE_TRACE` holds the saddles
        (click to select: ``customdata`` is the catalogue index).

    Raises
    ------
    ValueError
        If the tree has no node.
    """
    if not tree.nodes:
        raise ValueError("the tree has no node (the catalogue has no minimum)")
    saddle_index = saddle_index or {}
    figure = go.Figure()
    for node in tree.nodes:
        width = 2.0 + 16.0 * node.width if node.is_leaf else 2.0
        _branch(figure, [node.x, node.x], [node.level, node.top], width)
        if node.children:
            xs = [tree.nodes[c].x for c in node.children]
            _branch(figure, [min(xs), max(xs)], [node.level, node.level], 2.0)
    leaves = [n for n in tree.nodes if n.is_leaf]
    figure.add_trace(go.Scatter(
        x=[n.x for n in leaves], y=[n.level for n in leaves], mode="markers+text", name="minima",
        text=[f"#{n.point}" for n in leaves], textposition="bottom center",
        marker=dict(size=10, color=PALETTE[2], symbol="circle"),
        customdata=[[n.point, tree.families.get(n.point, ""), n.width] for n in leaves],
        hovertemplate="minimum #%{customdata[0]}<br>%{customdata[1]}<br>L = %{y:.4e}"
                      "<br>basin fraction %{customdata[2]:.3f}<extra></extra>",
    ))
    if tree.saddles:
        colours = [PALETTE[3] if s.saddle == selected else (PALETTE[1] if s.merges else PALETTE[0])
                   for s in tree.saddles]
        figure.add_trace(go.Scatter(
            x=[s.x for s in tree.saddles], y=[s.level for s in tree.saddles], mode="markers", name=SADDLE_TRACE,
            marker=dict(size=[16 if s.saddle == selected else 11 for s in tree.saddles], color=colours,
                        symbol="diamond", line=dict(width=1, color="#1e293b")),
            customdata=[[s.saddle, saddle_index.get(s.saddle, ""), "joins groups" if s.merges else "on this branch"]
                        for s in tree.saddles],
            hovertemplate="saddle #%{customdata[0]} (index %{customdata[1]}), %{customdata[2]}"
                          "<br>L = %{y:.4e}<extra></extra>",
        ))
    figure.update_layout(
        margin=_MARGIN, height=480, showlegend=False, clickmode="event+select",
        xaxis=dict(tickvals=[n.x for n in leaves], ticktext=[_wrapped(tree.families.get(n.point, "")) for n in leaves],
                   tickangle=0, range=[-0.02, 1.02], showgrid=False, zeroline=False),
        yaxis=dict(title=LOSS_TITLE, range=[min(n.level for n in tree.nodes) - 0.03 * tree.top, tree.top]),
    )
    return figure


def pass_figure(arclength, paths, labels, saddle_loss):
    """Loss along the two descent paths of a saddle, as one profile through the pass.

    Parameters
    ----------
    arclength : sequence of two array_like, shape (p,)
        Arclength from the saddle along each path (weights ``u = w / sqrt(d)``, Frobenius norm).
    paths : sequence of two array_like, shape (p,)
        Loss at those arclengths.
    labels : sequence of two str
        Where each path ends.
    saddle_loss : float

    Returns
    -------
    plotly.graph_objects.Figure
        The first path drawn at negative arclength, the second at positive, the saddle at 0.

    Raises
    ------
    ValueError
        If there are not two paths, or a path's arclength and loss differ in length.
    """
    if len(arclength) != 2 or len(paths) != 2 or len(labels) != 2:
        raise ValueError("a pass has exactly two descent paths (arclength, paths and labels of length 2)")
    figure = go.Figure()
    for number, (s, loss, label, sign) in enumerate(zip(arclength, paths, labels, (-1.0, 1.0))):
        s, loss = np.asarray(s, dtype=float), np.asarray(loss, dtype=float)
        if s.shape != loss.shape:
            raise ValueError(f"path {number}: arclength and loss have different lengths ({s.size} and {loss.size})")
        figure.add_trace(go.Scatter(x=sign * s, y=loss, mode="lines", name=label,
                                    line=dict(color=PALETTE[number], width=3),
                                    hovertemplate="arclength %{x:.3f}<br>L = %{y:.4e}<extra>" + label + "</extra>"))
    figure.add_trace(go.Scatter(x=[0.0], y=[saddle_loss], mode="markers", name="saddle",
                                marker=dict(size=13, symbol="diamond", color=PALETTE[3])))
    figure.update_layout(margin=dict(l=70, r=30, t=30, b=60), height=420,
                         xaxis_title="arclength from the saddle (left: first path, right: second)",
                         yaxis_title=LOSS_TITLE, legend=dict(orientation="h", yanchor="top", y=-0.2))
    return figure
