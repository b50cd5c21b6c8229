"""Figures of the Families page: families across widths, and the escape flows of an added student.

Like :mod:`landscape.dashboard.figures`, these draw the data they are given (plain lists and
arrays, e.g. ``FamiliesAcrossWidths.to_dict()["families"]``) and compute nothing; text is sized to
stay readable on a projector.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["families_across_figure", "escape_figure", "PROJECTOR_FONT"]

#: Font size of labels meant to be read from the back of a lecture room.
PROJECTOR_FONT = 16
_PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#6b7280",
            "#a16207")


def _colour(index):
    return _PALETTE[index % len(_PALETTE)]


def _projector_axes(figure):
    # Set on the axes themselves: Streamlit's theme replaces the layout's default font sizes.
    for update in (figure.update_xaxes, figure.update_yaxes):
        update(tickfont=dict(size=PROJECTOR_FONT - 1), title_font=dict(size=PROJECTOR_FONT + 1))


def _check_families(families):
    keys = ("name", "K", "loss", "kind", "fraction", "lower", "upper")
    families = list(families)
    if not families:
        raise ValueError("families must hold at least one family")
    for family in families:
        missing = [key for key in keys if key not in family]
        if missing:
            raise ValueError(f"a family lacks {missing}")
        if len({len(family[key]) for key in keys[1:]}) != 1:
            raise ValueError(f"family {family['name']!r}: K, loss, kind, fraction, lower, upper differ in length")
    return families


def families_across_figure(families, x_title="student units K (= teacher units M)"):
    """Loss of each family against the width (top) and the fraction of random starts it catches (bottom).

    Filled markers are minima, open markers saddles (a family can change kind as ``K`` grows:
    type A is a saddle up to ``K = 5`` and a minimum from ``K = 6``). Error bars: the intervals given.

    Parameters
    ----------
    families : sequence of dict
        Each with ``name``, and lists over its widths ``K``, ``loss``, ``kind``, ``fraction``,
        ``lower``, ``upper`` (the entries of ``landscape families``).
    x_title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        If ``families`` is empty or a family's lists differ in length.
    """
    families = _check_families(families)
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    for number, family in enumerate(families):
        colour, name = _colour(number), family["name"]
        K = np.asarray(family["K"])
        minimum = np.array([kind == "minimum" for kind in family["kind"]])
        figure.add_trace(go.Scatter(
            x=K, y=family["loss"], mode="lines+markers", name=name, legendgroup=name, line=dict(color=colour, width=3),
            marker=dict(size=12, color=np.where(minimum, colour, "rgba(0,0,0,0)").tolist(),
                        line=dict(color=colour, width=2), symbol="circle"),
            customdata=np.array(family["kind"], dtype=object),
            hovertemplate="K = %{x}<br>loss %{y:.6g}<br>%{customdata}<extra>" + name + "</extra>",
        ), row=1, col=1)
        fraction = np.asarray(family["fraction"], dtype=float)
        if np.any(fraction > 0):
            figure.add_trace(go.Scatter(
                x=K, y=fraction, mode="lines+markers", name=name, legendgroup=name, showlegend=False,
                line=dict(color=colour, width=3), marker=dict(size=10, color=colour),
                error_y=dict(type="data", symmetric=False, array=np.asarray(family["upper"]) - fraction,
                             arrayminus=fraction - np.asarray(family["lower"]), thickness=2, width=6),
                hovertemplate="K = %{x}<br>fraction %{y:.3f}<extra>" + name + "</extra>",
            ), row=2, col=1)
    figure.update_yaxes(title_text="loss", row=1, col=1)
    figure.update_yaxes(title_text="basin fraction", range=[-0.02, 1.02], row=2, col=1)
    figure.update_xaxes(title_text=x_title, dtick=1, row=2, col=1)
    _projector_axes(figure)
    figure.update_layout(height=720, font=dict(size=PROJECTOR_FONT), margin=dict(l=10, r=10, t=10, b=10),
                         legend=dict(orientation="h", yanchor="top", y=-0.12, x=0, font=dict(size=PROJECTOR_FONT - 2)))
    return figure


def escape_figure(paths):
    """Loss against time along escape flows, each ending at a marker named by where it ends.

    Parameters
    ----------
    paths : sequence of dict
        Each with ``label`` (the flow), ``t`` and ``loss`` (equal lengths, ``t`` from 0), ``end``
        (the family reached) and ``end_loss``.

    Returns
    -------
    plotly.graph_objects.Figure
        Time as ``t + 1`` on a log scale, so the start shows; loss on a linear scale from 0.

    Raises
    ------
    ValueError
        If ``paths`` is empty or a path's ``t`` and ``loss`` differ in length.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("paths must hold at least one escape")
    figure = go.Figure()
    for number, path in enumerate(paths):
        t, loss = np.asarray(path["t"], dtype=float), np.asarray(path["loss"], dtype=float)
        if t.shape != loss.shape or t.size == 0:
            raise ValueError(f"escape {path.get('label')!r}: t and loss must be non-empty and of equal length")
        colour = _colour(number)
        figure.add_trace(go.Scatter(x=t + 1.0, y=loss, mode="lines", name=path["label"],
                                    line=dict(color=colour, width=3),
                                    hovertemplate="t = %{customdata:.4g}<br>loss %{y:.4g}<extra></extra>",
                                    customdata=t))
        figure.add_trace(go.Scatter(x=[t[-1] + 1.0], y=[path["end_loss"]], mode="markers+text",
                                    marker=dict(size=14, color=colour, symbol="star"), showlegend=False,
                                    text=[path["end"]], textposition="top left", textfont=dict(size=PROJECTOR_FONT - 2),
                                    hovertemplate=path["end"] + "<br>loss %{y:.6g}<extra></extra>"))
    figure.update_xaxes(type="log", title_text="time + 1 (gradient flow)")
    # Linear loss: an escape to the global minimum (loss 0) and one to a nearby spurious minimum both show.
    figure.update_yaxes(title_text="loss", rangemode="tozero")
    _projector_axes(figure)
    figure.update_layout(height=460, font=dict(size=PROJECTOR_FONT), margin=dict(l=10, r=10, t=10, b=10),
                         legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return figure
