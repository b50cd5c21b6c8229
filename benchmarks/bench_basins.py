"""Basin faithfulness and speed of the search from many starts (Safran & Shamir's protocol).

Run: ``python benchmarks/bench_basins.py [--starts 1000] [--sizes 10,16] [--workers W]``. For each
``K = M``, the default search (or with ``--handover 1e-2`` the early Newton hand-over in a certified
basin, see :func:`landscape.critical_points.search.search_critical_points`) and a tight reference flow
(``rtol = 1e-4``, gradient norm ``1e-7``, no early hand-over) run from the same starts; prints the
fraction of starts whose end points agree (max entry difference below ``1e-5``) with its Wilson 95%
interval, the flow steps, Newton iterations and CPU seconds of each, and the machine load (timings
on a shared machine: compare CPU times, not wall times). The issue's bar: at least 99.5% agree at
``K = M = 10`` and ``16`` with 1,000 starts (about an hour of CPU; use ``--starts 100`` for a check).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from landscape.catalogues.build import _span_weights
from landscape.catalogues.reachability import wilson_interval
from landscape.critical_points.search import search_critical_points
from landscape.model.config import InitSpec, RunConfig


def _run(W0, teacher, workers, **options):
    cpu, wall = time.process_time(), time.perf_counter()
    found = search_critical_points(W0, teacher, workers=workers, **options)
    return found, time.process_time() - cpu, time.perf_counter() - wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=1000)
    parser.add_argument("--sizes", default="10,16", help="comma-separated K = M (default 10,16)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1: CPU time is then exact)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--handover", type=float, default=1e-4,
                        help="hand-over gradient norm of the fast search (default 1e-4, the default; 1e-2: early)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| K = M | starts | same end point (95% CI) | steps fast / reference | Newton fast / reference "
          "| CPU s fast / reference | not converged fast / reference |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(x) for x in args.sizes.split(",")):
        config = RunConfig(K=size, M=size, init=InitSpec(kind="random", d=size, scale=1.0))
        W0, teacher = _span_weights(config, args.starts, np.random.default_rng(args.seed))
        fast, fast_cpu, _ = _run(W0, teacher, args.workers, handover_tol=args.handover)
        reference, reference_cpu, _ = _run(W0, teacher, args.workers, rtol=1e-4, flow_tol=1e-7, handover_tol=1e-7)
        same = int(np.sum(np.max(np.abs(fast.W - reference.W), axis=(1, 2)) < 1e-5))
        lower, upper = wilson_interval(same, args.starts)
        print(f"| {size} | {args.starts} | {same / args.starts:.3f} ({lower:.3f}-{upper:.3f}) | "
              f"{fast.flow_steps.sum()} / {reference.flow_steps.sum()} | "
              f"{fast.newton_iterations.sum()} / {reference.newton_iterations.sum()} | "
              f"{fast_cpu:.1f} / {reference_cpu:.1f} | "
              f"{sum(fast.failures.values())} / {sum(reference.failures.values())} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
