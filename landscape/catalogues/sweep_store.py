"""The results store of a sweep on disk: one atomically written record per finished task.

The store is a folder: ``sweep.json`` (the spec) and ``records/<key>.json``, one file per finished
task (``status`` ``done`` with the result, or ``failed`` with the ``reason``), each written to a
temporary file and moved into place with :func:`os.replace`, so a record is either complete or
absent. :func:`landscape.catalogues.sweep.run_sweep` fills a store; :func:`load_store` reads one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
import warnings
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np

from ..model.config import RunConfig
from ..status import StatusEnum
from .reachability import reachability, reachability_curve
from .records import Catalogue, PointKind
from .sweep_claims import store_lock
from .sweep_spec import RECORD_FORMAT, SUB_SPECS, TASK_KEYS, SweepSpec, SweepTask, canonical_json

__all__ = [
    "DEFAULT_STORE",
    "TaskStatus",
    "SweepStatus",
    "TaskRecord",
    "SweepStore",
    "load_store",
]

#: The store generated from the built-in spec (``landscape sweep --default-spec``), shipped in assets/.
DEFAULT_STORE = Path(__file__).resolve().parents[2] / "assets" / "sweep_default"
_SPEC_FILE = "sweep.json"
RECORDS_FOLDER = "records"
_STALE_TEMP_SECONDS = 3600.0
#: What a store folder may hold before its sweep.json exists (the lock file, empty folders).
_STORE_FILES = {".lock", RECORDS_FOLDER, "claims"}


class TaskStatus(StatusEnum):
    """State of one task in a store; the value is a sentence, ``.code`` the short name."""

    DONE = "computed and stored"
    FAILED = "failed; its record says why"
    MISSING = "not computed yet"



class SweepStatus(StatusEnum):
    """State of a whole sweep; the value is a sentence, ``.code`` the short name."""

    COMPLETE = "every task of the sweep is done"
    FAILURES = "every task ran, but some failed: their records say why"
    INCOMPLETE = "some tasks are still missing: run the same command again to resume"



def write_atomic(path, data):
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


def open_store(path, spec):
    """Create the store for ``spec`` or check that an existing one holds the same spec.

    Under the store's lock (:func:`~landscape.catalogues.sweep_claims.store_lock`): two processes
    starting on one new folder used to race, the second seeing the first's ``records/`` before its
    ``sweep.json`` and refusing the folder as "not a sweep store".
    """
    with store_lock(path) as root:
        if (root / _SPEC_FILE).exists():
            stored = _read_store_spec(root)
            # Same tasks = same spec: spellings that give the same configs (1 or 1.0) are equal.
            if {task.key for task in stored.tasks} != {task.key for task in spec.tasks}:
                raise ValueError(f"store {str(root)!r} holds a different sweep (the specs differ in: "
                                 f"{_spec_difference(stored, spec)}); use a new --store folder")
        elif any(item.name not in _STORE_FILES for item in root.iterdir()) or any((root / RECORDS_FOLDER).glob("*.json")):
            raise ValueError(f"{str(root)!r} exists and is not a sweep store (no {_SPEC_FILE}); "
                             "give a new or empty folder")
        else:
            (root / RECORDS_FOLDER).mkdir(exist_ok=True)
            write_atomic(root / _SPEC_FILE, {"format": RECORD_FORMAT, "spec": spec.to_dict(), "created": _now()})
        (root / RECORDS_FOLDER).mkdir(exist_ok=True)
    return root


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_records(root):
    """``{key: record dict}`` of every readable record; unreadable ones are skipped with a warning."""
    records = {}
    for path in sorted((root / RECORDS_FOLDER).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            if data.get("status") not in ("done", "failed") or path.stem != data["key"]:
                raise ValueError("not a task record")
            records[data["key"]] = data
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(f"sweep record {path} is unreadable ({error}); its task counts as missing", stacklevel=3)
    return records


def remove_stale_temporaries(root):
    """Temporary files of runs killed mid-write (a live run renames its own within milliseconds)."""
    limit = time.time() - _STALE_TEMP_SECONDS
    for path in (root / RECORDS_FOLDER).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < limit:
                path.unlink()


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
        """The result as a :class:`~landscape.catalogues.build.Catalogue`.

        Raises
        ------
        ValueError
            If the task failed (there is no result).
        """
        if self.result is None:
            raise ValueError(f"task {self.task.label} failed ({self.reason}); it has no catalogue")
        return Catalogue.from_dict(self.result)


def record_dict(task, status, run_id, function, reason="", result=None, seconds=0.0, cpu_seconds=0.0, worker=""):
    return {
        "format": RECORD_FORMAT, "key": task.key, "status": status.code, "reason": reason,
        "point": task.point, "config": task.config.to_dict(), "starts": task.starts, "seed": task.seed,
        "regime": task.regime, "task_seed": task.task_seed, "result": result, "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "worker": worker, "finished": _now(), "run_id": run_id, "function": function,
        "landscape_version": _package_version(),
    }


def _package_version():
    from .. import __version__  # at call time: the package is fully imported by then

    return __version__


def _parse_record(data, task):
    return TaskRecord(task, TaskStatus[data["status"].upper()], data.get("reason", ""), data.get("result"),
                      float(data.get("seconds", 0.0)), float(data.get("cpu_seconds", 0.0)), data.get("worker", ""),
                      data.get("finished", ""),
                      data.get("run_id", ""), data.get("function", ""))


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
        landscape.catalogues.reachability.ReachabilityCurve

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
                           and len({canonical_json(_value_of(r.task, name)) for r in chosen}) > 1})
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
    return canonical_json(value) if isinstance(value, (dict, list)) else value


def _value_of(task, name):
    if name == "K-M":
        return task.config.K - task.config.M
    if name in task.point:
        return task.point[name]
    if name in TASK_KEYS:
        return getattr(task, name)
    head, _, tail = name.partition(".")
    if hasattr(task.config, head) and head in {f.name for f in fields(RunConfig)}:
        value = getattr(task.config, head)
        if not tail:
            return value.to_dict() if head in SUB_SPECS else value
        if hasattr(value, tail):
            return getattr(value, tail)
    raise ValueError(f"unknown selection key {name!r}; use a grid key or a config field such as 'K' or 'lr'")


def load_store(path: str | Path) -> SweepStore:
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
    data = read_records(root)
    records = tuple(_parse_record(data[task.key], task) for task in spec.tasks if task.key in data)
    return SweepStore(root, spec, records)
