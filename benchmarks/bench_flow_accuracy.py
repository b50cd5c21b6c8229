"""Accuracy of the ODE flows: valid overlaps, monotone gradient flow, agreement with weight space.

Run: ``python benchmarks/bench_flow_accuracy.py [--random N]``. Prints a Markdown table (the
README quotes it), one row per dashboard preset and per random start, ``eta2`` off and on:

- PSD margin: the smallest eigenvalue of the Gram matrix ``[[Q, R], [R^T, T]]`` over the output
  times, divided by its largest diagonal entry (>= -1e-12 is valid to rounding);
- increases: output times where the loss is larger than at the time before (gradient flow never
  increases it; with ``eta2`` on, it may);
- exact zeros: output times with a loss of exactly 0 after the start;
- error against weight space (``eta2`` off only): the largest relative difference of the loss
  from an independent integration of ``du/dt = -lr grad L`` on explicit weights
  (``solve_ivp``, DOP853, rtol 1e-12) wherever that loss is above 1e-13;
- solver statistics and the CPU time of the run (the machine is shared: wall time varies with load).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.integrate import solve_ivp

from landscape import InitSpec, RunConfig, run_flow
from landscape.dashboard.configs import config_from_settings
from landscape.dashboard.presets import PRESETS, preset_values
from landscape.dynamics.ode import compile_ode
from landscape.model.initialisation import initial_weights
from landscape.model.loss import gradient_from_weights, loss_from_weights


def psd_margin(trajectory):
    """Smallest eigenvalue of the Gram matrix over the output times, relative to its scale."""
    K = trajectory.Q.shape[1]
    omega = np.zeros((trajectory.t.size,) + (K + trajectory.T.shape[0],) * 2)
    omega[:, :K, :K], omega[:, :K, K:] = trajectory.Q, trajectory.R
    omega[:, K:, :K], omega[:, K:, K:] = np.swapaxes(trajectory.R, 1, 2), trajectory.T
    scale = np.max(np.diagonal(omega, axis1=1, axis2=2), axis=1)
    return float(np.min(np.linalg.eigvalsh(omega)[:, 0] / scale))


def weight_space_loss(config, times):
    """Loss at ``times`` of gradient flow on explicit weights (the span of the initial rows)."""
    W0, W_teacher = initial_weights(config)
    basis, _ = np.linalg.qr(np.vstack([W_teacher, W0]).T)  # the flow stays in this span
    U0, V = W0 @ basis, W_teacher @ basis
    K = U0.shape[0]

    def rhs(_t, y):
        return -config.lr * gradient_from_weights(y.reshape(K, -1), V).ravel()

    solution = solve_ivp(rhs, (0.0, times[-1]), U0.ravel(), t_eval=times, method="DOP853", rtol=1e-12, atol=1e-14)
    return np.array([loss_from_weights(y.reshape(K, -1), V) for y in solution.y.T])


def measure(name, config):
    start = time.process_time()
    trajectory = run_flow(config)
    seconds = time.process_time() - start
    error = "-"
    if not config.eta2:
        reference = weight_space_loss(config, trajectory.t)
        above = reference > 1e-13
        error = f"{np.max(np.abs(trajectory.loss[above] / reference[above] - 1.0)):.1e}"
    stats = trajectory.stats
    return (name, "on" if config.eta2 else "off", f"{psd_margin(trajectory):.1e}",
            str(int(np.sum(np.diff(trajectory.loss) > 0))), str(int(np.sum(trajectory.loss[1:] == 0.0))), error,
            f"{trajectory.status.code} t = {trajectory.t[-1]:.4g}, loss {trajectory.loss[-1]:.2g}",
            f"{stats.accepted_steps}/{stats.rejected_steps}/{stats.rhs_evaluations}"
            + ("" if stats.handover_time is None else f", handover t = {stats.handover_time:.4g}"),
            f"{seconds:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=10, help="number of random starts (default 10)")
    args = parser.parse_args()
    compile_ode()
    rows = []
    for eta2 in (False, True):
        for preset in PRESETS:
            rows.append(measure(preset.name, config_from_settings({**preset_values(preset.name), "eta2": eta2})))
        for seed in range(args.random):
            # Random sizes and starts around the dashboard's: K, M in 2..5, d = 1000.
            rng = np.random.default_rng(seed)
            M = int(rng.integers(2, 6))
            K = M + int(rng.integers(0, 2))
            config = RunConfig(K=K, M=M, lr=0.5, eta2=eta2, t_max=1000.0,
                               init=InitSpec(d=1000, seed=seed, scale=float(rng.uniform(0.3, 1.0))))
            rows.append(measure(f"random start {seed} (K = {K}, M = {M})", config))
    header = ("run", "eta2", "PSD margin", "increases", "exact zeros", "max rel. error vs weights",
              "end", "steps/rejected/rhs", "CPU s")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
