"""Speed of the ODE right-hand side, of a gradient-flow run, and of the ODE against direct SGD.

Run: ``python benchmarks/bench_dynamics.py``. Prints a Markdown table (the README quotes it).
"""

from __future__ import annotations

import time

import numpy as np

from landscape.fourpoint_flow import CarriedFourPoint
from landscape import InitSpec, RunConfig, initial_overlaps, integrate_ode, ode_velocity, run_flow, simulate_sgd


def _best_time(function, repeat=5, number=20):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _rhs_rows():
    rows = []
    for K in (4, 10, 20):
        config = RunConfig(K=K, M=K, init=InitSpec(d=K, seed=0))
        Q, R = initial_overlaps(config)
        T = config.teacher_matrix()
        for eta2 in (False, True):
            number = 200 if not eta2 else 3
            seconds = _best_time(lambda: ode_velocity(Q, R, T, 0.5, eta2=eta2), number=number)
            label = "on, four-point by quadrature" if eta2 else "off"
            rows.append((f"ODE right-hand side, K = M = {K}, eta2 {label}", f"{seconds * 1e3:.3f} ms"))
        carrier = CarriedFourPoint(K, K)
        state = carrier.initial_state(np.block([[Q, R], [R.T, T]]))
        seconds = _best_time(lambda: carrier.velocity(Q, R, T, 0.5, 0.0, state), number=50 if K < 20 else 5)
        rows.append((f"ODE right-hand side, K = M = {K}, eta2 on, four-point carried", f"{seconds * 1e3:.3f} ms"))
    return rows


def _flow_rows():
    rows = []
    for seed in range(3):
        config = RunConfig(K=8, M=8, lr=1.0, eta2=False, t_max=1e5, init=InitSpec(d=8, seed=seed))
        start = time.perf_counter()
        trajectory = run_flow(config)
        seconds = time.perf_counter() - start
        rows.append((
            f"gradient flow K = M = 8 to convergence (seed {seed}, ends at t = {trajectory.t[-1]:.0f}, loss {trajectory.loss[-1]:.2g})",
            f"{seconds:.2f} s",
        ))
    return rows


def _ode_vs_sgd_rows(d=1000, horizons=(20.0, 200.0)):
    rows = []
    for t_max in horizons:
        config = RunConfig(K=4, M=4, lr=0.5, eta2=True, t_max=t_max, init=InitSpec(d=d, seed=1, scale=0.5))
        start = time.perf_counter()
        simulation = simulate_sgd(config, d=d, seed=0)
        sgd_seconds = time.perf_counter() - start
        rows.append((f"direct SGD, K = M = 4, d = {d}, t = {t_max:g} ({int(t_max * d)} steps)", f"{sgd_seconds:.2f} s"))
        for eta2, four_point, label in ((False, "auto", "off"), (True, "carried", "on (carried, default)"),
                                        (True, "quadrature", "on (quadrature)")):
            start = time.perf_counter()
            integrate_ode(simulation.Q[0], simulation.R[0], config.teacher_matrix(), config.lr, t_max, eta2=eta2,
                          four_point=four_point)
            ode_seconds = time.perf_counter() - start
            rows.append((f"ODE, eta2 {label}, same horizon (speed-up over SGD {sgd_seconds / ode_seconds:.0f}x)",
                         f"{ode_seconds:.3f} s"))
    return rows


def main():
    rows = _rhs_rows() + _flow_rows() + _ode_vs_sgd_rows()
    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement'.ljust(width)} | time |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
