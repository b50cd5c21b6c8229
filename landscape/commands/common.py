"""Helpers shared by the CLI commands: reading JSON inputs and configs."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ..kernels.overlaps import validate_overlaps
from ..model.config import RunConfig
from ..model.loss import overlaps_from_weights

__all__ = ["read_json", "read_config", "read_point", "point_from_dict", "parse_json_text", "Point", "bounded_int",
           "bounded_float",
           "MAX_INPUT_BYTES"]

#: Largest JSON input file read (a config, point or spec is a few kilobytes; weights of K = 64 units
#: in d = 10,000 dimensions are about 15 MB).
MAX_INPUT_BYTES = 64 * 2**20


def parse_json_text(text, what):
    """Parse JSON text of an input; ValueError (never RecursionError) on anything malformed.

    Raises
    ------
    ValueError
        If the text is not JSON or is nested too deeply for the decoder.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} is not valid JSON: {error}") from None
    except RecursionError:
        # The decoder recurses once per '[' or '{': thousands of them exhaust the stack.
        raise ValueError(f"{what} is nested too deeply (thousands of brackets); it is not a valid input") from None


def read_json(path, what):
    """Parse a JSON file, turning every failure into a ValueError naming the file.

    Raises
    ------
    ValueError
        If the file cannot be read, is larger than :data:`MAX_INPUT_BYTES`, is not JSON or is
        nested too deeply for the decoder.
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_INPUT_BYTES:
            raise ValueError(f"{what} file {path!r} is {size / 2**20:.0f} MB, more than the "
                             f"{MAX_INPUT_BYTES // 2**20} MB allowed")
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"cannot read {what} file {path!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} file {path!r} is not UTF-8 text") from None
    return parse_json_text(text, f"{what} file {path!r}")


def bounded_int(low, high):
    """An argparse ``type`` for a whole number in ``[low, high]``.

    ``1e6`` is accepted when it is a whole number. ArgumentTypeError makes argparse print this
    message after the option's name (a ValueError would read "invalid <function name> value").
    """

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not (math.isfinite(number) and number.is_integer()):
                raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
            value = int(number)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low:,} to {high:,}, got {text}")
        return value

    return parse


def bounded_float(low, high):
    """An argparse ``type`` for a finite number in ``(low, high]``."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and low < value <= high):
            raise argparse.ArgumentTypeError(f"must be a number in ({low:g}, {high:g}], got {text}")
        return value

    return parse


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
    try:
        return point_from_dict(data)
    except ValueError as error:
        raise ValueError(f"point file {path!r}: {error}") from None


_POINT_FORMS = ({"Q", "R", "T"}, {"W", "W_teacher"})


def _number_matrix(name, value):
    """A 2-D float array from nested lists of numbers; booleans, strings and ragged rows are refused."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise ValueError(f"{name} must be a matrix: a non-empty list of rows (lists of numbers)")
    for row in value:
        for entry in row:
            if isinstance(entry, bool) or not isinstance(entry, (int, float)):
                raise ValueError(f"{name} must hold numbers only, got {entry!r}")
    if len({len(row) for row in value}) != 1 or not value[0]:
        raise ValueError(f"{name} must have rows of one non-zero length")
    array = np.array(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return array


def point_from_dict(data):
    """A :class:`Point` from ``{"Q", "R", "T"}`` or ``{"W", "W_teacher"}`` (exactly one of the two forms).

    Raises
    ------
    ValueError
        If ``data`` is not an object holding exactly the keys of one form, or a value is not a
        matrix of finite numbers, or the overlaps are invalid.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a point must be a JSON object, got {type(data).__name__}")
    keys = set(data)
    if keys not in _POINT_FORMS:
        both = all(keys & form for form in _POINT_FORMS)
        why = ("it mixes the two forms; give one" if both else
               f"unknown key(s) {sorted(keys - set().union(*_POINT_FORMS))}" if keys - set().union(*_POINT_FORMS)
               else f"it has {sorted(keys)}")
        raise ValueError(f"a point holds either exactly Q, R, T (overlaps) or exactly W, W_teacher (weights): {why}")
    matrices = {key: _number_matrix(key, value) for key, value in data.items()}
    if "W" in matrices:
        W, W_teacher = matrices["W"], matrices["W_teacher"]
        if W.shape[1] != W_teacher.shape[1]:
            raise ValueError(f"W and W_teacher must have the same number of columns, got {W.shape[1]} and "
                             f"{W_teacher.shape[1]}")
        return Point(*overlaps_from_weights(W, W_teacher), W=W, W_teacher=W_teacher)
    return Point(matrices["Q"], matrices["R"], matrices["T"])


def _where_value(text):
    """A ``--where`` value: JSON when it parses (numbers, booleans), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_where(items):
    """``--where NAME=VALUE`` options as a dict (values read as JSON where they parse, else text)."""
    where = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--where takes NAME=VALUE (e.g. M=6, K-M=0, lr=0.5), got {item!r}")
        where[name.strip()] = _where_value(value.strip())
    return where


def confidence_level(text):
    """An argparse ``type`` for a confidence level in (0, 1)."""
    # ArgumentTypeError keeps this message in argparse's one-line error.
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value
