"""Locks and task claims, so that several ``landscape sweep`` processes can share one store.

Two processes started on one new store used to race (one saw the other's half-made folder and
refused it as "not a sweep store"), and two processes on one store computed every task twice.
Now:

- :func:`store_lock` is an exclusive ``flock`` on ``<store>/.lock`` held while a store is created
  or checked and while tasks are claimed, so those steps never interleave;
- a run holds an ``flock`` on ``<store>/claims/<run id>.run`` for as long as it lives, and writes
  ``claims/<task key>.claim`` (holding its run id) for every task it is about to compute. Another
  run skips a task whose claim names a live run. The kernel drops an ``flock`` when its process
  dies, so the claims of a killed run are taken over by the next one: nothing stays locked.

``flock`` works between processes of one machine (the store lives on the machine running
``landscape sweep``: records are written by that process, not by the Dask workers).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one process per store there
    fcntl = None  # type: ignore[assignment]

__all__ = ["store_lock", "TaskClaims"]

_LOCK_FILE = ".lock"
_CLAIMS = "claims"


@contextlib.contextmanager
def store_lock(root):
    """Hold the store's exclusive lock for the body of a ``with`` (creates the folder if needed).

    Raises
    ------
    ValueError
        If ``root`` exists and is not a folder, or cannot be created.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{str(root)!r} exists and is not a folder; give a new or empty folder for the store")
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / _LOCK_FILE, "a")
    except OSError as error:
        raise ValueError(f"cannot create the store {str(root)!r}: {error.strerror}") from None
    with handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _run_alive(claims, run_id):
    """True while the process of ``run_id`` holds the lock on its run file."""
    path = claims / f"{run_id}.run"
    try:
        handle = open(path, "a")
    except OSError:
        return False
    with handle:
        if fcntl is None:
            return True
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        path.unlink()  # a dead run's file: nobody holds it any more
    return False


class TaskClaims:
    """This run's claims on tasks of a store (see the module doc); release them with :meth:`release`.

    Parameters
    ----------
    root : pathlib.Path
        The store folder.
    run_id : str
        Identifier of this run (hex digits).
    """

    def __init__(self, root, run_id):
        self.root, self.run_id = Path(root), run_id
        self.folder = self.root / _CLAIMS
        self.folder.mkdir(exist_ok=True)
        self._alive = open(self.folder / f"{run_id}.run", "w")
        if fcntl is not None:
            fcntl.flock(self._alive, fcntl.LOCK_EX)
        self.mine = []

    def claim(self, tasks, finished):
        """Claim the tasks that no live run has claimed and that have no record yet.

        Parameters
        ----------
        tasks : sequence of SweepTask
            Tasks this run would compute.
        finished : callable
            ``finished(task) -> bool``: True when the task's record appeared meanwhile.

        Returns
        -------
        claimed, elsewhere : list of SweepTask
            Tasks this run now owns, and tasks skipped because another live run owns them or
            finished them meanwhile.
        """
        claimed, elsewhere = [], []
        with store_lock(self.root):
            for task in tasks:
                path = self.folder / f"{task.key}.claim"
                try:
                    owner = path.read_text().strip()
                except OSError:
                    owner = ""
                if finished(task) or (owner and owner != self.run_id and _run_alive(self.folder, owner)):
                    elsewhere.append(task)
                    continue
                path.write_text(self.run_id)
                claimed.append(task)
        self.mine.extend(task.key for task in claimed)
        return claimed, elsewhere

    def release(self):
        """Remove this run's claims and its run file (also done by the kernel if the process dies)."""
        for key in self.mine:
            path = self.folder / f"{key}.claim"
            with contextlib.suppress(OSError):
                if path.read_text().strip() == self.run_id:
                    path.unlink()
        self.mine = []
        with contextlib.suppress(OSError):
            os.unlink(self.folder / f"{self.run_id}.run")
        self._alive.close()
