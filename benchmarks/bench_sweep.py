"""Speed of a sweep on 1 and 2 Dask workers, and the engine's overhead per task.

Run: ``python benchmarks/bench_sweep.py [--starts N]``. Prints a Markdown table (the README quotes it).

- The same sweep (one catalogue per grid point) runs on a ``LocalCluster`` of 1, then 2 worker
  processes, each time into a fresh store; the speed-up is the ratio of the times from
  submission to the last record (cluster start-up is listed separately: it is paid once per run).
- Engine overhead per task: a sweep of tasks that do nothing, on one worker, divided by the number
  of tasks (scheduling, pickling, moving the record to the client, the atomic write with fsync).
- "cores used" = total CPU time of the tasks / wall time: with other load on the machine the
  workers get less than a core each, which caps the speed-up whatever the engine does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from landscape.catalogues.sweep import run_sweep


def nothing(config, starts, seed, regime):
    """A task that does no work: what is left of its time is the engine's overhead."""
    return {"K": config.K}


def _spec(starts, grid=None):
    base = {"K": 4, "M": 4, "teacher": {"kind": "orthonormal"}, "lr": 1.0, "eta2": False, "t_max": 1e4,
            "init": {"kind": "random", "d": 1000, "seed": 0, "scale": 1.0}}
    grid = grid or [{"M": [M], "K": [M, M + 1]} for M in (3, 4, 5, 6)]
    return {"base": base, "grid": grid, "starts": starts, "seed": 2026, "regime": "gradient_flow"}


def _run(spec, workers, function=None):
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = run_sweep(spec, Path(folder) / "store", workers=workers, function=function)
        wall = time.perf_counter() - start
        task_seconds = sum(record.seconds for record in result.store.records)
        cpu_seconds = sum(record.cpu_seconds for record in result.store.records)
    if not result.success:
        raise RuntimeError(f"benchmark sweep did not complete: {result.message}")
    return result, wall, task_seconds, cpu_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=24, help="starts per catalogue (default 24)")
    parser.add_argument("--noop-tasks", type=int, default=200, help="tasks in the overhead sweep (default 200)")
    args = parser.parse_args()

    spec = _spec(args.starts)
    load_before = os.getloadavg()[0]
    rows, runs = [], {}
    for workers in (1, 2):
        result, wall, task_seconds, cpu_seconds = _run(spec, workers)
        runs[workers] = (result, task_seconds)
        n = result.computed
        # Cores the tasks actually got: total task CPU over the wall time. On an idle machine it
        # is close to the number of workers; other load on the machine lowers it (and the speed-up).
        cores_used = cpu_seconds / result.compute_seconds
        busy = task_seconds / (result.compute_seconds * workers)
        rows.append((f"{n} catalogues ({args.starts} starts, K = M..M+1, M = 3..6), {workers} worker(s)",
                     f"{result.compute_seconds:.1f} s (+ {result.startup_seconds:.1f} s cluster start); "
                     f"a task takes {task_seconds / n:.2f} s wall, {cpu_seconds / n:.2f} s CPU; workers busy "
                     f"{busy:.0%} of the time; cores used {cores_used:.2f}"))
    speedup = runs[1][0].compute_seconds / runs[2][0].compute_seconds
    rows.append(("speed-up, 2 workers against 1", f"{speedup:.2f}x"))

    noop_spec = _spec(1, grid={"seed": list(range(args.noop_tasks))})
    noop_spec.pop("seed")
    result, _, _, _ = _run(noop_spec, 1, function=nothing)
    per_task = result.compute_seconds / result.computed
    mean_task = runs[1][1] / runs[1][0].computed
    rows.append((f"engine overhead per task ({result.computed} empty tasks, 1 worker)",
                 f"{per_task * 1e3:.1f} ms = {per_task / mean_task:.2%} of a mean catalogue task"))

    rows.append(("load average of the machine (1 min), before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f} "
                 f"on {os.cpu_count()} cores (a speed-up below 2x on a loaded machine is the other load)"))
    width = max(len(row[0]) for row in rows)
    print(f"| {'measurement'.ljust(width)} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
