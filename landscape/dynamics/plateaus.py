"""Plateaus of a loss curve: where a run stalls before it escapes.

A plateau is a stretch of time, at least ``min_decades`` long on the log-time axis, over which
the loss stays within a factor ``1 + band`` (largest over smallest value), that starts after the
loss has already fallen from its initial value and that the loss leaves downwards. The stall of
gradient flow near a saddle (the unspecialised fixed point of Saad & Solla) is the textbook
case; the flat start of a log-time axis (nothing has moved yet) and the end of a converged run
(a fixed point, not a stall) are excluded by those two conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Plateau", "find_plateaus"]


@dataclass(frozen=True)
class Plateau:
    """One stall of a loss curve.

    Attributes
    ----------
    t_start, t_end : float
        First and last output times on the plateau.
    loss : float
        Its level: the geometric mean of the lowest and highest loss on it.
    low, high : float
        Lowest and highest loss on it (``high / low <= 1 + band``).
    """

    t_start: float
    t_end: float
    loss: float
    low: float
    high: float

    @property
    def decades(self) -> float:
        """Length on the log-time axis, ``log10(t_end / t_start)``."""
        return float(np.log10(self.t_end / self.t_start))


def _check(t, loss, band, min_decades):
    t, loss = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"t must be a 1-D array of at least 2 times, got shape {t.shape}")
    if loss.shape != t.shape:
        raise ValueError(f"loss must have the shape of t {t.shape}, got {loss.shape}")
    if not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ValueError("t must be finite, non-negative and strictly increasing")
    for name, value in (("band", band), ("min_decades", min_decades)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return t, loss


def _stretches(t, loss, usable, band, min_decades, first):
    """Index ranges [i, j] of maximal stretches within the band that the loss leaves downwards."""
    level = np.where(usable, loss, np.nan)
    stretches, i = [], first
    while i < t.size - 1:
        if not usable[i]:
            i += 1
            continue
        # The longest stretch from i within the band (a NaN ends it: the comparison fails).
        with np.errstate(invalid="ignore", over="ignore"):
            ratio = np.fmax.accumulate(level[i:]) / np.fmin.accumulate(level[i:])
            inside = (ratio <= 1.0 + band) & usable[i:]
        j = i + (int(np.argmin(inside)) - 1 if not inside.all() else inside.size - 1)
        escaped = j + 1 < t.size and usable[j + 1] and loss[j + 1] < np.min(loss[i : j + 1])
        if j > i and escaped and np.log10(t[j] / t[i]) >= min_decades:
            stretches.append([i, j])
            i = j + 1
        else:
            i += 1
    return stretches


def find_plateaus(t, loss, band: float = 0.1, min_decades: float = 0.3) -> tuple[Plateau, ...]:
    """The plateaus of a loss curve, in time order.

    Parameters
    ----------
    t : array_like, shape (n,)
        Output times (non-negative, increasing; log-spaced grids resolve plateaus best).
    loss : array_like, shape (n,)
        Loss at those times (NaN or non-positive values break a plateau).
    band : float, optional
        Largest relative spread of a stretch: ``max / min <= 1 + band`` (default 0.1, 10%).
        Stretches that follow each other with no drop between them (the next value within
        the band of the last stretch's lowest: a slow drift) form one plateau, whose ``high /
        low`` may then exceed ``1 + band``.
    min_decades : float, optional
        Shortest stretch on the log-time axis, ``log10(t_end / t_start)`` (default 0.3, a factor
        2 in time).

    Returns
    -------
    tuple of Plateau
        Each starts once the loss has fallen below half its initial value (before that, the
        flat start of a log-time axis is no stall) and is followed by a value below its lowest
        loss (the end of a converged run is no stall either; nor is a stretch followed by NaN,
        where it is unknown whether the loss escaped); empty when the run never stalls.

    Raises
    ------
    ValueError
        If ``t`` and ``loss`` are not 1-D arrays of the same length >= 2, ``t`` is not
        increasing and non-negative, or ``band`` or ``min_decades`` is not positive.
    """
    t, loss = _check(t, loss, band, min_decades)
    usable = np.isfinite(loss) & (loss > 0)
    started = np.flatnonzero(usable & (t > 0) & (loss < 0.5 * loss[0]))
    if not started.size:
        return ()
    merged: list = []
    for i, j in _stretches(t, loss, usable, band, min_decades, int(started[0])):
        if merged and merged[-1][1] + 1 == i and loss[i] * (1.0 + band) >= np.min(loss[merged[-1][0] : i]):
            merged[-1][1] = j  # the loss drifted out of the band, not dropped: the same stall
        else:
            merged.append([i, j])
    plateaus = []
    for i, j in merged:
        low, high = float(np.min(loss[i : j + 1])), float(np.max(loss[i : j + 1]))
        plateaus.append(Plateau(float(t[i]), float(t[j]), float(np.sqrt(low * high)), low, high))
    return tuple(plateaus)
