"""Reachability: where the random starts of catalogues ended, with Wilson confidence intervals.

:func:`reachability` counts the starts of one catalogue ending at a global minimum, at each
spurious family of minima, at a saddle or nowhere; :func:`reachability_curve` follows these
fractions across catalogues (over ``K`` or ``lr``) for :func:`landscape.dashboard.figures.reachability_figure`.

Eq. (7.1) of docs/theory.md (Wilson 1927).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .records import Catalogue, PointKind

__all__ = [
    "GLOBAL_LABEL",
    "SPURIOUS_LABEL",
    "SADDLE_LABEL",
    "FAILED_LABEL",
    "wilson_interval",
    "Reachability",
    "reachability",
    "ReachabilityCurve",
    "reachability_curve",
]

GLOBAL_LABEL = "global minimum"
SADDLE_LABEL = "saddle"
FAILED_LABEL = "not converged"


def wilson_interval(successes, n, confidence=0.95):
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    successes : array_like of int
    n : int
        Number of trials (positive).
    confidence : float, optional
        Two-sided confidence level in (0, 1).

    Returns
    -------
    lower, upper : ndarray
        Same shape as ``successes``.

    Raises
    ------
    ValueError
        If ``n`` is not positive, a count is outside ``[0, n]`` or ``confidence`` is not in (0, 1).
    """
    from scipy.special import ndtri

    successes = np.asarray(successes, dtype=float)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive whole number, got {n!r}")
    if np.any(successes < 0) or np.any(successes > n):
        raise ValueError(f"counts must be between 0 and n = {n}, got {successes.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = float(ndtri(0.5 + confidence / 2.0))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The bounds are exactly 0 and 1 at the extreme counts (rounding would leave ~1e-18).
    lower = np.where(successes == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    upper = np.where(successes == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lower, upper


@dataclass(frozen=True, eq=False)
class Reachability:
    """Where the random starts of one catalogue ended, with confidence intervals.

    Attributes
    ----------
    labels : tuple of str
        Outcomes: ``global minimum``, then each spurious family of minima (by lowest loss), then
        ``saddle`` and ``not converged`` when they occur.
    counts : ndarray of int, shape (c,)
    fractions, lower, upper : ndarray, shape (c,)
        Fraction of the starts and its Wilson interval.
    starts : int
    confidence : float
    K, M : int
    lr : float or None
        The learning rate of a ``finite_lr`` catalogue, None for gradient flow.
    """

    labels: tuple
    counts: np.ndarray
    fractions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    starts: int
    confidence: float
    K: int
    M: int
    lr: float | None

    def _interval(self, mask):
        count = int(self.counts[mask].sum())
        lower, upper = wilson_interval(count, self.starts, self.confidence)
        return count / self.starts, float(lower), float(upper)

    @property
    def global_fraction(self):
        """``(fraction, lower, upper)`` of starts ending at a global minimum."""
        return self._interval(np.array([label == GLOBAL_LABEL for label in self.labels]))

    @property
    def spurious_fraction(self):
        """``(fraction, lower, upper)`` of starts ending at a spurious minimum (any family)."""
        return self._interval(np.array([label not in (GLOBAL_LABEL, SADDLE_LABEL, FAILED_LABEL) for label in self.labels]))

    def to_dict(self):
        """JSON-ready dictionary."""
        return {"labels": list(self.labels), "counts": self.counts.tolist(), "fractions": self.fractions.tolist(),
                "lower": self.lower.tolist(), "upper": self.upper.tolist(), "starts": self.starts,
                "confidence": self.confidence, "K": self.K, "M": self.M, "lr": self.lr}


def _check_catalogue(catalogue):
    if not isinstance(catalogue, Catalogue):
        raise ValueError(f"expected a Catalogue, got {type(catalogue).__name__}")
    return catalogue


def reachability(catalogue, confidence=0.95):
    """Fractions of a catalogue's random starts ending at the global minimum and at each spurious family.

    Parameters
    ----------
    catalogue : Catalogue
    confidence : float, optional
        Level of the Wilson intervals.

    Returns
    -------
    Reachability

    Raises
    ------
    ValueError
        If ``catalogue`` is not a Catalogue or ``confidence`` is not in (0, 1).
    """
    catalogue = _check_catalogue(catalogue)
    counts, lowest = {GLOBAL_LABEL: 0}, {}
    for point in catalogue.points:
        if point.is_global:
            label = GLOBAL_LABEL
        elif point.kind is PointKind.SADDLE:
            label = SADDLE_LABEL
        else:
            label = point.family
            lowest[label] = min(lowest.get(label, np.inf), point.loss)
        counts[label] = counts.get(label, 0) + point.count
    order = [GLOBAL_LABEL] + sorted((l for l in counts if l in lowest), key=lambda l: (lowest[l], l))
    order += [SADDLE_LABEL] if SADDLE_LABEL in counts else []
    failed = int(sum(catalogue.failures.values()))
    values = [counts[label] for label in order] + ([failed] if failed else [])
    labels = tuple(order + ([FAILED_LABEL] if failed else []))
    values = np.array(values, dtype=int)
    lower, upper = wilson_interval(values, catalogue.starts, confidence)
    config = catalogue.config
    return Reachability(labels=labels, counts=values, fractions=values / catalogue.starts, lower=lower, upper=upper,
                        starts=catalogue.starts, confidence=float(confidence), K=config.K, M=config.M,
                        lr=config.lr if catalogue.regime == "finite_lr" else None)


@dataclass(frozen=True, eq=False)
class ReachabilityCurve:
    """Reachability across several catalogues (e.g. over K at fixed M, or over lr).

    Attributes
    ----------
    parameter : str
        ``K`` or ``lr``.
    values : ndarray, shape (n,)
        The parameter of each catalogue.
    labels : tuple of str
        Outcomes (union over catalogues), ``global minimum`` first, ``spurious (all families)`` second.
    fractions, lower, upper : ndarray, shape (c, n)
        Ready for :func:`landscape.dashboard.figures.reachability_figure`.
    starts : ndarray of int, shape (n,)
    """

    parameter: str
    values: np.ndarray
    labels: tuple
    fractions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    starts: np.ndarray

    def to_frame(self):
        """Long table: one row per catalogue and outcome."""
        import pandas as pd

        rows = []
        for i, value in enumerate(self.values):
            for c, label in enumerate(self.labels):
                rows.append({self.parameter: value, "outcome": label, "fraction": self.fractions[c, i],
                             "lower": self.lower[c, i], "upper": self.upper[c, i], "starts": int(self.starts[i])})
        return pd.DataFrame(rows)


SPURIOUS_LABEL = "spurious (all families)"


def reachability_curve(catalogues: Iterable[Catalogue], parameter: str = "K", confidence: float = 0.95) -> ReachabilityCurve:
    """:func:`reachability` for a list of catalogues, as curves over ``K`` or ``lr``.

    Parameters
    ----------
    catalogues : sequence of Catalogue
    parameter : {"K", "lr"}
    confidence : float, optional

    Returns
    -------
    ReachabilityCurve
        Sorted by the parameter.

    Raises
    ------
    ValueError
        If ``catalogues`` is empty, ``parameter`` is unknown, or an element is not a Catalogue.
    """
    catalogues = [_check_catalogue(c) for c in catalogues]
    if not catalogues:
        raise ValueError("catalogues must hold at least one catalogue")
    if parameter not in ("K", "lr"):
        raise ValueError(f"parameter must be 'K' or 'lr', got {parameter!r}")
    catalogues.sort(key=lambda c: getattr(c.config, parameter))
    reaches = [reachability(c, confidence) for c in catalogues]
    labels = [GLOBAL_LABEL, SPURIOUS_LABEL]
    for reach in reaches:
        labels += [label for label in reach.labels if label not in labels]
    counts = np.zeros((len(labels), len(reaches)), dtype=int)
    for i, reach in enumerate(reaches):
        for label, count in zip(reach.labels, reach.counts):
            counts[labels.index(label), i] = count
        counts[1, i] = int(round(reach.spurious_fraction[0] * reach.starts))
    starts = np.array([r.starts for r in reaches])
    lower, upper = np.empty(counts.shape), np.empty(counts.shape)
    for i, n in enumerate(starts):
        lower[:, i], upper[:, i] = wilson_interval(counts[:, i], int(n), confidence)
    return ReachabilityCurve(parameter=parameter, values=np.array([getattr(c.config, parameter) for c in catalogues]),
                             labels=tuple(labels), fractions=counts / starts[None, :], lower=lower, upper=upper,
                             starts=starts)
