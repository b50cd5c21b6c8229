"""Sentences about a run, with every number taken from that run (captions of the Flows page).

Preset descriptions state only qualitative facts (tests check them against the runs); the
numbers a reader sees under a figure (plateau levels and times, the end of the run) are
computed here from the trajectory the figure shows.
"""

from __future__ import annotations

from ..dynamics.plateaus import find_plateaus
from ..dynamics.trajectory import Trajectory

__all__ = ["loss_curve_caption"]


def _number(value: float) -> str:
    return f"{value:.3g}"


def loss_curve_caption(run: Trajectory) -> str:
    """What the loss curve of ``run`` does: its start, its plateaus (if any) and its end.

    Parameters
    ----------
    run : Trajectory
        A flow or an SGD run (``t``, ``loss`` of shape (n,)).

    Returns
    -------
    str
        E.g. ``"Loss 1.02 at t = 0. Plateau from t = 5.48 to 44.6 (0.91 decades of time): the
        loss stays between 0.158 and 0.174. At t = 439: 1.67e-14."``

    Raises
    ------
    ValueError
        If ``run`` is not a Trajectory.
    """
    if not isinstance(run, Trajectory):
        raise ValueError(f"run must be a Trajectory, got {type(run).__name__}")
    sentences = [f"Loss {_number(run.loss[0])} at t = 0."]
    plateaus = find_plateaus(run.t, run.loss)
    for plateau in plateaus:
        sentences.append(
            f"Plateau from t = {_number(plateau.t_start)} to {_number(plateau.t_end)} "
            f"({plateau.decades:.2g} decades of time): the loss stays between {_number(plateau.low)} and "
            f"{_number(plateau.high)}."
        )
    if not plateaus:
        sentences.append("No plateau (no stall of a factor 2 in time within 10% of one loss value before a drop).")
    sentences.append(f"At t = {_number(run.t[-1])}: {_number(run.loss[-1])}.")
    return " ".join(sentences)
