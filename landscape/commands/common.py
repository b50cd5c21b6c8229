"""Helpers shared by the CLI commands: reading JSON inputs and configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..model.config import RunConfig
from ..model.loss import overlaps_from_weights
from ..kernels.overlaps import validate_overlaps

__all__ = ["read_json", "read_config", "read_point", "Point"]


def read_json(path, what):
    """Parse a JSON file, turning every failure into a ValueError naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"cannot read {what} file {path!r}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path!r} is not valid JSON: {error}") from None


def read_config(path):
    """A validated :class:`RunConfig` from a JSON file."""
    return RunConfig.from_dict(read_json(path, "config"))


class Point:
    """A point of the landscape read from a file: overlaps, and weights when given."""

    def __init__(self, Q, R, T, W=None, W_teacher=None):
        self.Q, self.R, self.T = validate_overlaps(Q, R, T)
        self.W, self.W_teacher = W, W_teacher


def read_point(path):
    """Read ``{"Q", "R", "T"}`` or ``{"W", "W_teacher"}`` from a JSON file.

    Raises
    ------
    ValueError
        If the file holds neither form or the values are invalid.
    """
    data = read_json(path, "point")
    if not isinstance(data, dict):
        raise ValueError(f"point file {path!r} must hold a JSON object")
    if {"W", "W_teacher"} <= set(data):
        W = np.asarray(data["W"], dtype=float)
        W_teacher = np.asarray(data["W_teacher"], dtype=float)
        return Point(*overlaps_from_weights(W, W_teacher), W=W, W_teacher=W_teacher)
    if {"Q", "R", "T"} <= set(data):
        return Point(data["Q"], data["R"], data["T"])
    raise ValueError(
        f"point file {path!r} must hold either keys Q, R, T (overlaps) or W, W_teacher (weights); "
        f"it has {sorted(data)}"
    )
