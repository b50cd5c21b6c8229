"""``landscape bifurcation``: fixed points of the ODE of one-pass SGD continued in the learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import read_config, read_point

__all__ = ["register"]

#: A point with ``|grad L|`` below this is taken as a critical point of ``L`` (moved to the ODE's fixed point).
_CRITICAL_TOL = 1e-6


def _start(args, config):
    """``(Q, R, from_critical)`` of the branch's start."""
    from ..critical_points.continuation import FIXED_POINT_TOL, global_minimum_start
    from ..critical_points.fixed_points import ode_residual
    from ..model.loss import loss_gradient_norm

    T = config.teacher_matrix()
    if args.point is None:
        if config.K < config.M:
            raise ValueError(f"without --point the global minimum is continued, which needs K >= M; "
                             f"got K = {config.K}, M = {config.M}")
        Q, R = global_minimum_start(config.K, T)
        return Q, R, True
    point = read_point(args.point)
    if point.T.shape != T.shape or not np.allclose(point.T, T, atol=1e-9):
        raise ValueError(f"the point's T (shape {point.T.shape}) is not the config's teacher overlaps")
    if point.Q.shape != (config.K, config.K):
        raise ValueError(f"the point has K = {point.Q.shape[0]} students, the config K = {config.K}")
    residual = ode_residual(point.Q, point.R, T, config.lr, True, config.noise)
    if residual < FIXED_POINT_TOL:
        return point.Q, point.R, False
    gradient = loss_gradient_norm(point.Q, point.R, T)
    if gradient < _CRITICAL_TOL:
        return point.Q, point.R, True
    raise ValueError(f"the point is neither a fixed point of the ODE at lr = {config.lr} (|dx/dt| / lr = {residual:.2e} "
                     f"> {FIXED_POINT_TOL:.0e}) nor a critical point of L (|grad L| = {gradient:.2e} > {_CRITICAL_TOL:.0e})")


def _bifurcation(args):
    from ..catalogues.bifurcation import bifurcation_dict
    from ..critical_points.continuation import branch_from

    config = read_config(args.config)
    if not config.eta2:
        raise ValueError("the config has eta2 false: without the lr^2 term fixed points do not move with lr; "
                         "set \"eta2\": true")
    if not args.lr_max > config.lr:
        raise ValueError(f"--lr-max {args.lr_max} must be above the config's lr {config.lr}")
    T = config.teacher_matrix()
    Q, R, from_critical = _start(args, config)
    branch = branch_from(Q, R, T, config.lr, args.lr_max, config.noise, ds=args.ds, max_steps=args.max_steps,
                         from_critical=from_critical)
    result = bifurcation_dict([branch]) | {"message": branch.message}
    if args.out:
        try:
            Path(args.out).write_text(json.dumps(result))
        except OSError as error:
            raise ValueError(f"cannot write {args.out!r}: {error.strerror}") from None
    return result


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number, got {text!r}")
    return value


def _steps(text):
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 2:
        raise ValueError(f"--max-steps must be at least 2, got {value}")
    return value


def register(subparsers):
    """Add ``bifurcation`` to the CLI."""
    parser = subparsers.add_parser(
        "bifurcation", help="a fixed point of the SGD ODE continued in the learning rate (folds, stability)",
        description="Continue a fixed point of the full ODE (eta2 term, the config's label noise) from the "
        "config's lr to --lr-max by pseudo-arclength continuation, through folds, with its stability; print the "
        "branch (lr, loss, stable, Q, R, max_real_eigenvalue) and its events (fold, stability_change).",
    )
    parser.add_argument("--config", required=True, metavar="C.json", help="run config (K, M, teacher, lr, noise)")
    parser.add_argument("--point", metavar="P.json", help="start: overlaps {Q, R, T} or weights {W, W_teacher} of a "
                        "fixed point at the config's lr or of a critical point of L (default: the global minimum)")
    parser.add_argument("--lr-max", type=_positive, required=True, help="end of the branch in lr")
    parser.add_argument("--out", metavar="F.json", help="also save the result as JSON")
    parser.add_argument("--ds", type=_positive, default=0.05, help="largest arclength step (default 0.05)")
    parser.add_argument("--max-steps", type=_steps, default=400, help="most points on the branch (default 400)")
    parser.set_defaults(handler=_bifurcation)
