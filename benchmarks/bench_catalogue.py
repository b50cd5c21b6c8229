"""Speed of :func:`landscape.catalogues.build.build_catalogue` (Safran & Shamir's protocol) and the spurious rates it finds.

Run: ``python benchmarks/bench_catalogue.py [--starts N] [--sizes 6,7,8] [--workers W]``. Prints a
Markdown table (the README quotes it): for each ``K = M`` (and ``K = M + 1``), the wall time of a
whole catalogue (flows from random starts, Newton polishing, the ansatz saddle search, spectra,
canonical forms, orbits), the rate of starts ending at a spurious point with its Wilson 95%
interval, and the published rate of Safran & Shamir (1000 runs) for comparison.

The target of the issue: ``K = M = 8`` with 500 starts in under a minute on two cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from landscape.catalogues.build import build_catalogue
from landscape.catalogues.reachability import reachability
from landscape.model.config import InitSpec, RunConfig

REFERENCE = Path("/work/shared/reference/safran_shamir_2018_rates.csv")


def _published():
    if not REFERENCE.is_file():
        return {}
    with REFERENCE.open() as handle:
        return {(int(r["student_units_K"]), int(r["teacher_units_M"])): int(r["runs_ending_at_spurious_points"]) / int(r["runs"])
                for r in csv.DictReader(handle)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=500, help="random starts per catalogue (default 500)")
    parser.add_argument("--sizes", default="6,7,8,9,10", help="comma-separated M (default 6,7,8,9,10)")
    parser.add_argument("--wider", action="store_true", help="also K = M + 1 for every M")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: 2 on two cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    published = _published()
    pairs = []
    for M in (int(x) for x in args.sizes.split(",")):
        pairs.append((M, M))
        if args.wider:
            pairs.append((M + 1, M))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| K | M | starts | seconds | distinct points | spurious rate (95% CI) | Safran & Shamir | not converged |")
    print("|---|---|---|---|---|---|---|---|")
    for K, M in pairs:
        config = RunConfig(K=K, M=M, init=InitSpec(kind="random", d=M, scale=1.0))
        start = time.perf_counter()
        catalogue = build_catalogue(config, starts=args.starts, seed=args.seed, workers=args.workers)
        seconds = time.perf_counter() - start
        fraction, lower, upper = reachability(catalogue).spurious_fraction
        reference = published.get((K, M))
        reference = f"{reference:.3f}" if reference is not None else "not published"
        failed = sum(catalogue.failures.values())
        print(f"| {K} | {M} | {args.starts} | {seconds:.1f} | {len(catalogue.points)} | "
              f"{fraction:.3f} ({lower:.3f}-{upper:.3f}) | {reference} | {failed} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
