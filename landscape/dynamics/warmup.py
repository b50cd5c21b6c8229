"""No compiler wait: is the compiled ODE solver ready, and compiling it in the background.

numba compiles the ODE solver (:mod:`landscape.dynamics.compiled_flow`,
:mod:`landscape.dynamics.dop853`) the first time it runs on a machine, about 30-45 seconds, and
caches the machine code on disk; later processes load it in well under a second. So that nobody
waits for the compiler, :func:`landscape.dynamics.ode.integrate_ode` asks
:func:`compiled_solver_ready` (a look at numba's on-disk index, no compilation) and, while the
answer is no, integrates with the numpy solver (scipy's ``solve_ivp``, the same DOP853 method and
tolerances; tenths of a second for gradient flow) and calls :func:`start_background_compilation`,
which compiles in a separate, low-priority process that fills the disk cache and exits. A
process, not a thread: numba's compiler runs mostly in Python, holding the GIL, which would
stall the numpy solver serving meanwhile.

Run ``python -m landscape.dynamics.warmup`` to compile in the foreground (e.g. while building
an image for a hosted demo, so its first visitor never meets the numpy fallback).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

try:  # POSIX: one compiling process per machine and package copy
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, a second compile is only wasted work
    fcntl = None  # type: ignore[assignment]

__all__ = ["compiled_solver_ready", "start_background_compilation", "background_compilation_running"]

_PACKAGE = Path(__file__).resolve().parent.parent
# The jitted functions Python calls directly; everything they call is compiled into their code,
# so a cached overload of each of these (for this machine) is a ready solver.
_ENTRY_POINTS = (("dop853", "integrate"), ("dop853", "dense_values"), ("compiled_flow", "velocity"))

_ready = False
_child: subprocess.Popen | None = None
_guard = threading.Lock()


def _lock_path() -> Path:
    # One lock per package copy and interpreter: each has its own numba cache.
    tag = hashlib.sha256(f"{_PACKAGE}|{sys.executable}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"landscape-compile-{tag}.lock"


def _cached_for_this_machine(dispatcher) -> bool:
    """Whether numba's on-disk index holds an overload of ``dispatcher`` that this process can load."""
    if dispatcher.overloads:  # compiled or loaded in this process already
        return True
    cache = dispatcher._cache  # numba internals, read only; any surprise counts as "not ready"
    index = cache._cache_file._load_index()  # empty when the source file changed since
    codegen = dispatcher.targetctx.codegen()
    return any(key[1:] == cache._index_key(key[0], codegen)[1:] for key in index)


def compiled_solver_ready() -> bool:
    """Whether the compiled ODE solver runs without compiling (loaded, or in numba's disk cache).

    Cheap (reads numba's small index files; imports numba the first time, ~0.3 s) and never
    compiles. False while a background compilation is under way; once True it stays True for
    the process.

    Returns
    -------
    bool
        False on a fresh install, after an edit of the solver's source, on another CPU model than
        the one that filled the cache, or if numba's cache layout is not the expected one.
    """
    global _ready
    if _ready:
        return True
    if background_compilation_running():
        # Its index files fill up one function and signature at a time: wait for the whole set.
        return False
    try:
        from . import compiled_flow, dop853

        modules = {"compiled_flow": compiled_flow, "dop853": dop853}
        _ready = all(_cached_for_this_machine(getattr(modules[module], name)) for module, name in _ENTRY_POINTS)
    except Exception:  # noqa: BLE001 - a probe: a missing or half-written index is "not ready"
        return False
    return _ready


def background_compilation_running() -> bool:
    """Whether some process (this one's child or another's) is compiling the solver right now."""
    if _child is not None and _child.poll() is None:
        return True
    lock = _lock_path()
    if fcntl is None or not lock.exists():  # the compiling process makes the file
        return False
    try:
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def start_background_compilation() -> bool:
    """Start compiling the ODE solver in a separate low-priority process, unless it is ready.

    At most one child per process; the child takes a machine-wide lock, so concurrent starts from
    several processes compile once. The child lives on if this process exits (a command-line
    run leaves the cache filled for the next one).

    Returns
    -------
    bool
        True if a child process was started now.
    """
    global _child
    with _guard:
        if _child is not None or compiled_solver_ready():
            return False
        environment = dict(os.environ)
        # The child must import this very copy of the package (its cache is the one to fill).
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE.parent), os.environ.get("PYTHONPATH")) if p)
        try:
            _child = subprocess.Popen(
                [sys.executable, "-m", "landscape.dynamics.warmup", "--background"], env=environment,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError:
            return False
        return True


def _main(argv: list[str]) -> int:
    background = "--background" in argv
    if compiled_solver_ready():
        return 0
    if background and hasattr(os, "nice"):
        os.nice(10)  # serving requests comes first
    with open(_lock_path(), "a") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (fcntl.LOCK_NB if background else 0))
            except BlockingIOError:
                return 0  # another process is compiling the same cache
        from .ode import compile_ode

        compile_ode()  # loads from the cache instead if a process that held the lock filled it
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
