"""Families across widths: each family's loss, Hessian, basin fraction and count as ``K`` grows.

:func:`families_across_widths` reads catalogues (e.g. the ``K = M`` ones of a sweep store) and
follows each family (the label :func:`landscape.critical_points.families.classify_point` gave each
point when its catalogue was built; a store written under older labelling rules shows its own labels)
from one width to the next: its names do not depend on ``K``, so one family is one line. For a family at one ``K``: its
lowest-loss point (a minimum when the family has one) gives ``loss``, ``min_eigenvalue`` and
``kind``; ``count`` is the starts that ended at any of its points, ``fraction`` that count over the
catalogue's starts with a Wilson interval (:func:`landscape.catalogues.reachability.wilson_interval`).

Eqs. (6.5) and (7.1) of docs/theory.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

import enum
from dataclasses import dataclass

import numpy as np

from .reachability import wilson_interval
from .records import Catalogue, PointKind

__all__ = ["WidthsStatus", "FamilySeries", "FamiliesAcrossWidths", "families_across_widths"]


class WidthsStatus(enum.Enum):
    """Outcome of :func:`families_across_widths`; the value is a sentence."""

    OK = "families followed across the widths"
    EMPTY = "the catalogues hold no critical point"


@dataclass(frozen=True, eq=False)
class FamilySeries:
    """One family followed across widths (arrays over the widths where it was found).

    Attributes
    ----------
    name : str
    K : ndarray of int, shape (n,)
    loss, min_eigenvalue : ndarray, shape (n,)
        Of the family's representative (lowest-loss minimum, else lowest-loss point) at each ``K``.
    kind : tuple of str
        ``minimum`` or ``saddle``, the representative's kind.
    count : ndarray of int, shape (n,)
        Starts ending at any point of the family.
    fraction, lower, upper : ndarray, shape (n,)
        ``count / starts`` and its Wilson interval.
    starts : ndarray of int, shape (n,)
    """

    name: str
    K: np.ndarray
    loss: np.ndarray
    min_eigenvalue: np.ndarray
    kind: tuple
    count: np.ndarray
    fraction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    starts: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready dictionary (one entry of ``landscape families``)."""
        return {"name": self.name, "K": self.K.tolist(), "loss": self.loss.tolist(),
                "min_eigenvalue": self.min_eigenvalue.tolist(), "kind": list(self.kind), "count": self.count.tolist(),
                "fraction": self.fraction.tolist(), "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "starts": self.starts.tolist()}


@dataclass(frozen=True, eq=False)
class FamiliesAcrossWidths:
    """Families followed across catalogues of growing width.

    Attributes
    ----------
    families : tuple of FamilySeries
        Ordered by the lowest loss of the family over all widths (the global minimum first).
    K, M : ndarray of int, shape (c,)
        Widths of the catalogues, ascending in ``K``.
    confidence : float
    success : bool
        True when at least one family was found.
    status : WidthsStatus
    message : str
    """

    families: tuple
    K: np.ndarray
    M: np.ndarray
    confidence: float
    success: bool
    status: WidthsStatus
    message: str

    def to_dict(self) -> dict:
        """``{"families": [...], "K": [...], "M": [...], ...}`` (what ``landscape families`` prints)."""
        return {"families": [f.to_dict() for f in self.families], "K": self.K.tolist(), "M": self.M.tolist(),
                "confidence": self.confidence, "status": self.status.name.lower(), "message": self.message}

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per family and width."""
        import pandas as pd

        rows = []
        for family in self.families:
            for i, K in enumerate(family.K):
                rows.append({"family": family.name, "K": int(K), "loss": family.loss[i],
                             "min_eigenvalue": family.min_eigenvalue[i], "kind": family.kind[i],
                             "count": int(family.count[i]), "fraction": family.fraction[i], "lower": family.lower[i],
                             "upper": family.upper[i], "starts": int(family.starts[i])})
        return pd.DataFrame(rows)


def _catalogue_families(catalogue):
    """``{name: (representative point, basin count)}`` of one catalogue."""
    # The stored label, not a new classification: classifying every point of the shipped table
    # again (orbit partitions of up to 20 + 20 units) made the Families page's first load take
    # 27 CPU s (K = M and K = M + 1 series).
    members = {}
    for point in catalogue.points:
        members.setdefault(point.family, []).append(point)
    result = {}
    for name, points in members.items():
        minima = [p for p in points if p.kind is PointKind.MINIMUM]
        representative = min(minima or points, key=lambda p: p.loss)
        result[name] = (representative, sum(p.count for p in points))
    return result


def families_across_widths(catalogues: Iterable[Catalogue], confidence: float = 0.95) -> FamiliesAcrossWidths:
    """Each family's loss, smallest Hessian eigenvalue, basin fraction and count per width ``K``.

    Parameters
    ----------
    catalogues : sequence of Catalogue
        One per width ``K`` (e.g. ``store.catalogues({"K-M": 0})``).
    confidence : float, optional
        Level of the Wilson intervals, in (0, 1).

    Returns
    -------
    FamiliesAcrossWidths

    Raises
    ------
    ValueError
        If ``catalogues`` is empty or holds something else than catalogues, two catalogues have
        the same ``K`` (select one ``M`` per ``K``, e.g. ``K-M=0``), or ``confidence`` is not in (0, 1).
    """
    catalogues = list(catalogues)
    if not catalogues:
        raise ValueError("catalogues must hold at least one catalogue (is the selection empty?)")
    for catalogue in catalogues:
        if not isinstance(catalogue, Catalogue):
            raise ValueError(f"expected Catalogue objects, got {type(catalogue).__name__}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    catalogues.sort(key=lambda c: c.config.K)
    widths = [c.config.K for c in catalogues]
    if len(set(widths)) != len(widths):
        pairs = sorted((c.config.K, c.config.M) for c in catalogues)
        raise ValueError(f"two catalogues share a width K (K, M = {pairs}): select one M per K, e.g. --where K-M=0")
    rows: dict = {}
    for catalogue in catalogues:
        for name, (point, count) in _catalogue_families(catalogue).items():
            rows.setdefault(name, []).append((catalogue.config.K, point, count, catalogue.starts))
    series = []
    for name, entries in rows.items():
        counts = np.array([e[2] for e in entries], dtype=int)
        starts = np.array([e[3] for e in entries], dtype=int)
        bounds = [wilson_interval(int(c), int(n), confidence) for c, n in zip(counts, starts)]
        series.append(FamilySeries(
            name=name, K=np.array([e[0] for e in entries], dtype=int), loss=np.array([e[1].loss for e in entries]),
            min_eigenvalue=np.array([e[1].min_eigenvalue for e in entries]),
            kind=tuple(e[1].kind.value for e in entries), count=counts, fraction=counts / starts,
            lower=np.array([float(b[0]) for b in bounds]), upper=np.array([float(b[1]) for b in bounds]),
            starts=starts))
    series.sort(key=lambda s: (float(s.loss.min()), s.name))
    message = f"{len(series)} families over K = {', '.join(map(str, widths))}"
    status = WidthsStatus.OK if series else WidthsStatus.EMPTY
    return FamiliesAcrossWidths(families=tuple(series), K=np.array(widths), M=np.array([c.config.M for c in catalogues]),
                                confidence=float(confidence), success=bool(series), status=status, message=message)
