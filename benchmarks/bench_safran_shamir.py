"""Safran & Shamir's whole table (``assets/sweep_safran_shamir.json``) as a sweep, printed beside the published rates.

Run: ``python benchmarks/bench_safran_shamir.py --store runs/safran_shamir [--workers 2] [--starts N] [--sizes 6,7]``.
Computes the missing tasks of the spec into the store (resumable: re-run to continue; ``--starts`` and
``--sizes`` make a smaller spec for a quick check, in its own store), then prints one row per ``(K, M)``:
the fraction of starts that ended away from a global minimum with its Wilson 95% interval, the
published fraction (runs ending at a point with loss >= 1e-3, of 1,000), whether the published
fraction lies inside our 99% interval, the starts that did not converge, and the task's CPU seconds.
The full spec is 29 catalogues of 1,000 starts (do not start it on a loaded machine).

``--ship`` (after a complete run of the full spec) makes it the shipped sweep: ``assets/sweep_default.json``
becomes this table plus the same rows for M = 4, 5 (where type A is still a saddle; the Families page
starts there), ``assets/sweep_default/`` is rebuilt from the store's records (the same tasks: same keys
and seeds) with the four small tasks computed and the points' ODE eigenvalue lists dropped (41% of a
K = 20 record, read by no page), and its size is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

from landscape.catalogues.reachability import wilson_interval
from landscape.catalogues.sweep import run_sweep
from landscape.catalogues.sweep_spec import DEFAULT_SPEC, SweepSpec
from landscape.catalogues.sweep_store import DEFAULT_STORE, load_store, open_store

SPEC = Path(__file__).resolve().parent.parent / "assets" / "sweep_safran_shamir.json"
REFERENCE = Path("/work/shared/reference/safran_shamir_2018_rates.csv")


def _published():
    if not REFERENCE.is_file():
        return {}
    with REFERENCE.open() as handle:
        return {(int(r["student_units_K"]), int(r["teacher_units_M"])): int(r["runs_ending_at_spurious_points"]) / int(r["runs"])
                for r in csv.DictReader(handle)}


def _spec(starts, sizes):
    spec = json.loads(SPEC.read_text())
    if starts is not None:
        spec["starts"] = starts
    if sizes is not None:
        spec["grid"] = [cell for cell in spec["grid"] if cell["M"][0] in sizes]
    return spec


def _ship(store, workers):
    """The full table (plus M = 4, 5) as the built-in spec and the shipped store."""
    table = json.loads(SPEC.read_text())
    done = load_store(store)
    if {task.key for task in done.spec.tasks} != {task.key for task in SweepSpec.from_dict(table).tasks} or not done.success:
        raise SystemExit(f"--ship needs a complete run of the full spec in {store}")
    spec = dict(table, description=(
        "Built-in sweep behind the shipped catalogues (assets/sweep_default): Safran & Shamir's whole table "
        "(ICML 2018: orthonormal teacher, K = M = 6..20 and K = M + 1 for M = 6..19, gradient flow from 1,000 "
        "random starts each, their protocol: input dimension d = M, unit-variance weights) and the same rows for "
        "M = 4, 5. Its tasks are those of assets/sweep_safran_shamir.json (same keys and seeds)."))
    spec["base"] = dict(table["base"], K=4, M=4, init=dict(table["base"]["init"], d=4))
    spec["grid"] = [{"M": [M], "K": [M, M + 1], "init.d": [M]} for M in (4, 5)] + table["grid"]
    DEFAULT_SPEC.write_text(json.dumps(spec, indent=2) + "\n")
    shutil.rmtree(DEFAULT_STORE, ignore_errors=True)
    open_store(DEFAULT_STORE, SweepSpec.from_dict(spec))
    for record in (Path(store) / "records").glob("*.json"):
        shutil.copy(record, DEFAULT_STORE / "records" / record.name)
    print(run_sweep(spec, DEFAULT_STORE, workers=workers).message)
    for path in (DEFAULT_STORE / "records").glob("*.json"):
        # The ODE eigenvalue lists were 41% of a K = 20 record and no page reads them (they follow from
        # the point: landscape.critical_points.stability.fixed_point_stability); verdict and top value stay.
        record = json.loads(path.read_text())
        for point in record["result"]["points"]:
            if point.get("stability"):
                point["stability"]["eigenvalues"] = []
        path.write_text(json.dumps(record))
    size = sum(path.stat().st_size for path in DEFAULT_STORE.rglob("*") if path.is_file())
    print(f"shipped {DEFAULT_STORE}: {size / 1e6:.1f} MB")


def _two_sample_z(ours, n_ours, published, n_published):
    pooled = (ours * n_ours + published * n_published) / (n_ours + n_published)
    spread = (pooled * (1 - pooled) * (1 / n_ours + 1 / n_published)) ** 0.5
    return 0.0 if spread == 0 else (ours - published) / spread


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="store folder (created, or resumed)")
    parser.add_argument("--workers", type=int, default=None, help="Dask worker processes (default: one per core)")
    parser.add_argument("--starts", type=int, default=None, help="starts per catalogue (default: the spec's 1,000)")
    parser.add_argument("--sizes", default=None, help="comma-separated M to keep (default: all, 6..20)")
    parser.add_argument("--ship", action="store_true", help="make the completed full run the shipped sweep")
    args = parser.parse_args()
    sizes = None if args.sizes is None else {int(x) for x in args.sizes.split(",")}
    spec = _spec(args.starts, sizes)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    start = time.perf_counter()
    result = run_sweep(spec, args.store, workers=args.workers)
    print(f"sweep: {result.message} in {time.perf_counter() - start:.0f} s wall\n")
    published = _published()
    store = load_store(args.store)
    seconds = {record.task.key: record.cpu_seconds for record in store.records}
    print("| K | M | starts | ours: away from a global minimum (95% CI) | Safran & Shamir | inside our 99% CI "
          "| two-sample z | ended at a saddle | not converged | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task, catalogue in zip((r.task for r in store.select()), store.catalogues()):
        away = sum(p.count for p in catalogue.points if not p.is_global) + sum(catalogue.failures.values())
        lower, upper = wilson_interval(away, catalogue.starts)
        lower99, upper99 = wilson_interval(away, catalogue.starts, confidence=0.99)
        reference = published.get((catalogue.config.K, catalogue.config.M))
        inside = "" if reference is None else ("yes" if lower99 <= reference <= upper99 else "NO")
        shown = "not published" if reference is None else f"{reference:.3f}"
        # The published rate is itself an estimate from 1,000 runs: the two-sample z of the difference
        # (|z| > 2.58 is a disagreement at 99%) weighs both sampling errors, our interval only ours.
        z = "" if reference is None else f"{_two_sample_z(away / catalogue.starts, catalogue.starts, reference, 1000):+.1f}"
        saddles = sum(p.count for p in catalogue.points if p.index > 0)
        print(f"| {catalogue.config.K} | {catalogue.config.M} | {catalogue.starts} | {away / catalogue.starts:.3f} "
              f"({lower:.3f}-{upper:.3f}) | {shown} | {inside} | {z} | {saddles} | {sum(catalogue.failures.values())} | "
              f"{seconds[task.key]:.0f} |", flush=True)
    print(f"\nCPU seconds in all: {sum(seconds.values()):.0f} (on two idle cores about half that in wall time)")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.ship:
        _ship(args.store, args.workers)


if __name__ == "__main__":
    main()
