"""Benchmark: continue every minimum of a gradient-flow catalogue in the learning rate (issue 14).

Orthonormal teacher, Safran & Shamir's protocol for the starts (``d = M``, unit variance), label noise
0.1, the eta^2 term on; each minimum is moved to the fixed point of the full ODE at ``--lr`` and
continued to ``--lr-max`` on both cores (:func:`landscape.catalogues.bifurcation.catalogue_bifurcation`).
Prints one row per minimum and the total wall time (the catalogue itself is not timed).

    python benchmarks/bench_bifurcation.py --K 8 --lr 0.05 --lr-max 2
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from landscape import RunConfig, build_catalogue  # noqa: E402
from landscape.catalogues.bifurcation import catalogue_bifurcation  # noqa: E402
from landscape.dynamics.ode import compile_ode  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, default=8, help="K = M (default 8)")
    parser.add_argument("--starts", type=int, default=100, help="catalogue starts (default 100)")
    parser.add_argument("--lr", type=float, default=0.05, help="start of the branches (default 0.05)")
    parser.add_argument("--lr-max", type=float, default=2.0, help="end of the branches (default 2)")
    parser.add_argument("--noise", type=float, default=0.1, help="label-noise variance (default 0.1)")
    parser.add_argument("--max-steps", type=int, default=400, help="most points per branch (default 400)")
    args = parser.parse_args()
    compile_ode()
    config = RunConfig.from_dict({"K": args.K, "M": args.K, "lr": args.lr, "noise": args.noise, "eta2": True,
                                  "init": {"kind": "random", "d": args.K, "scale": 1.0}})
    catalogue = build_catalogue(config, args.starts, seed=0)
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    result = catalogue_bifurcation(catalogue, args.lr_max, max_steps=args.max_steps)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    print(f"K = M = {args.K}, noise {args.noise}, lr {args.lr} -> {args.lr_max}, "
          f"{sum(p.kind.value == 'minimum' for p in catalogue.points)} minima of a {args.starts}-start catalogue\n")
    print("| minimum (loss at lr -> 0) | points | first fold at lr | loss there | end |")
    print("|---|---|---|---|---|")
    for index, branch in zip(result.points, result.branches):
        folds = [e for e in branch.events if e.kind.code == "fold"]
        fold = f"{folds[0].lr:.6f}" if folds else "none"
        loss = f"{folds[0].loss:.4f}" if folds else "-"
        print(f"| {catalogue.points[index].loss:.4f} | {len(branch.lr)} | {fold} | {loss} | {branch.status.code} |")
    for index, reason in result.skipped.items():
        print(f"| {catalogue.points[index].loss:.4f} | - | - | - | not started: {reason} |")
    print(f"\ntotal wall time (both cores): {wall:.1f} s; CPU time (this process and its workers): {cpu:.1f} s; "
          f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def _cpu_seconds():
    """User + system CPU seconds of this process and its finished child processes (the workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
