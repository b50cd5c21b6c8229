"""Sweep specs: a grid of configurations, expanded into tasks with content keys and seeds.

A *spec* ``{"base": <run config>, "grid": {"K": [...], ...}, "starts": N, "seed": S}`` names a
grid; every combination of its values, applied to ``base``, is one *task*. ``grid`` may also be
a list of such objects (the union of their products), for coupled axes such as ``K in {M, M+1}``.
Grid keys: the :class:`RunConfig` fields, ``teacher.<field>`` / ``init.<field>`` for one field of
the teacher or initialisation, and ``regime``, ``starts``, ``seed``.

Each task is identified by a *key*: the first 24 hex digits of the SHA-256 of the canonical JSON
of ``{"format", "config", "starts", "seed", "regime"}`` (``format`` = :data:`RECORD_FORMAT`).
Its catalogue is drawn with ``task_seed`` = the first 64-bit word of
``numpy.random.SeedSequence([seed, int(key, 16)])`` shifted right by one bit, so a task's result
depends only on its own content: it is the same, bit for bit, on any worker, in any order, and in
a serial run.

The store of the results is in :mod:`landscape.catalogues.sweep_store`, the execution on Dask in
:mod:`landscape.catalogues.sweep`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from ..model.config import InitSpec, RunConfig, TeacherSpec
from .build import MAX_STARTS, REGIMES

__all__ = [
    "RECORD_FORMAT",
    "DEFAULT_SPEC",
    "SweepTask",
    "SweepSpec",
    "load_spec",
    "task_key",
    "task_seed",
]

#: Version of the record format; part of every task key, so a new format never mixes with old records.
RECORD_FORMAT = 1
#: The built-in spec (``landscape sweep --default-spec``), shipped in assets/.
DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "assets" / "sweep_default.json"
_SPEC_KEYS = {"base", "grid", "starts", "seed", "regime", "description"}
TASK_KEYS = ("regime", "starts", "seed")
SUB_SPECS = {"teacher": TeacherSpec, "init": InitSpec}


def canonical_json(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _float_fields(cls):
    return {f.name for f in fields(cls) if f.type == "float"}


def _normalised(spec):
    """The same dataclass with every float field a Python float (so 1 and 1.0 hash alike)."""
    changes = {name: float(getattr(spec, name)) for name in _float_fields(type(spec))}
    if isinstance(spec, RunConfig):
        changes.update(teacher=_normalised(spec.teacher), init=_normalised(spec.init))
    return replace(spec, **changes)


def whole_number(name, value, low, high):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number between {low} and {high}, got {value!r}")
    return value


def _check_task_value(name, value):
    if name == "regime":
        if value not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {value!r}")
        return value
    if name == "starts":
        return whole_number("starts", value, 1, 10**7)
    return whole_number("seed", value, 0, 2**63 - 1)


def _check_grid_key(key):
    config_fields = {f.name for f in fields(RunConfig)}
    head, _, tail = key.partition(".")
    if tail:
        allowed = {f.name for f in fields(SUB_SPECS[head])} if head in SUB_SPECS else set()
        if tail not in allowed:
            raise ValueError(f"unknown grid key {key!r}: {head!r} has no field {tail!r}" if head in SUB_SPECS
                             else f"unknown grid key {key!r}; dotted keys are teacher.<field> or init.<field>")
    elif key not in config_fields | set(TASK_KEYS):
        raise ValueError(f"unknown grid key {key!r}; allowed: {sorted(config_fields | set(TASK_KEYS))} "
                         "and teacher.<field>, init.<field>")


def _parse_grid(grid, top_level):
    """One grid object -> tuple of (key, values) pairs, with values checked to be JSON lists."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"each grid must be a non-empty object such as {{\"K\": [4, 5]}}, got {grid!r}")
    axes = []
    for key, values in grid.items():
        _check_grid_key(key)
        if key in TASK_KEYS and key in top_level:
            raise ValueError(f"{key!r} is given both at the top of the spec and in the grid; keep one")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid {key!r} must be a non-empty list of values, got {values!r}")
        try:
            texts = [canonical_json(value) for value in values]
        except ValueError:  # json refuses NaN and infinities (allow_nan=False): name the axis
            raise ValueError(f"grid {key!r} holds NaN or an infinite number: {values!r}") from None
        if len(set(texts)) != len(texts):
            raise ValueError(f"grid {key!r} lists the same value twice: {values!r}")
        if key in TASK_KEYS:
            values = [_check_task_value(key, value) for value in values]
        axes.append((key, tuple(values)))
    return tuple(axes)


def _apply_point(base, point):
    """Run config of one grid point (dict of grid values); ValueError names the point."""
    data = base.to_dict()
    for key, value in point.items():
        head, _, tail = key.partition(".")
        if tail:
            data[head] = {**data[head], tail: value}
        elif key not in TASK_KEYS:
            data[key] = value
    try:
        return _normalised(RunConfig.from_dict(data))
    except (ValueError, TypeError) as error:
        raise ValueError(f"grid point {task_label(point)} gives an invalid config: {error}") from None


def _check_catalogue_task(config, starts, regime, point):
    """What :func:`build_catalogue` would refuse in every task, refused before anything runs."""
    if starts > MAX_STARTS[regime]:
        raise ValueError(f"grid point {task_label(point)}: starts = {starts} is more than the {MAX_STARTS[regime]} "
                         f"a {regime} catalogue allows")
    if config.init.kind != "random":
        raise ValueError(f"grid point {task_label(point)}: a catalogue needs init kind 'random', got {config.init.kind!r}")


def task_label(point):
    return ", ".join(f"{key}={canonical_json(value)}" for key, value in point.items()) or "(base)"


def task_key(config, starts, seed, regime):
    """Key of a task: 24 hex digits of the SHA-256 of its canonical JSON (see the module doc)."""
    content = {"format": RECORD_FORMAT, "config": _normalised(config).to_dict(),
               "starts": int(starts), "seed": int(seed), "regime": regime}
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()[:24]


def task_seed(seed, key):
    """Seed of a task's catalogue, from the spec seed and the task key (see the module doc)."""
    word = np.random.SeedSequence([int(seed), int(key, 16)]).generate_state(1, np.uint64)[0]
    return int(word) >> 1


@dataclass(frozen=True)
class SweepTask:
    """One grid point: a catalogue of ``starts`` runs of ``config`` in ``regime``.

    Attributes
    ----------
    key : str
        Hash of the full task content (24 hex digits), the record's file name.
    point : dict
        The grid values of this point, ``{grid key: value}`` in grid order.
    config : RunConfig
    starts, seed : int
        Number of starts and the spec seed; ``task_seed`` is what the catalogue is drawn with.
    regime : str
    task_seed : int
    """

    key: str
    point: dict
    config: RunConfig
    starts: int
    seed: int
    regime: str
    task_seed: int

    @property
    def label(self):
        """The grid point in words, such as ``K=5, lr=0.5``."""
        return task_label(self.point)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep description (see the module doc for the format).

    Attributes
    ----------
    base : RunConfig
    grids : tuple
        One entry per grid object: a tuple of ``(key, values)`` pairs.
    starts, seed : int or None
        None when the key is a grid axis instead.
    regime : str
    description : str
    tasks : tuple of SweepTask
        Every task, in grid order.
    """

    base: RunConfig
    grids: tuple
    starts: int | None
    seed: int | None
    regime: str
    description: str = ""
    tasks: tuple = field(init=False, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """Parse and validate a spec; every task config is built, so a bad grid fails here.

        Raises
        ------
        ValueError
            On unknown or missing keys, an empty or unknown grid axis, a duplicated value or task,
            or a grid point whose config is invalid (the message names the point).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a sweep spec must be a JSON object, got {type(data).__name__}")
        extra = sorted(set(data) - _SPEC_KEYS)
        if extra:
            raise ValueError(f"unknown key(s) {extra} in the sweep spec; allowed: {sorted(_SPEC_KEYS)}")
        if "base" not in data or "grid" not in data:
            raise ValueError("a sweep spec needs 'base' (a run config) and 'grid' (e.g. {\"K\": [4, 5]})")
        try:
            base = _normalised(RunConfig.from_dict(data["base"]))
        except (ValueError, TypeError) as error:
            raise ValueError(f"the spec's base config is invalid: {error}") from None
        raw_grids = data["grid"] if isinstance(data["grid"], list) else [data["grid"]]
        if not raw_grids:
            raise ValueError("the spec's grid list is empty; give at least one grid object")
        grids = tuple(_parse_grid(grid, data) for grid in raw_grids)
        fixed = {key: _check_task_value(key, data[key]) for key in TASK_KEYS if key in data}
        for key in ("starts", "seed"):
            if key not in fixed and any(key not in dict(grid) for grid in grids):
                raise ValueError(f"the spec needs {key!r} (at the top level or as a grid axis)")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"description must be a string, got {description!r}")
        return cls(base, grids, fixed.get("starts"), fixed.get("seed"), fixed.get("regime", "gradient_flow"),
                   description)

    def __post_init__(self):
        object.__setattr__(self, "tasks", self._expand())

    def _expand(self):
        tasks, seen = [], {}
        for grid in self.grids:
            keys = [key for key, _ in grid]
            for values in product(*(values for _, values in grid)):
                point = dict(zip(keys, values))
                config = _apply_point(self.base, point)
                starts = point.get("starts", self.starts)
                seed = point.get("seed", self.seed)
                regime = point.get("regime", self.regime)
                _check_catalogue_task(config, starts, regime, point)
                key = task_key(config, starts, seed, regime)
                if key in seen:
                    raise ValueError(f"grid points {seen[key]} and {task_label(point)} give the same task "
                                     "(a grid value with no effect, or overlapping grids)")
                seen[key] = task_label(point)
                tasks.append(SweepTask(key, point, config, starts, seed, regime, task_seed(seed, key)))
        return tuple(tasks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; :meth:`from_dict` of it gives an equal spec."""
        grids = [{key: list(values) for key, values in grid} for grid in self.grids]
        data = {"base": self.base.to_dict(), "grid": grids[0] if len(grids) == 1 else grids,
                "regime": self.regime}
        data.update({key: getattr(self, key) for key in ("starts", "seed") if getattr(self, key) is not None})
        if self.description:
            data["description"] = self.description
        return data


def load_spec(path):
    """A :class:`SweepSpec` from a JSON file.

    Raises
    ------
    ValueError
        If the file cannot be read, is not JSON or is not a valid spec.
    """
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"cannot read sweep spec {str(path)!r}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"sweep spec {str(path)!r} is not valid JSON: {error}") from None
    except RecursionError:  # the decoder recurses once per bracket
        raise ValueError(f"sweep spec {str(path)!r} is nested too deeply to be a sweep spec") from None
    try:
        return SweepSpec.from_dict(data)
    except ValueError as error:
        raise ValueError(f"sweep spec {str(path)!r}: {error}") from None
