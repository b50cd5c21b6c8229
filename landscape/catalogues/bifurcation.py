"""Bifurcation diagrams in the learning rate: every minimum of a catalogue continued at once.

:func:`catalogue_bifurcation` takes the minima of a catalogue (critical points of ``L``, or fixed
points at the catalogue's ``lr``), moves each to the fixed point of the full ODE at the start
``lr`` and continues it to ``lr_max``
(:func:`landscape.critical_points.continuation.continue_fixed_points`, shared between both cores).

Section 3.1 of docs/theory.md (continuation, folds, eq. (3.9)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..critical_points.continuation import Branch, branch_from, continue_fixed_points, global_minimum_start
from ..model.config import RunConfig
from .records import Catalogue, PointKind

__all__ = ["Bifurcation", "catalogue_bifurcation", "bifurcation_dict", "global_minimum_branch"]


@dataclass(frozen=True)
class Bifurcation:
    """Branches of fixed points in lr, one per continued point.

    Attributes
    ----------
    branches : tuple of Branch
        The branches that started.
    points : tuple of int
        Index (in the catalogue's points) of each branch's start.
    skipped : dict
        ``{point index: reason}`` of the points whose branch could not start.
    success : bool
        At least one branch started.
    status : str
        ``complete``, ``partial`` (some skipped) or ``failed``.
    message : str
    """

    branches: tuple
    points: tuple
    skipped: dict
    success: bool
    status: str
    message: str

    def to_dict(self):
        """What ``landscape bifurcation`` prints: ``branches`` and ``events``, plus ``skipped`` and ``message``."""
        return bifurcation_dict(self.branches) | {
            "points": list(self.points), "skipped": {str(k): v for k, v in self.skipped.items()},
            "status": self.status, "message": self.message,
        }


def bifurcation_dict(branches):
    """``{"branches": [...], "events": [...]}`` of a sequence of :class:`Branch` (events name their branch)."""
    return {"branches": [b.to_dict() for b in branches],
            "events": [e.to_dict(i) for i, b in enumerate(branches) for e in b.events]}


def catalogue_bifurcation(catalogue, lr_max, noise=None, lr=None, lr_min=None, ds=0.05, max_steps=400, workers=None,
                          progress=None):
    """Continue every minimum of a catalogue in the learning rate (both cores).

    Parameters
    ----------
    catalogue : Catalogue
    lr_max : float
        End of the branches (above the start ``lr``).
    noise : float, optional
        Label-noise variance (default: the catalogue config's).
    lr : float, optional
        Start of the branches (default: the catalogue config's ``lr``).
    lr_min, ds, max_steps, workers, progress
        See :func:`landscape.critical_points.continuation.continue_fixed_points`.

    Returns
    -------
    Bifurcation

    Raises
    ------
    ValueError
        If ``catalogue`` is not a Catalogue with a minimum, or a setting is out of range.
    """
    if not isinstance(catalogue, Catalogue):
        raise ValueError(f"catalogue must be a Catalogue, got {type(catalogue).__name__}")
    chosen = [i for i, p in enumerate(catalogue.points) if p.kind is PointKind.MINIMUM]
    if not chosen:
        raise ValueError("the catalogue has no minimum to continue")
    config = catalogue.config
    lr = config.lr if lr is None else lr
    noise = config.noise if noise is None else noise
    Q0 = np.array([catalogue.points[i].Q for i in chosen])
    R0 = np.array([catalogue.points[i].R for i in chosen])
    results = continue_fixed_points(Q0, R0, config.teacher_matrix(), lr, lr_max, noise, lr_min, ds, max_steps,
                                    workers, progress, from_critical=True)
    branches = tuple(r for r in results if isinstance(r, Branch))
    points = tuple(i for i, r in zip(chosen, results) if isinstance(r, Branch))
    skipped = {i: r for i, r in zip(chosen, results) if not isinstance(r, Branch)}
    status = "failed" if not branches else ("partial" if skipped else "complete")
    message = f"{len(branches)} of {len(chosen)} minima continued from lr {lr} to {lr_max}"
    if skipped:
        message += f"; {len(skipped)} could not start"
    return Bifurcation(branches, points, skipped, bool(branches), status, message)


def global_minimum_branch(config, lr_max, ds=0.05, max_steps=400, should_stop=None):
    """The branch of the fixed point next to the global minimum, from ``config.lr`` to ``lr_max``.

    Parameters
    ----------
    config : RunConfig
        ``K >= M``, the teacher, the start ``lr`` and the label ``noise`` (the ``eta^2`` term is on
        whatever ``config.eta2`` says: without it nothing depends on lr).
    lr_max : float
        End of the branch (above ``config.lr``).
    ds, max_steps, should_stop
        See :func:`landscape.critical_points.continuation.continue_fixed_point` (``should_stop``
        returning True ends the continuation with :class:`landscape.status.Stopped`).

    Returns
    -------
    Branch

    Raises
    ------
    ValueError
        If ``config`` is not a RunConfig with ``K >= M``, ``lr_max <= config.lr``, or the branch cannot start
        (``K > M`` without label noise: the minimum is on the boundary of the cone; ``lr`` beyond the fold).
        Without label noise and ``K = M`` the branch is :func:`landscape.critical_points.realisable.realisable_branch`.
    """
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
    if not (isinstance(lr_max, (int, float, np.integer, np.floating)) and lr_max > config.lr):
        raise ValueError(f"lr_max must be above the start lr {config.lr}, got {lr_max!r}")
    T = config.teacher_matrix()
    Q, R = global_minimum_start(config.K, T)
    return branch_from(Q, R, T, config.lr, float(lr_max), config.noise, ds=ds, max_steps=max_steps, from_critical=True,
                       should_stop=should_stop)
