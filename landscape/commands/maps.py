"""``landscape map``: the disconnectivity tree of a catalogue with connections."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import read_json

__all__ = ["register"]


def _whole(text):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _map(args):
    from ..catalogues.connections import ConnectedCatalogue, connect_catalogue
    from ..catalogues.disconnectivity import disconnectivity_tree
    from ..catalogues.records import Catalogue

    if args.max_index is not None and args.max_index < 1:
        raise ValueError(f"--max-index must be a whole number >= 1, got {args.max_index}")
    data = read_json(args.catalogue, "catalogue")
    if isinstance(data, dict) and "connections" in data:
        connected = ConnectedCatalogue.from_dict(data)
    else:
        if not args.quiet:
            print("map: the catalogue has no connections; following the descents from its saddles",
                  file=sys.stderr)
        connected = connect_catalogue(Catalogue.from_dict(data))
    tree = disconnectivity_tree(connected, max_index=args.max_index)
    result = tree.to_dict()
    result["connect_message"] = connected.message
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def register(subparsers):
    """Add ``landscape map`` to the CLI."""
    parser = subparsers.add_parser(
        "map", help="disconnectivity tree of a catalogue (minima merging at saddle losses)",
        description="Print the disconnectivity tree of a catalogue: leaves are minima (with basin fractions), "
        "inner nodes the saddles where groups of minima join, at their loss. A catalogue without 'connections' "
        "(landscape catalogue ... --connect) is connected first.",
    )
    parser.add_argument("--catalogue", required=True, metavar="CAT.json", help="catalogue JSON (from landscape catalogue)")
    parser.add_argument("--max-index", type=_whole, metavar="N",
                        help="join minima only through saddles of index <= N (1: transition states; default: all)")
    parser.add_argument("--out", metavar="FILE", help="also save the tree as JSON")
    parser.add_argument("--quiet", action="store_true", help="no notes on stderr")
    parser.set_defaults(handler=_map)
