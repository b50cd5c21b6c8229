"""Cost models against CPU seconds: what one estimated operation costs on this machine.

For each computation a dashboard link can start, the estimate of landscape/catalogues/costs.py
(made before any work) and the CPU seconds of the real run, one process, one BLAS thread. The
models take one operation as about a nanosecond of one core (``OPERATIONS_PER_SECOND``); the
last column says how far this machine is from that. Catalogues at d = K have their span in K + M = 2 K
dimensions only if d >= 2 K: at d = M (Safran & Shamir's protocol) in M, at the dashboard's d = 1000 in
K + M. The η² flows without label noise converge onto the teacher and finish with the four-point
quadrature; those with noise stop before (their estimate counts that stretch: a bound). Prints a
markdown table.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_costs.py
"""

from __future__ import annotations

import os
import time

import numpy as np

from landscape.catalogues.bifurcation import global_minimum_branch
from landscape.catalogues.build import build_catalogue
from landscape.catalogues.connections import ConnectOptions, connect_catalogue
from landscape.catalogues.costs import branch_cost, catalogue_cost, connection_cost, flow_cost, spectrum_cost
from landscape.critical_points.hessian import hessian_spectrum
from landscape.dashboard.caps import OPERATIONS_PER_SECOND
from landscape.dynamics.ode import run_flow
from landscape.model.config import InitSpec, RunConfig


def _cpu(function, *args, **kwargs):
    start = time.process_time()
    result = function(*args, **kwargs)
    return result, time.process_time() - start


def main():
    rows = []
    build_catalogue(RunConfig(K=2, M=2, eta2=False, init=InitSpec(d=2, seed=0)), 2, 0, workers=1)  # compiled
    for K, starts, d in ((4, 50, 4), (8, 50, 8), (12, 50, 12), (16, 200, 16), (16, 200, 1000)):
        config = RunConfig(K=K, M=K, eta2=False, init=InitSpec(d=d, seed=0))
        catalogue, seconds = _cpu(build_catalogue, config, starts, 0, workers=1)
        rows.append((f"catalogue K = M = {K}, {starts} starts, d = {d}", catalogue_cost(config, starts).operations,
                     seconds))
        if K <= 8:
            _, seconds = _cpu(connect_catalogue, catalogue, ConnectOptions(max_index=6, climb_modes=2))
            rows.append((f"connections of it ({len(catalogue.points)} points)",
                         connection_cost(catalogue, 6, 2).operations, seconds))
    config = RunConfig(K=2, M=2, eta2=True, lr=0.5, noise=0.0, init=InitSpec(d=1000, seed=0))
    _, seconds = _cpu(build_catalogue, config, 8, 0, "finite_lr", workers=1)
    rows.append(("finite-lr catalogue K = M = 2, 8 starts", catalogue_cost(config, 8, "finite_lr").operations, seconds))
    for K in (2, 3):
        config = RunConfig(K=K, M=K, eta2=True, lr=0.5, noise=0.1)
        _, seconds = _cpu(global_minimum_branch, config, 2.0)
        rows.append((f"continuation in lr K = M = {K}", branch_cost(K, K).operations, seconds))
    run_flow(RunConfig(K=2, M=2, t_max=10.0))  # the compiled solver loaded
    for K, eta2, lr, noise in ((8, False, 0.5, 0.0), (12, False, 0.5, 0.0), (2, True, 0.5, 0.1), (4, True, 0.5, 0.1),
                               (4, True, 0.5, 0.0), (4, True, 0.1, 0.0), (6, True, 0.5, 0.0)):
        config = RunConfig(K=K, M=K, eta2=eta2, lr=lr, noise=noise, t_max=3000.0)
        _, seconds = _cpu(run_flow, config)
        label = f" with η², lr = {lr}, noise {noise}" if eta2 else ""
        rows.append((f"flow K = M = {K}{label}", flow_cost(config).operations, seconds))
    rng = np.random.default_rng(0)
    for K in (8, 16):
        W, W_teacher = rng.normal(size=(K, 2 * K)) / np.sqrt(2 * K), np.eye(K, 2 * K)
        _, seconds = _cpu(hessian_spectrum, W @ W.T, W @ W_teacher.T, np.eye(K), 10**9)
        rows.append((f"spectrum K = M = {K}, d = 1e9", spectrum_cost(K, K, 10**9).operations, seconds))
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| computation | estimated operations | CPU s | estimate / (CPU s x 1e9) |")
    print("|---|---|---|---|")
    for name, operations, seconds in rows:
        print(f"| {name} | {operations:.2g} | {seconds:.2f} | {operations / (max(seconds, 1e-3) * OPERATIONS_PER_SECOND):.2g} |")


if __name__ == "__main__":
    main()
