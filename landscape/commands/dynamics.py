"""``landscape loss``, ``landscape flow`` and ``landscape simulate``."""

from __future__ import annotations

from ..dynamics.ode import MAX_OUTPUT_POINTS, run_flow
from ..dynamics.sgd import simulate_sgd
from ..model.loss import (
    PairResiduals,
    gradient_from_weights,
    gradient_norm_from_overlaps,
    loss_from_overlaps,
)
from .common import bounded_float, bounded_int, read_config, read_point

__all__ = ["register"]


def _loss(args):
    point = read_point(args.point)
    if point.W is not None:
        # Weights give exact pair residuals: no rounding floor at aligned units.
        residuals = PairResiduals.from_weights(point.W, point.W_teacher)
        loss = float(loss_from_overlaps(point.Q, point.R, point.T, residuals))
        gradient_norm = float((gradient_from_weights(point.W, point.W_teacher) ** 2).sum() ** 0.5)
    else:
        loss = float(loss_from_overlaps(point.Q, point.R, point.T))
        gradient_norm = float(gradient_norm_from_overlaps(point.Q, point.R, point.T))
    return {"loss": loss, "gradient_norm": gradient_norm, "K": point.Q.shape[0], "M": point.T.shape[0]}


def _flow(args):
    return run_flow(read_config(args.config), tol=args.tol, n_points=args.points).to_dict()


def _simulate(args):
    config = read_config(args.config)
    return simulate_sgd(config, d=args.d, seed=args.seed, n_points=args.points).to_dict()


def register(subparsers):
    """Add the dynamics commands to the CLI."""
    loss = subparsers.add_parser(
        "loss", help="population loss and gradient norm at a point",
        description="Print JSON {loss, gradient_norm} for overlaps {Q, R, T} or weights {W, W_teacher} "
        "(rows are units in normalised units u = w / sqrt(d)).",
    )
    loss.add_argument("--point", required=True, metavar="P.json", help="JSON file with Q, R, T or W, W_teacher")
    loss.set_defaults(handler=_loss)

    flow = subparsers.add_parser(
        "flow", help="integrate the ODE of one-pass SGD",
        description="Integrate the summary-statistics ODE of a run config; print t, loss, Q, R, status.",
    )
    flow.add_argument("--config", required=True, metavar="C.json", help="run config (see README)")
    flow.add_argument("--tol", type=bounded_float(0.0, 1.0), default=1e-8,
                      help="convergence threshold on the speed (default 1e-8)")
    flow.add_argument("--points", type=bounded_int(2, MAX_OUTPUT_POINTS), default=400,
                      help="number of output times (default 400)")
    flow.set_defaults(handler=_flow)

    simulate = subparsers.add_parser(
        "simulate", help="direct one-pass SGD at finite d",
        description="Simulate one-pass SGD in input dimension D; print the same keys as 'flow'.",
    )
    simulate.add_argument("--config", required=True, metavar="C.json", help="run config (init kind 'random')")
    simulate.add_argument("--d", type=bounded_int(1, 10_000_000), required=True, help="input dimension")
    simulate.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=0, help="seed of the data stream (default 0)")
    simulate.add_argument("--points", type=bounded_int(2, 100_000), default=200, help="number of recorded times (default 200)")
    simulate.set_defaults(handler=_simulate)
