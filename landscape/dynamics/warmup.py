"""No compiler wait: is the compiled ODE solver ready, and compiling it in the background.

numba compiles the ODE solver (:mod:`landscape.dynamics.compiled_flow`,
:mod:`landscape.dynamics.dop853`) the first time it runs on a machine, about 30-45 seconds, and
caches the machine code on disk; later processes load it in well under a second. So that nobody
waits for the compiler, :func:`landscape.dynamics.ode.integrate_ode` asks
:func:`compiled_solver_ready` (is there a marker that a compilation finished for these sources,
this numba and this CPU; no compilation) and, while the answer is no, integrates with the numpy
solver (scipy's ``solve_ivp``, the same DOP853 method and tolerances; tenths of a second for
gradient flow) and calls :func:`start_background_compilation`,
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

__all__ = ["compiled_solver_ready", "start_background_compilation", "background_compilation_running", "mark_compiled",
           "discard_stale_cache"]

_PACKAGE = Path(__file__).resolve().parent.parent
# The modules whose jitted functions make up the solver (numba caches their machine code next to
# them), and the kernels whose constants numba compiles into it.
_COMPILED = ("dynamics/compiled_flow.py", "dynamics/dop853.py")
_SOURCES = (*_COMPILED, "kernels/gaussian.py", "kernels/orthant.py")

_ready = False
_child: subprocess.Popen | None = None
_guard = threading.Lock()


def _lock_path() -> Path:
    # One lock per package copy and interpreter: each has its own numba cache.
    tag = hashlib.sha256(f"{_PACKAGE}|{sys.executable}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"landscape-compile-{tag}.lock"


def _marker_path() -> Path:
    """Where :func:`mark_compiled` records a finished compilation: next to numba's cache files
    (the package's ``__pycache__``, or ``NUMBA_CACHE_DIR``, one marker per package copy)."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if cache_dir:
        tag = hashlib.sha256(str(_PACKAGE).encode()).hexdigest()[:16]
        return Path(cache_dir) / f"landscape-ode-solver-{tag}.ready"
    return _PACKAGE / "dynamics" / "__pycache__" / "landscape-ode-solver.ready"


def _build_key() -> str:
    """What the solver's machine code depends on: its sources (modification time and size), the
    numba and Python versions and the CPU (name and features, by llvmlite's public host queries)."""
    import llvmlite.binding as llvm
    import numba

    stamps = []
    for name in _SOURCES:
        status = (_PACKAGE / name).stat()
        stamps.append(f"{name}:{status.st_mtime_ns}:{status.st_size}")
    parts = [*stamps, f"numba {numba.__version__}", f"python {sys.version}", sys.executable,
             llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def mark_compiled() -> bool:
    """Record that the solver has just been compiled (or loaded) for this machine.

    :func:`landscape.dynamics.ode.compile_ode` calls it once both right-hand sides and the
    integrator have run, so numba's cache holds them all: a marker written after the compilation,
    never a half-filled cache. The marker is replaced atomically.

    Returns
    -------
    bool
        False if the marker could not be written (a read-only package folder: numba then caches
        elsewhere, and :func:`compiled_solver_ready` stays False).
    """
    marker = _marker_path()
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial = marker.with_name(f"{marker.name}.{os.getpid()}")
        partial.write_text(_build_key())
        os.replace(partial, marker)
    except OSError:
        return False
    return True


def discard_stale_cache() -> bool:
    """Delete numba's cached machine code of the solver if it was compiled from other sources.

    numba checks a cached function against its own source file only, and the integrator
    (``dop853.integrate``) inlines the right-hand side of ``compiled_flow``: after an edit of
    ``compiled_flow.py`` alone (a ``git pull`` into an editable install), numba loaded the
    integrator with the old right-hand side, and touching ``dop853.py`` did not help (seen: 77
    steps where the edited code takes 39). When the marker of :func:`mark_compiled` holds another
    key, the solver's cache files (``compiled_flow.*.nbi/.nbc``, ``dop853.*``) and the marker are
    deleted, so that the next compilation starts afresh. Nothing happens while a compilation is
    under way, without a marker (nothing was compiled and marked here), or when it matches.

    Returns
    -------
    bool
        True if cache files were deleted.
    """
    if background_compilation_running():
        return False
    marker = _marker_path()
    try:
        if marker.read_text() == _build_key():
            return False
    except (OSError, ImportError):
        return False
    deleted = False
    for source in _COMPILED:
        path = _PACKAGE / source
        for cached in _cache_folder(path).glob(f"{path.stem}.*.nb[ic]"):
            try:
                cached.unlink()
                deleted = True
            except OSError:
                pass
    marker.unlink(missing_ok=True)
    return deleted


def _cache_folder(source: Path) -> Path:
    """Where numba caches the functions of ``source``: its ``__pycache__``, or with
    ``NUMBA_CACHE_DIR`` the subfolder numba names after the source's folder and its SHA-1."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if not cache_dir:
        return source.parent / "__pycache__"
    folder = str(source.parent)
    return Path(cache_dir) / f"{source.parent.name}_{hashlib.sha1(folder.encode()).hexdigest()}"


def compiled_solver_ready() -> bool:
    """Whether the compiled ODE solver runs without compiling (a compilation finished for it).

    Cheap (reads one small file; imports numba the first time, ~0.3 s) and never compiles. True
    when the marker of :func:`mark_compiled` matches the solver's sources, numba, Python and this
    CPU; False while a background compilation is under way. Once True it stays True for the
    process.

    Returns
    -------
    bool
        False on a fresh install, after an edit of the solver's source, on another CPU model than
        the one that compiled, with another numba, or without a marker.
    """
    global _ready
    if _ready:
        return True
    if background_compilation_running():
        return False
    try:
        _ready = _marker_path().read_text() == _build_key()
    except (OSError, ImportError):  # no marker yet, or no numba/llvmlite to compile with
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
