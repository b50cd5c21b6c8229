"""Cost models against CPU seconds: what one estimated operation costs on this machine.

For each computation a dashboard link can start, the estimate of landscape/catalogues/costs.py
(made before any work) and the CPU seconds of the real run, one process, one BLAS thread. The
models take one operation as about a nanosecond of one core (``OPERATIONS_PER_SECOND``); the
last column says how far this machine is from that. Prints a markdown table.

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
    for K, starts in ((4, 50), (8, 50), (12, 50)):
        config = RunConfig(K=K, M=K, eta2=False, init=InitSpec(d=K, seed=0))
        catalogue, seconds = _cpu(build_catalogue, config, starts, 0, workers=1)
        rows.append((f"catalogue K = M = {K}, {starts} starts", catalogue_cost(config, starts).operations, seconds))
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
    for K, eta2 in ((8, False), (12, False), (2, True), (4, True)):
        config = RunConfig(K=K, M=K, eta2=eta2, lr=0.5, noise=0.1 if eta2 else 0.0, t_max=1000.0)
        _, seconds = _cpu(run_flow, config)
        rows.append((f"flow K = M = {K}{' with η²' if eta2 else ''}", flow_cost(config).operations, seconds))
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
