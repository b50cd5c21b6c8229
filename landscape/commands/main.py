"""Command-line interface: ``landscape <command> ...`` (also ``python -m landscape``).

Every command prints JSON on stdout. Bad input ends with exit code 2 and one line on stderr
saying what is wrong; there is never a traceback for a user error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

__all__ = ["main", "UsageError"]

# Each module defines ``register(subparsers)``; the parser it adds sets ``handler`` to a
# function ``args -> dict`` whose result is printed as JSON.
_COMMAND_MODULES = (
    "landscape.commands.dynamics",
    "landscape.commands.points",
    "landscape.commands.sweep",
    "landscape.commands.reachability",
    "landscape.commands.maps",
    "landscape.commands.families",
    "landscape.commands.bifurcation",
)


class UsageError(Exception):
    """A user error that the CLI reports in one line with exit code 2."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser():
    """The argument parser with every registered command."""
    parser = _OneLineParser(prog="landscape", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv=None):
    """Run the CLI; returns the exit code (0 success, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required (see 'landscape --help')")
        result = args.handler(args)
    except (UsageError, ValueError, OSError) as error:
        prog = f"landscape {getattr(error, 'command', '')}".strip()
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        json.dump(result, sys.stdout, allow_nan=True)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
