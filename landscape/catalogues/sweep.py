"""Sweeps: one catalogue per point of a grid of configurations, run on Dask, stored resumably.

The spec and its tasks are in :mod:`landscape.catalogues.sweep_spec`, the store in
:mod:`landscape.catalogues.sweep_store`; this module runs the tasks: :func:`execute_task` on a Dask worker,
:func:`run_sweep` on a local cluster or a running scheduler, writing each record as it arrives.
Running the same spec again computes only the tasks without a record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .build import build_catalogue
from .sweep_claims import TaskClaims
from .sweep_spec import SweepSpec, task_label, whole_number
from .sweep_store import (
    RECORDS_FOLDER,
    SweepStore,
    TaskStatus,
    load_store,
    open_store,
    read_records,
    record_dict,
    remove_stale_temporaries,
    write_atomic,
)

__all__ = [
    "TaskError",
    "ProgressReport",
    "SweepResult",
    "execute_task",
    "default_workers",
    "run_sweep",
]

#: How long to wait for a scheduler given by address (it may still be starting, e.g. in a batch job).
CONNECT_TIMEOUT = "30s"


class TaskError(RuntimeError):
    """An exception raised by a task function (other than ``ValueError``), as seen by the client."""


def _function_name(function):
    inner = getattr(function, "func", function)  # functools.partial
    return f"{getattr(inner, '__module__', '?')}:{getattr(inner, '__qualname__', repr(inner))}"


def execute_task(function, task, run_id=""):
    """Run one task and return its record (a JSON-ready dict); this is what a Dask worker runs.

    Parameters
    ----------
    function : callable
        ``function(config, starts=, seed=, regime=)`` returning an object with ``to_dict()`` or a
        JSON-ready dict; :func:`landscape.catalogues.build.build_catalogue` by default in :func:`run_sweep`.
    task : SweepTask
    run_id : str, optional
        Stored in the record.

    Returns
    -------
    dict
        A record with status ``done``, or ``failed`` with the message when the function raised
        ``ValueError`` (an input the task cannot handle; retrying would fail again) or
        ``numpy.linalg.LinAlgError`` (a numerical failure of the computation, deterministic too).

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
    except np.linalg.LinAlgError as error:
        # LinAlgError derives from ValueError: caught first, it is the computation's failure, not the input's.
        return record_dict(task, TaskStatus.FAILED, run_id, name,
                           reason=f"the computation failed: {type(error).__name__}: {error}")
    except ValueError as error:
        return record_dict(task, TaskStatus.FAILED, run_id, name, reason=f"invalid input: {error}")
    except Exception as error:  # noqa: BLE001 - marked as the task's own, so the client can record it
        raise TaskError(f"{type(error).__name__}: {error}") from error
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    data = result.to_dict() if hasattr(result, "to_dict") else result
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return record_dict(task, TaskStatus.DONE, run_id, name, result=data, seconds=seconds,
                        cpu_seconds=cpu_seconds, worker=worker)


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
    claimed_elsewhere : int
        Tasks left to another live ``landscape sweep`` process on the same store (it claimed them).
    """

    store: SweepStore
    computed: int
    engine: str
    startup_seconds: float
    compute_seconds: float
    run_id: str
    claimed_elsewhere: int = 0

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
                "run_id": self.run_id, "claimed_elsewhere": self.claimed_elsewhere}


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
    return record_dict(task, TaskStatus.FAILED, run_id, _function_name(function), reason=reason)


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
            write_atomic(root / RECORDS_FOLDER / f"{task.key}.json", record)
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
        whole_number("workers", workers, 1, 4096)
    whole_number("retries", retries, 0, 100)
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
        raise ValueError(f"scheduler must be an address such as 'tcp://10.0.0.5:8786', got {scheduler!r}")


def run_sweep(spec: SweepSpec | Mapping[str, Any], store: str | Path, *, workers: int | None = None,
              scheduler: str | None = None, client: Any = None, function: Callable[..., dict] | None = None,
              retries: int = 2, retry_failed: bool = False, progress: Callable[..., None] | None = None) -> SweepResult:
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
        :func:`landscape.catalogues.build.build_catalogue`. Workers must be able to import it.
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
    root = open_store(store, spec)
    remove_stale_temporaries(root)
    function = function if function is not None else build_catalogue  # type: ignore[assignment]
    existing = read_records(root)
    todo = [task for task in spec.tasks
            if task.key not in existing or (retry_failed and existing[task.key]["status"] != "done")]
    # Longest first (by a rough cost model), so that no worker idles while the last long task runs.
    todo.sort(key=lambda task: task.starts * (task.config.K + task.config.M) ** 2, reverse=True)
    run_id = uuid.uuid4().hex
    claims = TaskClaims(root, run_id)
    try:
        # A second process on the same store leaves the tasks the first one claimed to it.
        todo, elsewhere = claims.claim(todo, lambda task: task.key not in existing and _has_record(root, task))
        return _run_claimed(spec, root, todo, existing, run_id, len(elsewhere), function, workers, scheduler,
                            client, retries, progress)
    finally:
        claims.release()


def _has_record(root, task):
    """True when a readable record of ``task`` appeared since the store was read (another run wrote it)."""
    try:
        data = json.loads((root / RECORDS_FOLDER / f"{task.key}.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("key") == task.key and data.get("status") in ("done", "failed")


def _run_claimed(spec, root, todo, existing, run_id, elsewhere, function, workers, scheduler, client, retries,
                 progress):
    counts = {"done": 0, "failed": 0, "finished": 0}
    todo_keys = {task.key for task in todo}
    for task in spec.tasks:
        if task.key in existing and task.key not in todo_keys:
            counts["done" if existing[task.key]["status"] == "done" else "failed"] += 1
    if not todo:
        return SweepResult(load_store(root), 0, "", 0.0, 0.0, run_id, elsewhere)
    start = time.perf_counter()
    with _dask_client(client, scheduler, min(workers or default_workers(), len(todo))) as (dask_client, engine):
        submitted = time.perf_counter()
        _report(progress, counts, len(todo), spec, submitted, engine, "")

        def on_record(record):
            counts["finished"] += 1
            counts["done" if record["status"] == "done" else "failed"] += 1
            _report(progress, counts, len(todo), spec, submitted, engine, task_label(record["point"]))

        _compute(dask_client, todo, function, root, run_id, retries, on_record)
        finished = time.perf_counter()
    return SweepResult(load_store(root), counts["finished"], engine, submitted - start, finished - submitted, run_id,
                       elsewhere)


def _report(progress, counts, to_run, spec, since, engine, last):
    if progress is None:
        return
    elapsed = time.perf_counter() - since
    finished = counts["finished"]
    eta = elapsed / finished * (to_run - finished) if finished else None
    progress(ProgressReport(finished, to_run, counts["done"], counts["failed"], len(spec.tasks), elapsed, eta,
                            engine, last))
