"""Speed of the exact Hessian spectrum (:func:`landscape.hessian_spectrum`) for any input dimension d.

Run: ``python benchmarks/bench_hessian.py``. Prints a Markdown table (the README quotes it). The
target of the issue: a ``K = M = 20`` point in well under a second for any ``d``.
"""

from __future__ import annotations

import time

from landscape import InitSpec, RunConfig, hessian_spectrum, initial_overlaps


def _best_time(function, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    print("| K = M | d | Hessian size | distinct eigenvalues | time |")
    print("| --- | --- | --- | --- | --- |")
    for K in (4, 10, 20):
        config = RunConfig(K=K, M=K, init=InitSpec(d=1000, seed=0))
        Q, R = initial_overlaps(config)
        T = config.teacher_matrix()
        for d in (2 * K + 1, 1000, 10**6):
            spectrum = hessian_spectrum(Q, R, T, d)
            seconds = _best_time(lambda: hessian_spectrum(Q, R, T, d))
            print(f"| {K} | {d:,} | {K * d:,} x {K * d:,} | {len(spectrum.eigenvalues)} | {seconds * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
