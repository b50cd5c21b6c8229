"""``landscape map``: the disconnectivity tree of a catalogue with connections."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import bounded_int, read_json

__all__ = ["register"]


def _map(args):
    from ..catalogues.connections import ConnectedCatalogue, connect_catalogue
    from ..catalogues.disconnectivity import disconnectivity_tree
    from ..catalogues.records import Catalogue

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
    parser.add_argument("--max-index", type=bounded_int(1, 64), metavar="N",
                        help="join minima only through saddles of index <= N (1: transition states; default: all)")
    parser.add_argument("--out", metavar="FILE", help="also save the tree as JSON")
    parser.add_argument("--quiet", action="store_true", help="no notes on stderr")
    parser.set_defaults(handler=_map)
