"""``landscape hessian`` and ``landscape catalogue``: critical points and their spectra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import bounded_int, read_config, read_point

__all__ = ["register"]


def _hessian(args):
    from ..critical_points.hessian import hessian_spectrum

    point = read_point(args.point)
    spectrum = hessian_spectrum(point.Q, point.R, point.T, args.d, W=point.W, W_teacher=point.W_teacher)
    return spectrum.to_dict()


def _embed(args):
    from ..critical_points.embedding import add_student

    point = read_point(args.point)
    result = add_student(point.Q, point.R, point.T, W=point.W, W_teacher=point.W_teacher, alpha=args.alpha, d=args.d,
                         push=args.push)
    return result.to_dict()


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise ValueError(f"expected a number in (0, 1), got {text!r}")
    return value


def _print_progress(done, total):
    print(f"\rcatalogue: {done}/{total} starts", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _catalogue(args):
    from ..catalogues.build import build_catalogue

    if args.connect and args.regime != "gradient_flow":
        raise ValueError("--connect follows gradient flow of L: it needs --regime gradient_flow")
    if (args.connect_max_index is not None or args.climb) and not args.connect:
        raise ValueError("--connect-max-index and --climb need --connect")
    config = read_config(args.config)
    progress = None if args.quiet else _print_progress
    catalogue = build_catalogue(config, starts=args.starts, seed=args.seed, regime=args.regime, progress=progress)
    result = catalogue
    if args.connect:
        from ..catalogues.connections import ConnectOptions, connect_catalogue

        options = ConnectOptions(max_index=2 if args.connect_max_index is None else args.connect_max_index,
                                 climb_modes=args.climb)
        result = connect_catalogue(catalogue, options)
        if not args.quiet:
            print(f"connections: {result.message}", file=sys.stderr)
    if args.out:
        path = Path(args.out)
        if path.suffix == ".csv":
            (result.catalogue if args.connect else catalogue).save_csv(path)
        else:
            path.write_text(json.dumps(result.to_dict(), indent=1))
    return result.to_dict()


def register(subparsers):
    """Add the critical-point commands to the CLI."""
    hessian = subparsers.add_parser(
        "hessian", help="exact Hessian spectrum at a point, for input dimension D",
        description="Print the distinct Hessian eigenvalues with multiplicities (span block and bulk), "
        "index, zero modes and smallest eigenvalue of the d-dimensional loss at a point.",
    )
    hessian.add_argument("--point", required=True, metavar="P.json", help="overlaps {Q, R, T} or weights {W, W_teacher}")
    hessian.add_argument("--d", type=bounded_int(1, 10**15), required=True,
                         help="input dimension (at least the rank of the point)")
    hessian.set_defaults(handler=_hessian)

    embed = subparsers.add_parser(
        "embed", help="add a student: split each unit of a critical point, and where the split saddles' escapes end",
        description="ReLU is positively homogeneous: splitting a unit u into (a u, (1 - a) u) keeps the function, so a "
        "critical point of width K gives critical points of width K + 1 at the same loss. Prints one entry per "
        "distinct split (one per orbit of students) with its Hessian spectrum and, for saddles, the two escapes: "
        "gradient flow pushed both ways along the most negative Hessian direction, Newton-polished. 'aligned' gives "
        "the slope of the loss when a unit is added along each teacher's ray.",
    )
    embed.add_argument("--point", required=True, metavar="P.json", help="a critical point: {Q, R, T} or {W, W_teacher}")
    embed.add_argument("--d", type=bounded_int(1, 10**15), default=None,
                       help="input dimension of the spectra (default: rank + 1)")
    embed.add_argument("--alpha", type=_fraction, default=0.5, help="share kept by the split unit, in (0, 1) (default 0.5)")
    embed.add_argument("--push", type=_fraction, default=1e-2,
                       help="push along the most negative direction, relative to the largest unit (default 0.01)")
    embed.set_defaults(handler=_embed)

    catalogue = subparsers.add_parser(
        "catalogue", help="critical points found from many random starts",
        description="Run the dynamics from many seeded random starts, polish the end points with Newton's "
        "method, look for saddles, and print the distinct critical points with their spectra and basin counts.",
    )
    catalogue.add_argument("--config", required=True, metavar="C.json", help="run config (K, M, teacher, lr, init scale)")
    catalogue.add_argument("--starts", type=bounded_int(1, 20_000), required=True, help="number of random starts")
    catalogue.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=0, help="seed of the starts (default 0)")
    catalogue.add_argument(
        "--regime", choices=("gradient_flow", "finite_lr"), default="gradient_flow",
        help="critical points of L (lr -> 0, default) or fixed points of the full ODE at the config's lr",
    )
    catalogue.add_argument("--out", metavar="FILE", help="also save the catalogue (.json, or .csv for the table)")
    catalogue.add_argument(
        "--connect", action="store_true",
        help="also follow both descent paths out of every saddle (index 1, and up to --connect-max-index) and add "
        "'connections': saddle, ends, barriers, loss along each path (indices into points)",
    )
    catalogue.add_argument("--connect-max-index", type=bounded_int(1, 64), metavar="N",
                           help="with --connect: also follow every unstable direction of saddles of index 2..N (default 2)")
    catalogue.add_argument("--climb", type=bounded_int(0, 1000), default=0, metavar="N",
                           help="with --connect: first climb from every minimum up its N softest Hessian modes "
                           "(eigenvector-following) to the index-1 saddles around it, and add them (default 0)")
    catalogue.add_argument("--quiet", action="store_true", help="no progress on stderr")
    catalogue.set_defaults(handler=_catalogue)
