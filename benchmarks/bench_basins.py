"""Basin faithfulness and speed of the search from many starts (Safran & Shamir's protocol).

Run: ``PYTHONPATH=. python benchmarks/bench_basins.py [--starts 1000] [--sizes 10,16] [--workers W]
[--reference-dir /work/runs]``. For each ``K = M``, the default search (or with ``--handover 1e-2``
the early Newton hand-over in a certified basin, see
:func:`landscape.critical_points.search.search_critical_points`) and a tight reference flow
(``rtol = 1e-4``, gradient norm ``1e-7``, no early hand-over) run from the same starts; prints the
fraction of starts whose end points agree (max entry difference below ``1e-5``) with its Wilson 95%
interval, the flow steps, Newton iterations and CPU seconds of each, and the machine load (timings
on a shared machine: compare CPU times, not wall times). The issue's bar: at least 99.5% agree at
``K = M = 10`` and ``16`` with 1,000 starts.

The reference does not depend on the fast search's settings: with ``--reference-dir`` its end points
are read from ``basins_reference_K<K>_starts<S>_seed<seed>.npz`` there, or computed once and saved
(about 15 CPU minutes for both sizes at 1,000 starts); ``--reference-only`` just computes them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np

from landscape.catalogues.build import _span_weights
from landscape.catalogues.reachability import wilson_interval
from landscape.critical_points.search import search_critical_points
from landscape.model.config import InitSpec, RunConfig

REFERENCE = {"rtol": 1e-4, "flow_tol": 1e-7, "handover_tol": 1e-7}


def _run(W0, teacher, workers, **options):
    cpu, wall = time.process_time(), time.perf_counter()
    found = search_critical_points(W0, teacher, workers=workers, **options)
    return found, time.process_time() - cpu, time.perf_counter() - wall


def _reference(W0, teacher, workers, path):
    """``(W, flow steps, Newton iterations, not converged, CPU s)`` of the tight flow, cached at ``path``."""
    if path is not None and path.exists():
        with np.load(path) as stored:
            if stored["W0"].shape == W0.shape and np.array_equal(stored["W0"], W0):
                return (stored["W"], stored["steps"], stored["iterations"], int(stored["failed"]),
                        float(stored["cpu"]))
    found, cpu, _ = _run(W0, teacher, workers, **REFERENCE)
    result = (found.W, found.flow_steps, found.newton_iterations, sum(found.failures.values()), cpu)
    if path is not None:
        np.savez_compressed(path, W0=W0, W=result[0], steps=result[1], iterations=result[2],
                            failed=result[3], cpu=result[4])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=1000)
    parser.add_argument("--sizes", default="10,16", help="comma-separated K = M (default 10,16)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1: CPU time is then exact)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--handover", type=float, default=1e-4,
                        help="hand-over gradient norm of the fast search (default 1e-4, the default; 1e-2: early)")
    parser.add_argument("--reference-dir", type=pathlib.Path, default=None,
                        help="read (or compute once and save) the reference end points here")
    parser.add_argument("--reference-only", action="store_true", help="only compute and save the references")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| K = M | starts | same end point (95% CI) | steps fast / reference | Newton fast / reference "
          "| CPU s fast / reference | not converged fast / reference |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(x) for x in args.sizes.split(",")):
        config = RunConfig(K=size, M=size, init=InitSpec(kind="random", d=size, scale=1.0))
        W0, teacher = _span_weights(config, args.starts, np.random.default_rng(args.seed))
        path = None if args.reference_dir is None else (
            args.reference_dir / f"basins_reference_K{size}_starts{args.starts}_seed{args.seed}.npz")
        reference_W, reference_steps, reference_newton, reference_failed, reference_cpu = _reference(
            W0, teacher, args.workers, path)
        if args.reference_only:
            print(f"| {size} | {args.starts} | reference only | - / {reference_steps.sum()} | "
                  f"- / {reference_newton.sum()} | - / {reference_cpu:.1f} | - / {reference_failed} |", flush=True)
            continue
        fast, fast_cpu, _ = _run(W0, teacher, args.workers, handover_tol=args.handover)
        same = int(np.sum(np.max(np.abs(fast.W - reference_W), axis=(1, 2)) < 1e-5))
        lower, upper = wilson_interval(same, args.starts)
        print(f"| {size} | {args.starts} | {same / args.starts:.3f} ({lower:.3f}-{upper:.3f}) | "
              f"{fast.flow_steps.sum()} / {reference_steps.sum()} | "
              f"{fast.newton_iterations.sum()} / {reference_newton.sum()} | "
              f"{fast_cpu:.1f} / {reference_cpu:.1f} | "
              f"{sum(fast.failures.values())} / {reference_failed} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
