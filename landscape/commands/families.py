"""``landscape families``: each family's loss, Hessian and basin fraction across widths, from a sweep store."""

from __future__ import annotations

import json
from pathlib import Path

from .common import confidence_level, parse_where

__all__ = ["register"]


def _families(args):
    from ..catalogues.sweep_store import load_store
    from ..catalogues.widths import families_across_widths

    store = load_store(args.store)
    where = parse_where(args.where)
    catalogues = store.catalogues(where)
    if not catalogues:
        raise ValueError(f"no done catalogue in {args.store!r} matches {where or 'the store'}")
    result = families_across_widths(catalogues, confidence=args.confidence)
    if args.out:
        path = Path(args.out)
        if path.suffix == ".json":
            path.write_text(json.dumps(result.to_dict(), indent=1))
        else:
            result.to_frame().to_csv(path, index=False)
    return result.to_dict()


def register(subparsers):
    """Add the families command to the CLI."""
    parser = subparsers.add_parser(
        "families", help="each family's loss, min Hessian eigenvalue and basin fraction across K, from a sweep store",
        description="Follow each family of critical points (named by its symmetry, the same name at every K) across "
        "the catalogues of a sweep store: per K its lowest loss, smallest Hessian eigenvalue, and the fraction of "
        "random starts ending in it with a Wilson interval. Select one catalogue per K with --where (e.g. K-M=0).",
    )
    parser.add_argument("--store", required=True, metavar="DIR", help="a sweep store (landscape sweep --store DIR)")
    parser.add_argument("--where", action="append", metavar="NAME=VALUE",
                        help="keep the catalogues with this grid value or config field (repeatable), e.g. K-M=0, M=6")
    parser.add_argument("--confidence", type=confidence_level, default=0.95, help="level of the intervals (default 0.95)")
    parser.add_argument("--out", metavar="FILE", help="also save the table (.csv, one row per family and K) or .json")
    parser.set_defaults(handler=_families)
