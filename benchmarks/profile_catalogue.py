"""Where the time of one catalogue goes (Safran & Shamir's protocol), in CPU seconds per phase.

Run: ``PYTHONPATH=. python benchmarks/profile_catalogue.py --K 16 --M 16 --starts 64`` (``PYTHONPATH=.``: the
package of this checkout, not an installed one). Wraps the phases of
:func:`landscape.catalogues.build.build_catalogue` (one worker, so CPU time is exact on a loaded
machine): the flow of the random starts, its convexity checks, Newton polishing, the ansatz saddle
search, candidates, deduplication and the points (spectra, canonical forms, orbits); also the flow's
step attempts per start and by decade of the gradient norm (where the steps go).
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np

from landscape.catalogues import build
from landscape.critical_points import batch_flow, search
from landscape.model.config import InitSpec, RunConfig

SECONDS, CALLS = collections.defaultdict(float), collections.defaultdict(int)
#: Costs that do not grow with the random starts (deduplication grows with them, but the issue counts it here).
FIXED = ("ansatz search (total)", "deduplication", "points (spectra, canonical, orbit)")
BY_DECADE, STEPS = collections.Counter(), []


def _timed(module, name, key):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            SECONDS[key] += time.process_time() - start
            CALLS[key] += 1

    setattr(module, name, wrapper)


def _instrument():
    flow_batch = search.flow_batch
    decades = np.zeros(32, dtype=np.int64)

    def timed_flow(W, teacher, tol, max_steps, rtol, projector, handover_tol):
        key = "flow (random starts)" if projector is None else "flow (ansatz)"
        start = time.process_time()
        result = flow_batch(W, teacher, tol, max_steps, rtol, projector, handover_tol,
                            step_decades=decades if projector is None else None)
        SECONDS[key] += time.process_time() - start
        CALLS[key] += 1
        if projector is None:
            STEPS.extend(result.steps.tolist())
            BY_DECADE.update({d - 16: int(decades[d]) for d in np.flatnonzero(decades)})
            decades[:] = 0
        return result

    search.flow_batch = timed_flow
    _timed(batch_flow, "locally_convex", "convexity checks")
    _timed(search, "polish_on_rays", "polish on rays")
    _timed(search, "_polish", "Newton polish")
    _timed(search, "_basin_certified", "basin certificates")
    _timed(search, "weight_hessian", "Hessians in Newton polishing")
    _timed(build, "_ansatz_search", "ansatz search (total)")
    _timed(build, "make_candidate", "candidates")
    _timed(build, "deduplicate", "deduplication")
    _timed(build, "point_record", "points (spectra, canonical, orbit)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, default=16)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--starts", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _instrument()
    config = RunConfig(K=args.K, M=args.M, init=InitSpec(kind="random", d=args.M, scale=1.0))
    cpu = time.process_time()
    catalogue = build.build_catalogue(config, starts=args.starts, seed=args.seed, workers=1)
    total = time.process_time() - cpu
    print(f"K = {args.K}, M = {args.M}, {args.starts} starts: {total:.1f} CPU s, {len(catalogue.points)} points, "
          f"failures {catalogue.failures}")
    for key in sorted(SECONDS, key=SECONDS.get, reverse=True):
        print(f"  {key:38s} {SECONDS[key]:8.2f} s  ({CALLS[key]} calls)")
    fixed = sum(SECONDS[key] for key in FIXED)
    print(f"  fixed costs ({', '.join(FIXED)}): {fixed:.2f} s = {100 * fixed / total:.1f}% of this catalogue")
    median, high, most = np.percentile(STEPS, [50, 90, 100])
    print(f"  flow steps per random start: median {median:.0f}, 90% {high:.0f}, max {most:.0f}")
    print("  step attempts by decade of the gradient norm:",
          ", ".join(f"1e{d}: {BY_DECADE[d]}" for d in sorted(BY_DECADE, reverse=True)))


if __name__ == "__main__":
    main()
