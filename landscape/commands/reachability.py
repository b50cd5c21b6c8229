"""``landscape reachability``: where random starts end, over K or lr, from a sweep store."""

from __future__ import annotations

from pathlib import Path

from .common import confidence_level, parse_where

__all__ = ["register"]


def _reachability(args):
    from ..catalogues.sweep_store import load_store

    store = load_store(args.store)
    curve = store.reachability_curve(parameter=args.by, where=parse_where(args.where), confidence=args.confidence)
    if args.out:
        curve.to_frame().to_csv(Path(args.out), index=False)
    return {
        "parameter": curve.parameter,
        "values": curve.values.tolist(),
        "labels": list(curve.labels),
        "fractions": curve.fractions.tolist(),
        "lower": curve.lower.tolist(),
        "upper": curve.upper.tolist(),
        "starts": curve.starts.tolist(),
        "confidence": args.confidence,
    }


def register(subparsers):
    """Add the reachability command to the CLI."""
    parser = subparsers.add_parser(
        "reachability", help="fraction of starts reaching the global minimum vs each family, from a sweep store",
        description="Collect the catalogues of a sweep store into a curve over K (over-parameterisation) or lr: "
        "for each value, the fraction of random starts ending at the global minimum, at spurious minima (all "
        "families, then family by family), at saddles or nowhere, with Wilson confidence intervals.",
    )
    parser.add_argument("--store", required=True, metavar="DIR", help="a sweep store (landscape sweep --store DIR)")
    parser.add_argument("--by", choices=("K", "lr"), default="K", help="the parameter on the x axis (default K)")
    parser.add_argument("--where", action="append", metavar="NAME=VALUE",
                        help="keep the catalogues with this grid value or config field (repeatable), e.g. M=6, K-M=0")
    parser.add_argument("--confidence", type=confidence_level, default=0.95, help="level of the intervals (default 0.95)")
    parser.add_argument("--out", metavar="FILE.csv", help="also save the long table (one row per value and outcome)")
    parser.set_defaults(handler=_reachability)
