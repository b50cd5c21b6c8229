"""Speed of the ODE right-hand side, of a gradient-flow run, and of the ODE against direct SGD.

Run: ``python benchmarks/bench_dynamics.py``. Prints a Markdown table (the README quotes it).

Timings are the best of several repeats: the machine this project runs on is a shared virtual
machine whose speed drifts by up to 1.5x from one second to the next, and the best repeat is
what the code costs. The ODE-against-SGD ratios divide best by best.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from landscape import InitSpec, RunConfig, initial_overlaps, integrate_ode, run_flow, simulate_sgd
from landscape.dynamics.compiled_flow import flow_model, velocity
from landscape.dynamics.fourpoint_flow import carried_four_point
from landscape.dynamics.ode import compile_ode, ode_velocity
from landscape.dynamics.span import student_rows, teacher_rows


def _best_time(function, repeat=5, number=20):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _compile_rows():
    # A cold numba cache in a fresh process: what the first run on a new machine pays once.
    code = ("import time; from landscape.dynamics.ode import compile_ode; s = time.perf_counter(); compile_ode(); "
            "print(time.perf_counter() - s)")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        environment = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("first run on a machine (numba compiles)", "later processes (numba's disk cache)"):
            seconds = float(subprocess.run([sys.executable, "-c", code], env=environment, check=True,
                                           capture_output=True, text=True).stdout)
            rows.append((f"compiling the ODE solver, {label}", f"{seconds:.1f} s"))
    return rows


def _rhs_rows():
    rows = []
    for K in (4, 10, 20):
        config = RunConfig(K=K, M=K, init=InitSpec(d=K, seed=0))
        Q, R = initial_overlaps(config)
        T = config.teacher_matrix()
        numpy_off = _best_time(lambda: ode_velocity(Q, R, T, 0.5, eta2=False), number=200)
        quadrature = _best_time(lambda: ode_velocity(Q, R, T, 0.5, eta2=True), number=3 if K < 20 else 1)
        carrier = carried_four_point(K, K)
        state = carrier.initial_state(np.block([[Q, R], [R.T, T]]))
        rows += [
            (f"ODE right-hand side, K = M = {K}, eta2 off, numpy", f"{numpy_off * 1e3:.3f} ms"),
            (f"ODE right-hand side, K = M = {K}, eta2 on, numpy, four-point by quadrature", f"{quadrature * 1e3:.3f} ms"),
        ]
        U0, _ = student_rows(Q, R, teacher_rows(T, K))
        for carried, label in ((False, "eta2 off"), (True, "eta2 on, four-point carried")):
            # The compiled solver's state: the student rows in the span, then the carried terms.
            y = np.concatenate([U0.ravel()] + ([state] if carried else []))
            model, out = flow_model(T, 0.5, 0.0, K, 1e6, carried), np.empty_like(y)
            seconds = _best_time(lambda: velocity(y, model, out, False), number=200 if K < 20 else 20)
            rows.append((f"ODE right-hand side, K = M = {K}, {label}, compiled (used)", f"{seconds * 1e3:.3f} ms"))
    return rows


def _flow_rows():
    rows = []
    for seed in range(3):
        config = RunConfig(K=8, M=8, lr=1.0, eta2=False, t_max=1e5, init=InitSpec(d=8, seed=seed))
        seconds = _best_time(lambda: run_flow(config), repeat=3, number=1)
        trajectory = run_flow(config)
        rows.append((
            f"gradient flow K = M = 8 to convergence (seed {seed}, ends at t = {trajectory.t[-1]:.0f}, "
            f"loss {trajectory.loss[-1]:.2g})",
            f"{seconds * 1e3:.1f} ms",
        ))
    return rows


def _ode_vs_sgd_rows(d=1000, horizons=(10.0, 20.0, 50.0, 200.0)):
    # SGD and ODE runs are interleaved, round by round, so that the best of each is taken over
    # the same stretch of this drifting machine (a speed phase lasts seconds: ten ODE runs after
    # all SGD runs could all fall into a slow one).
    rows = []
    for t_max in horizons:
        config = RunConfig(K=4, M=4, lr=0.5, eta2=True, t_max=t_max, init=InitSpec(d=d, seed=1, scale=0.5))
        Q0, R0 = initial_overlaps(config)
        T = config.teacher_matrix()
        variants = [(False, "auto", "off"), (True, "auto", "on (carried, default)")]
        sgd_seconds, ode_seconds = np.inf, {label: np.inf for _, _, label in variants}
        for _ in range(5 if t_max <= 50 else 2):
            start = time.perf_counter()
            simulation = simulate_sgd(config, d=d, seed=0)
            sgd_seconds = min(sgd_seconds, time.perf_counter() - start)
            assert np.array_equal(simulation.Q[0], Q0) and np.array_equal(simulation.R[0], R0)
            for eta2, four_point, label in variants:
                run = lambda: integrate_ode(Q0, R0, T, config.lr, t_max, eta2=eta2, four_point=four_point)  # noqa: E731
                ode_seconds[label] = min(ode_seconds[label], _best_time(run, repeat=10, number=1))
        quadrature = _best_time(lambda: integrate_ode(Q0, R0, T, config.lr, t_max, four_point="quadrature"),
                                repeat=1, number=1)
        rows.append((f"direct SGD, K = M = 4, d = {d}, t = {t_max:g} ({int(t_max * d)} steps)", f"{sgd_seconds:.2f} s"))
        for eta2, four_point, label in variants + [(True, "quadrature", "on (quadrature)")]:
            seconds = ode_seconds.get(label, quadrature)
            # Where the time goes: accepted steps and right-hand-side evaluations of the run.
            stats = integrate_ode(Q0, R0, T, config.lr, t_max, eta2=eta2, four_point=four_point).stats
            rows.append((f"ODE, eta2 {label}, same horizon (speed-up over SGD {sgd_seconds / seconds:.0f}x; "
                         f"{stats.accepted_steps} steps, {stats.rhs_evaluations} RHS)", f"{seconds * 1e3:.1f} ms"))
    return rows


def main():
    compile_ode()
    rows = _compile_rows() + _rhs_rows() + _flow_rows() + _ode_vs_sgd_rows()
    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement'.ljust(width)} | time |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
