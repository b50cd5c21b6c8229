"""Sweeps: one catalogue per point of a grid of configurations, run on Dask, stored resumably.

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

The store is a folder: ``sweep.json`` (the spec) and ``records/<key>.json``, one file per finished
task (``status`` ``done`` with the result, or ``failed`` with the ``reason``), each written to a
temporary file and moved into place with :func:`os.replace`, so a record is either complete or
absent. Running the same spec again computes only the tasks without a record.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from functools import cached_property, partial
from itertools import product
from pathlib import Path

import numpy as np

from .catalogue import MAX_STARTS, REGIMES, Catalogue, PointKind, build_catalogue, reachability, reachability_curve
from .config import InitSpec, RunConfig, TeacherSpec

__all__ = [
    "RECORD_FORMAT",
    "DEFAULT_SPEC",
    "DEFAULT_STORE",
    "TaskStatus",
    "SweepStatus",
    "SweepTask",
    "SweepSpec",
    "TaskRecord",
    "TaskError",
    "SweepStore",
    "ProgressReport",
    "SweepResult",
    "load_spec",
    "load_store",
    "task_key",
    "task_seed",
    "execute_task",
    "default_workers",
    "run_sweep",
]

#: Version of the record format; part of every task key, so a new format never mixes with old records.
RECORD_FORMAT = 1
#: The built-in spec (``landscape sweep --default-spec``) and the store it generates, shipped in assets/.
DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "assets" / "sweep_default.json"
DEFAULT_STORE = Path(__file__).resolve().parent.parent / "assets" / "sweep_default"
_SPEC_FILE = "sweep.json"
_RECORDS = "records"
_SPEC_KEYS = {"base", "grid", "starts", "seed", "regime", "description"}
_TASK_KEYS = ("regime", "starts", "seed")
_SUB_SPECS = {"teacher": TeacherSpec, "init": InitSpec}
_STALE_TEMP_SECONDS = 3600.0
#: How long to wait for a scheduler given by address (it may still be starting, e.g. in a batch job).
CONNECT_TIMEOUT = "30s"


class TaskStatus(enum.Enum):
    """State of one task in a store; the value is a sentence, ``.code`` the short name."""

    DONE = "computed and stored"
    FAILED = "failed; its record says why"
    MISSING = "not computed yet"

    @property
    def code(self):
        """``done``, ``failed`` or ``missing``."""
        return self.name.lower()


class SweepStatus(enum.Enum):
    """State of a whole sweep; the value is a sentence, ``.code`` the short name."""

    COMPLETE = "every task of the sweep is done"
    FAILURES = "every task ran, but some failed: their records say why"
    INCOMPLETE = "some tasks are still missing: run the same command again to resume"

    @property
    def code(self):
        """``complete``, ``failures`` or ``incomplete``."""
        return self.name.lower()


def _canonical_json(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _float_fields(cls):
    return {f.name for f in fields(cls) if f.type == "float"}


def _normalised(spec):
    """The same dataclass with every float field a Python float (so 1 and 1.0 hash alike)."""
    changes = {name: float(getattr(spec, name)) for name in _float_fields(type(spec))}
    if isinstance(spec, RunConfig):
        changes.update(teacher=_normalised(spec.teacher), init=_normalised(spec.init))
    return replace(spec, **changes)


def _whole(name, value, low, high):
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
        return _whole("starts", value, 1, 10**7)
    return _whole("seed", value, 0, 2**63 - 1)


def _check_grid_key(key):
    config_fields = {f.name for f in fields(RunConfig)}
    head, _, tail = key.partition(".")
    if tail:
        allowed = {f.name for f in fields(_SUB_SPECS[head])} if head in _SUB_SPECS else set()
        if tail not in allowed:
            raise ValueError(f"unknown grid key {key!r}: {head!r} has no field {tail!r}" if head in _SUB_SPECS
                             else f"unknown grid key {key!r}; dotted keys are teacher.<field> or init.<field>")
    elif key not in config_fields | set(_TASK_KEYS):
        raise ValueError(f"unknown grid key {key!r}; allowed: {sorted(config_fields | set(_TASK_KEYS))} "
                         "and teacher.<field>, init.<field>")


def _parse_grid(grid, top_level):
    """One grid object -> tuple of (key, values) pairs, with values checked to be JSON lists."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"each grid must be a non-empty object such as {{\"K\": [4, 5]}}, got {grid!r}")
    axes = []
    for key, values in grid.items():
        _check_grid_key(key)
        if key in _TASK_KEYS and key in top_level:
            raise ValueError(f"{key!r} is given both at the top of the spec and in the grid; keep one")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid {key!r} must be a non-empty list of values, got {values!r}")
        texts = [_canonical_json(value) for value in values]
        if len(set(texts)) != len(texts):
            raise ValueError(f"grid {key!r} lists the same value twice: {values!r}")
        if key in _TASK_KEYS:
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
        elif key not in _TASK_KEYS:
            data[key] = value
    try:
        return _normalised(RunConfig.from_dict(data))
    except (ValueError, TypeError) as error:
        raise ValueError(f"grid point {_label(point)} gives an invalid config: {error}") from None


def _check_catalogue_task(config, starts, regime, point):
    """What :func:`build_catalogue` would refuse in every task, refused before anything runs."""
    if starts > MAX_STARTS[regime]:
        raise ValueError(f"grid point {_label(point)}: starts = {starts} is more than the {MAX_STARTS[regime]} "
                         f"a {regime} catalogue allows")
    if config.init.kind != "random":
        raise ValueError(f"grid point {_label(point)}: a catalogue needs init kind 'random', got {config.init.kind!r}")


def _label(point):
    return ", ".join(f"{key}={_canonical_json(value)}" for key, value in point.items()) or "(base)"


def task_key(config, starts, seed, regime):
    """Key of a task: 24 hex digits of the SHA-256 of its canonical JSON (see the module doc)."""
    content = {"format": RECORD_FORMAT, "config": _normalised(config).to_dict(),
               "starts": int(starts), "seed": int(seed), "regime": regime}
    return hashlib.sha256(_canonical_json(content).encode()).hexdigest()[:24]


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
        return _label(self.point)


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
    def from_dict(cls, data):
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
        fixed = {key: _check_task_value(key, data[key]) for key in _TASK_KEYS if key in data}
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
                    raise ValueError(f"grid points {seen[key]} and {_label(point)} give the same task "
                                     "(a grid value with no effect, or overlapping grids)")
                seen[key] = _label(point)
                tasks.append(SweepTask(key, point, config, starts, seed, regime, task_seed(seed, key)))
        return tuple(tasks)

    def to_dict(self):
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
    try:
        return SweepSpec.from_dict(data)
    except ValueError as error:
        raise ValueError(f"sweep spec {str(path)!r}: {error}") from None


# ---------------------------------------------------------------- the store on disk


def _write_atomic(path, data):
    """Write JSON next to ``path`` and move it into place: readers see all of it or nothing."""
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w") as handle:
            json.dump(data, handle, allow_nan=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _read_store_spec(root):
    try:
        data = json.loads((root / _SPEC_FILE).read_text())
        return SweepSpec.from_dict(data["spec"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(root)!r} is not a readable sweep store ({_SPEC_FILE}: {error})") from None


def _spec_difference(old, new):
    old, new = old.to_dict(), new.to_dict()
    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    if "base" in keys:
        fields_ = sorted(k for k in set(old["base"]) | set(new["base"]) if old["base"].get(k) != new["base"].get(k))
        keys[keys.index("base")] = f"base ({', '.join(fields_)})"
    return ", ".join(keys)


def _open_store(path, spec):
    """Create the store for ``spec`` or check that an existing one holds the same spec."""
    root = Path(path)
    if (root / _SPEC_FILE).exists():
        stored = _read_store_spec(root)
        # Same tasks = same spec: spellings that give the same configs (1 or 1.0) are equal.
        if {task.key for task in stored.tasks} != {task.key for task in spec.tasks}:
            raise ValueError(f"store {str(root)!r} holds a different sweep (the specs differ in: "
                             f"{_spec_difference(stored, spec)}); use a new --store folder")
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{str(root)!r} exists and is not a sweep store (no {_SPEC_FILE}); "
                         "give a new or empty folder")
    else:
        (root / _RECORDS).mkdir(parents=True, exist_ok=True)
        _write_atomic(root / _SPEC_FILE, {"format": RECORD_FORMAT, "spec": spec.to_dict(),
                                          "created": _now()})
    (root / _RECORDS).mkdir(exist_ok=True)
    return root


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_records(root):
    """``{key: record dict}`` of every readable record; unreadable ones are skipped with a warning."""
    records = {}
    for path in sorted((root / _RECORDS).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            if data.get("status") not in ("done", "failed") or path.stem != data["key"]:
                raise ValueError("not a task record")
            records[data["key"]] = data
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(f"sweep record {path} is unreadable ({error}); its task counts as missing", stacklevel=3)
    return records


def _remove_stale_temporaries(root):
    """Temporary files of runs killed mid-write (a live run renames its own within milliseconds)."""
    limit = time.time() - _STALE_TEMP_SECONDS
    for path in (root / _RECORDS).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < limit:
                path.unlink()


class TaskError(RuntimeError):
    """An exception raised by a task function (other than ``ValueError``), as seen by the client."""


@dataclass(frozen=True)
class TaskRecord:
    """The stored outcome of one task (the JSON record, parsed).

    Attributes
    ----------
    task : SweepTask
    status : TaskStatus
        ``DONE`` or ``FAILED``.
    reason : str
        Why it failed; empty when done.
    result : dict or None
        The task's result (``Catalogue.to_dict()`` for the default task); None when failed.
    seconds, cpu_seconds : float
        Wall-clock and CPU time of the task on its worker (0 when it never ran to the end); a wall
        time well above the CPU time means the worker shared its core with other work.
    worker : str
        ``host:pid`` of the worker, or empty.
    finished : str
        UTC time the record was made, ISO 8601.
    run_id : str
        Identifier of the ``run_sweep`` call that computed it (one per invocation).
    function : str
        ``module:name`` of the task function.
    """

    task: SweepTask
    status: TaskStatus
    reason: str
    result: dict | None
    seconds: float
    cpu_seconds: float
    worker: str
    finished: str
    run_id: str
    function: str

    @property
    def success(self):
        """True when the task is done."""
        return self.status is TaskStatus.DONE

    @property
    def message(self):
        """The status in words, with the reason of a failure."""
        return self.status.value if self.success else f"{self.status.value}: {self.reason}"

    def catalogue(self):
        """The result as a :class:`~landscape.catalogue.Catalogue`.

        Raises
        ------
        ValueError
            If the task failed (there is no result).
        """
        if self.result is None:
            raise ValueError(f"task {self.task.label} failed ({self.reason}); it has no catalogue")
        return Catalogue.from_dict(self.result)


def _record_dict(task, status, run_id, function, reason="", result=None, seconds=0.0, cpu_seconds=0.0, worker=""):
    return {
        "format": RECORD_FORMAT, "key": task.key, "status": status.code, "reason": reason,
        "point": task.point, "config": task.config.to_dict(), "starts": task.starts, "seed": task.seed,
        "regime": task.regime, "task_seed": task.task_seed, "result": result, "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "worker": worker, "finished": _now(), "run_id": run_id, "function": function,
        "landscape_version": _package_version(),
    }


def _package_version():
    from . import __version__  # at call time: the package is fully imported by then

    return __version__


def _parse_record(data, task):
    return TaskRecord(task, TaskStatus[data["status"].upper()], data.get("reason", ""), data.get("result"),
                      float(data.get("seconds", 0.0)), float(data.get("cpu_seconds", 0.0)), data.get("worker", ""), data.get("finished", ""),
                      data.get("run_id", ""), data.get("function", ""))


def _function_name(function):
    inner = getattr(function, "func", function)  # functools.partial
    return f"{getattr(inner, '__module__', '?')}:{getattr(inner, '__qualname__', repr(inner))}"


def execute_task(function, task, run_id=""):
    """Run one task and return its record (a JSON-ready dict); this is what a Dask worker runs.

    Parameters
    ----------
    function : callable
        ``function(config, starts=, seed=, regime=)`` returning an object with ``to_dict()`` or a
        JSON-ready dict; :func:`landscape.catalogue.build_catalogue` by default in :func:`run_sweep`.
    task : SweepTask
    run_id : str, optional
        Stored in the record.

    Returns
    -------
    dict
        A record with status ``done``, or ``failed`` with the message when the function raised
        ``ValueError`` (an input the task cannot handle; retrying would fail again).

    Raises
    ------
    TaskError
        For anything else the function raises, so that Dask retries the task (and the client
        can tell the task's own errors from the cluster's).
    """
    name = _function_name(function)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = function(task.config, starts=task.starts, seed=task.task_seed, regime=task.regime)
    except ValueError as error:
        return _record_dict(task, TaskStatus.FAILED, run_id, name, reason=f"invalid input: {error}")
    except Exception as error:  # noqa: BLE001 - marked as the task's own, so the client can record it
        raise TaskError(f"{type(error).__name__}: {error}") from error
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    data = result.to_dict() if hasattr(result, "to_dict") else result
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return _record_dict(task, TaskStatus.DONE, run_id, name, result=data, seconds=seconds,
                        cpu_seconds=cpu_seconds, worker=worker)


@dataclass(frozen=True)
class SweepStore:
    """A results store read from disk: the spec and one record per finished task.

    Attributes
    ----------
    path : pathlib.Path
    spec : SweepSpec
    records : tuple of TaskRecord
        Finished tasks (done or failed), in the spec's task order.
    """

    path: Path
    spec: SweepSpec
    records: tuple

    @property
    def n_total(self):
        """Number of tasks in the spec."""
        return len(self.spec.tasks)

    @property
    def n_done(self):
        """Number of tasks done."""
        return sum(record.success for record in self.records)

    @property
    def n_failed(self):
        """Number of tasks recorded as failed."""
        return len(self.records) - self.n_done

    @property
    def n_missing(self):
        """Number of tasks without a record."""
        return self.n_total - len(self.records)

    @property
    def status(self):
        """:class:`SweepStatus` of the whole sweep."""
        if self.n_missing:
            return SweepStatus.INCOMPLETE
        return SweepStatus.FAILURES if self.n_failed else SweepStatus.COMPLETE

    @property
    def success(self):
        """True when every task is done."""
        return self.status is SweepStatus.COMPLETE

    @property
    def message(self):
        """Counts and status in words."""
        return (f"{self.n_done} done, {self.n_failed} failed, {self.n_missing} missing of "
                f"{self.n_total} tasks: {self.status.value}")

    def missing_tasks(self):
        """Tasks of the spec without a record, in spec order."""
        finished = {record.task.key for record in self.records}
        return tuple(task for task in self.spec.tasks if task.key not in finished)

    def select(self, where=None):
        """Done records whose grid values or config fields match ``where``.

        Parameters
        ----------
        where : dict, optional
            ``{name: value}`` with grid keys (``"lr"``, ``"teacher.rho"``, ``"regime"``),
            :class:`RunConfig` fields (``"K"``, ``"M"``) or ``"K-M"`` (extra student units).

        Returns
        -------
        tuple of TaskRecord

        Raises
        ------
        ValueError
            If a name is neither a grid key nor a config field.
        """
        where = dict(where or {})
        return tuple(record for record in self.records
                     if record.success and all(_value_of(record.task, name) == value for name, value in where.items()))

    @cached_property
    def _catalogues(self):
        """``{key: Catalogue}`` of the done records whose result is a catalogue (parsed once)."""
        parsed = {}
        for record in self.records:
            if record.success:
                with contextlib.suppress(ValueError):
                    parsed[record.task.key] = Catalogue.from_dict(record.result)
        return parsed

    def catalogues(self, where=None):
        """Catalogues of the done tasks matching ``where`` (see :meth:`select`), in spec order.

        Returns
        -------
        tuple of Catalogue

        Raises
        ------
        ValueError
            If ``where`` names an unknown key, or a selected result is not a catalogue.
        """
        chosen = self.select(where)
        missing = [record.task.label for record in chosen if record.task.key not in self._catalogues]
        if missing:
            raise ValueError(f"the results of {missing} are not catalogues (a custom task function?)")
        return tuple(self._catalogues[record.task.key] for record in chosen)

    def reachability_curve(self, parameter="K", where=None, confidence=0.95):
        """Where random starts end, over ``K`` (or ``lr``), for the catalogues selected by ``where``.

        Parameters
        ----------
        parameter : {"K", "lr"}
        where : dict, optional
            Selection (see :meth:`select`); it must leave one catalogue per value of ``parameter``,
            e.g. ``{"K-M": 0}`` for the catalogues with ``K = M``.
        confidence : float, optional
            Level of the Wilson intervals.

        Returns
        -------
        landscape.catalogue.ReachabilityCurve

        Raises
        ------
        ValueError
            If nothing is selected, or two selected catalogues share a value of ``parameter``
            (the message names the grid keys that tell them apart).
        """
        catalogues = self.catalogues(where)
        if not catalogues:
            raise ValueError(f"no done catalogue matches {where!r}")
        values = [getattr(catalogue.config, parameter, None) for catalogue in catalogues]
        if len(set(values)) != len(values):
            chosen = self.select(where)
            keys = sorted({name for record in chosen for name in record.task.point if name != parameter
                           and len({_canonical_json(_value_of(r.task, name)) for r in chosen}) > 1})
            raise ValueError(f"{len(values)} catalogues selected for {len(set(values))} values of {parameter}: "
                             f"narrow the selection with where={{...}} on {keys + ['K-M']}")
        return reachability_curve(catalogues, parameter=parameter, confidence=confidence)

    def to_frame(self):
        """One row per task of the spec: grid values, ``K``, ``M``, status, and reachability figures.

        Returns
        -------
        pandas.DataFrame
            Columns ``key``, ``K``, ``M``, ``regime``, ``starts``, one per grid key, ``status``,
            ``reason``, ``seconds``, and for catalogues ``global_fraction``, ``spurious_fraction``
            with their Wilson 95% bounds (``*_lower``, ``*_upper``), ``n_points`` and ``n_minima``.
        """
        import pandas as pd

        by_key = {record.task.key: record for record in self.records}
        rows = []
        for task in self.spec.tasks:
            record = by_key.get(task.key)
            row = {"key": task.key, "K": task.config.K, "M": task.config.M, "regime": task.regime,
                   "starts": task.starts}
            row.update({name: _cell(value) for name, value in task.point.items()})
            row.update(status=record.status.code if record else TaskStatus.MISSING.code,
                       reason=record.reason if record else "", seconds=record.seconds if record else np.nan)
            if task.key in self._catalogues:
                row.update(_reachability_row(self._catalogues[task.key]))
            rows.append(row)
        return pd.DataFrame(rows)


def _reachability_row(catalogue):
    reach = reachability(catalogue)
    row = {"n_points": len(catalogue.points), "n_minima": sum(p.kind is PointKind.MINIMUM for p in catalogue.points)}
    for name, (fraction, lower, upper) in (("global", reach.global_fraction), ("spurious", reach.spurious_fraction)):
        row.update({f"{name}_fraction": fraction, f"{name}_lower": lower, f"{name}_upper": upper})
    return row


def _cell(value):
    return _canonical_json(value) if isinstance(value, (dict, list)) else value


def _value_of(task, name):
    if name == "K-M":
        return task.config.K - task.config.M
    if name in task.point:
        return task.point[name]
    if name in _TASK_KEYS:
        return getattr(task, name)
    head, _, tail = name.partition(".")
    if hasattr(task.config, head) and head in {f.name for f in fields(RunConfig)}:
        value = getattr(task.config, head)
        if not tail:
            return value.to_dict() if head in _SUB_SPECS else value
        if hasattr(value, tail):
            return getattr(value, tail)
    raise ValueError(f"unknown selection key {name!r}; use a grid key or a config field such as 'K' or 'lr'")


def load_store(path):
    """Read a results store.

    Parameters
    ----------
    path : str or pathlib.Path
        The store folder (the ``--store`` of ``landscape sweep``).

    Returns
    -------
    SweepStore

    Raises
    ------
    ValueError
        If the folder holds no readable ``sweep.json``.

    Notes
    -----
    Records whose key is not a task of the stored spec are ignored; unreadable records are
    skipped with a warning and count as missing.
    """
    root = Path(path)
    if not (root / _SPEC_FILE).is_file():
        raise ValueError(f"{str(root)!r} is not a sweep store (it has no {_SPEC_FILE})")
    spec = _read_store_spec(root)
    data = _read_records(root)
    records = tuple(_parse_record(data[task.key], task) for task in spec.tasks if task.key in data)
    return SweepStore(root, spec, records)


# ---------------------------------------------------------------- running on Dask


@dataclass(frozen=True)
class ProgressReport:
    """Where a running sweep stands; passed to the ``progress`` callback of :func:`run_sweep`.

    Attributes
    ----------
    finished : int
        Tasks finished (done or failed) by this run so far.
    to_run : int
        Tasks this run computes.
    done, failed, total : int
        Counts over the whole sweep, records from earlier runs included.
    elapsed : float
        Seconds since the tasks were submitted.
    eta : float or None
        Estimated seconds left (None before the first task finishes).
    engine : str
        Where the tasks run, e.g. ``LocalCluster, 2 worker processes``.
    last : str
        Grid point of the task just finished (empty in the first report).
    """

    finished: int
    to_run: int
    done: int
    failed: int
    total: int
    elapsed: float
    eta: float | None
    engine: str
    last: str = ""


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes
    ----------
    store : SweepStore
        The store as it is after the run.
    computed : int
        Tasks computed by this run (the others had records already).
    engine : str
        Where the tasks ran (empty when there was nothing to compute).
    startup_seconds, compute_seconds : float
        Time to start or reach the Dask cluster, and from submission to the last record.
    run_id : str
    """

    store: SweepStore
    computed: int
    engine: str
    startup_seconds: float
    compute_seconds: float
    run_id: str

    @property
    def status(self):
        """:class:`SweepStatus` of the store after the run."""
        return self.store.status

    @property
    def success(self):
        """True when every task of the sweep is done."""
        return self.store.success

    @property
    def message(self):
        """Counts and status in words."""
        return self.store.message

    def to_dict(self):
        """JSON-ready summary (the output of ``landscape sweep``)."""
        store = self.store
        return {"done": store.n_done, "failed": store.n_failed, "missing": store.n_missing,
                "total": store.n_total, "computed": self.computed, "status": self.status.code,
                "message": self.message, "store": str(store.path), "engine": self.engine,
                "startup_seconds": self.startup_seconds, "compute_seconds": self.compute_seconds,
                "run_id": self.run_id}


def default_workers():
    """Number of cores this process may use (the default size of the local cluster)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def _dask_client(client, scheduler, workers):
    from distributed import Client, LocalCluster

    if client is not None:
        yield client, f"Dask client of {client.scheduler.address}"
    elif scheduler is not None:
        try:
            connected = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as error:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {error}") from None
        with connected:
            yield connected, f"Dask scheduler {scheduler} ({len(connected.nthreads())} workers now)"
    else:
        # One single-threaded process per core: the tasks are numpy-bound and hold the GIL.
        # Port 0 for the HTTP endpoints: 8787 may belong to another cluster on this machine.
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as local:
            yield local, f"LocalCluster, {workers} worker process{'es' if workers > 1 else ''}"


def _collect(future, task, run_id, function, retries):
    """A finished future's record: an error of the task itself becomes a failed record.

    Raises
    ------
    ValueError
        When the cluster could not run the task at all (e.g. the scheduler or the workers cannot
        import ``landscape``): that is not the task's fault, so nothing is recorded.
    """
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        reason = ("the worker computing it died every time it was tried "
                  "(out of memory, or a crash in compiled code)")
    except TaskError as error:
        reason = f"{error} (after {retries} retries)"
    except Exception as error:  # noqa: BLE001 - any other failure is the cluster's, reported as such
        if future.status != "error":
            raise
        said = " ".join(str(error).split())  # one line: the CLI prints the message as is
        raise ValueError(f"the Dask cluster could not run task {task.label}: {type(error).__name__}: {said} "
                         "(are landscape and its dependencies installed, at the same version, on the "
                         "scheduler and on every worker?)") from None
    return _record_dict(task, TaskStatus.FAILED, run_id, _function_name(function), reason=reason)


def _compute(client, tasks, function, root, run_id, retries, on_record):
    from distributed import as_completed

    # The run id in the Dask key: a key cancelled by an interrupted run may linger on a shared
    # scheduler, and resubmitting the very same key would inherit that cancellation.
    by_key = {f"landscape-sweep-{task.key}-{run_id[:8]}": task for task in tasks}
    futures = client.map(partial(execute_task, function, run_id=run_id), tasks, key=list(by_key), retries=retries)
    try:
        for future in as_completed(futures):
            task = by_key[future.key]
            record = _collect(future, task, run_id, function, retries)
            _write_atomic(root / _RECORDS / f"{task.key}.json", record)
            future.release()
            on_record(record)
    finally:
        with contextlib.suppress(Exception):
            client.cancel([future for future in futures if not future.done()])


def _check_run_arguments(workers, scheduler, client, retries, progress):
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(report), got {progress!r}")
    if sum(value is not None for value in (workers, scheduler, client)) > 1:
        raise ValueError("give at most one of workers (a local cluster), scheduler (an address) and client")
    if workers is not None:
        _whole("workers", workers, 1, 4096)
    _whole("retries", retries, 0, 100)
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
        raise ValueError(f"scheduler must be an address such as 'tcp://10.0.0.5:8786', got {scheduler!r}")


def run_sweep(spec, store, *, workers=None, scheduler=None, client=None, function=None, retries=2,
              retry_failed=False, progress=None):
    """Compute every task of a sweep that has no record in the store, on Dask.

    Parameters
    ----------
    spec : SweepSpec or dict
    store : str or pathlib.Path
        Store folder: created if new or empty; if it exists it must hold the same spec.
    workers : int, optional
        Size of the local cluster (default: one process per core, at most one per task).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to use instead.
    client : distributed.Client, optional
        An existing client to use instead (it is left open).
    function : callable, optional
        Task function ``function(config, starts=, seed=, regime=)``; default
        :func:`landscape.catalogue.build_catalogue`. Workers must be able to import it.
    retries : int, optional
        Extra attempts for a task that raises anything but ``ValueError`` (default 2). A task
        whose worker dies is rescheduled by Dask (``distributed.scheduler.allowed-failures``).
    retry_failed : bool, optional
        Compute tasks recorded as failed again (default: leave them).
    progress : callable, optional
        Called with a :class:`ProgressReport` before the first task and after each one.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        On an invalid spec or argument, a store holding another spec, or an unreachable scheduler.
    """
    spec = spec if isinstance(spec, SweepSpec) else SweepSpec.from_dict(spec)
    _check_run_arguments(workers, scheduler, client, retries, progress)
    root = _open_store(store, spec)
    _remove_stale_temporaries(root)
    function = build_catalogue if function is None else function
    existing = _read_records(root)
    todo = [task for task in spec.tasks
            if task.key not in existing or (retry_failed and existing[task.key]["status"] != "done")]
    # Longest first (by a rough cost model), so that no worker idles while the last long task runs.
    todo.sort(key=lambda task: task.starts * (task.config.K + task.config.M) ** 2, reverse=True)
    run_id = uuid.uuid4().hex
    counts = {"done": 0, "failed": 0, "finished": 0}
    todo_keys = {task.key for task in todo}
    for task in spec.tasks:
        if task.key in existing and task.key not in todo_keys:
            counts["done" if existing[task.key]["status"] == "done" else "failed"] += 1
    if not todo:
        return SweepResult(load_store(root), 0, "", 0.0, 0.0, run_id)
    start = time.perf_counter()
    with _dask_client(client, scheduler, min(workers or default_workers(), len(todo))) as (dask_client, engine):
        submitted = time.perf_counter()
        _report(progress, counts, len(todo), spec, submitted, engine, "")

        def on_record(record):
            counts["finished"] += 1
            counts["done" if record["status"] == "done" else "failed"] += 1
            _report(progress, counts, len(todo), spec, submitted, engine, _label(record["point"]))

        _compute(dask_client, todo, function, root, run_id, retries, on_record)
        finished = time.perf_counter()
    return SweepResult(load_store(root), counts["finished"], engine, submitted - start, finished - submitted, run_id)


def _report(progress, counts, to_run, spec, since, engine, last):
    if progress is None:
        return
    elapsed = time.perf_counter() - since
    finished = counts["finished"]
    eta = elapsed / finished * (to_run - finished) if finished else None
    progress(ProgressReport(finished, to_run, counts["done"], counts["failed"], len(spec.tasks), elapsed, eta,
                            engine, last))
