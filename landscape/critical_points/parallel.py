"""Parallel work for the searches from many starts: chunks shared between processes.

Methods
-------
Parallel work
    Starts go in chunks of fixed size (results never depend on the number of workers), shared
    between this process and a forked child that sends its results through a pipe (a thread pool
    inside multi-threaded hosts, where forking is unsafe; serial in daemonic processes such as
    Dask workers). OpenBLAS is held to one thread meanwhile: the matrices are tiny, and BLAS
    threads in two processes on two cores made the search several times slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from .batch_flow import check_positive

__all__ = [
    "CHUNK_SIZE",
]

#: Starts per chunk of the batched search: fixed, so results never depend on the number of workers.
CHUNK_SIZE = 64


def _openblas_controls():
    """``(get, set)`` thread-count functions of every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"), ("openblas_", "")):
            getter = getattr(library, f"{prefix}get_num_threads{suffix}", None)
            setter = getattr(library, f"{prefix}set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                controls.append((getter, setter))
                break
    return controls


@contextlib.contextmanager
def _single_threaded_blas():
    """Run OpenBLAS on one thread: the linear algebra here is on tiny matrices, where BLAS threads
    only add overhead, and with one process per core they oversubscribe the machine (measured
    several times slower). The previous thread counts are restored afterwards."""
    controls = _openblas_controls()
    previous = [getter() for getter, _ in controls]
    for _, setter in controls:
        setter(1)
    try:
        yield
    finally:
        for (_, setter), count in zip(controls, previous):
            setter(count)


def _worker_initialiser():
    for _, setter in _openblas_controls():
        setter(1)


def _worker_count(workers, n_chunks):
    if workers is not None:
        return max(1, min(check_positive("workers", workers, integer=True), n_chunks))
    if n_chunks < 2 or multiprocessing.current_process().daemon:
        return 1  # daemonic processes (e.g. Dask workers) may not start children
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(2, cores, n_chunks))


def _forked_children(function, chunks, arguments, workers):
    """Fork ``workers - 1`` children; child ``c`` (``1 <= c < workers``) computes chunks ``c, c + workers,
    ...`` and sends ``(number, result, error)`` through a pipe, then exits (the parent takes
    ``0, workers, ...``). Returns ``(pids, reader)``.

    Plain ``os.fork`` with a pipe, not a process pool: no helper threads in the parent (a pool's
    manager thread once deadlocked here) and no import of ``__main__`` in the children.
    """
    reader, writer = multiprocessing.Pipe(duplex=False)
    pids = []
    for child in range(1, workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                reader.close()
                _worker_initialiser()
                for number in range(child, len(chunks), workers):
                    writer.send((number, function(*chunks[number], *arguments), None))
            except BaseException as error:  # noqa: BLE001 - handed to the parent, which raises it
                code = 1
                try:
                    writer.send((None, None, error))
                except Exception:  # noqa: BLE001 - the error itself may not pickle
                    writer.send((None, None, RuntimeError(repr(error))))
            finally:
                os._exit(code)
        pids.append(pid)
    writer.close()
    return pids, reader


def run_chunks(function, chunks, arguments, workers, progress):
    """``function(*chunk, *arguments)`` for every chunk, in order, shared between ``workers``.

    Each chunk is a tuple of arrays whose first axis runs over starts. Several workers are forked
    processes (a thread pool in multi-threaded hosts, where forking is unsafe).
    """
    workers = _worker_count(workers, len(chunks))
    total = sum(len(chunk[0]) for chunk in chunks)
    results, done = [None] * len(chunks), 0

    def report(number, value):
        nonlocal done
        results[number] = value
        done += len(chunks[number][0])
        if progress is not None:
            progress(done, total)

    with _single_threaded_blas():
        if workers == 1:
            for number, chunk in enumerate(chunks):
                report(number, function(*chunk, *arguments))
        elif threading.active_count() > 1 or not hasattr(os, "fork"):
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(function, *chunk, *arguments) for chunk in chunks]
                try:
                    for number, future in enumerate(futures):
                        report(number, future.result())
                except BaseException:
                    # A progress callback that raises (the dashboard's visitor left) stops the run:
                    # chunks not yet started are cancelled, not computed for nobody.
                    for future in futures:
                        future.cancel()
                    raise
        else:
            _share_with_children(function, chunks, arguments, workers, report)
    return results


def _share_with_children(function, chunks, arguments, workers, report):
    pids, reader = _forked_children(function, chunks, arguments, workers)
    mine = range(0, len(chunks), workers)
    expected = len(chunks) - len(mine)

    def collect(block):
        nonlocal expected
        while expected and reader.poll(None if block else 0):
            try:
                number, value, error = reader.recv()
            except EOFError:
                raise RuntimeError("a worker process ended without sending its results") from None
            if error is not None:
                raise error
            expected -= 1
            report(number, value)

    try:
        for number in mine:
            report(number, function(*chunks[number], *arguments))
            collect(block=False)
        collect(block=True)
    finally:
        reader.close()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)  # already gone unless we are leaving on an error
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def chunked(*arrays, size=CHUNK_SIZE):
    """Split arrays (first axis = starts; None passes through) into tuples of chunks."""
    count = len(arrays[0])
    return [tuple(None if a is None else a[i:i + size] for a in arrays) for i in range(0, count, size)]
