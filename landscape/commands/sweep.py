"""``landscape sweep``: run a grid of catalogues on Dask into a resumable store, or report on a store."""

from __future__ import annotations

import argparse
import sys
import time

from ..catalogues.sweep import run_sweep
from ..catalogues.sweep_spec import DEFAULT_SPEC, load_spec
from ..catalogues.sweep_store import load_store

__all__ = ["register"]


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _ProgressLine:
    """Tasks done / total and ETA on stderr: redrawn in place on a terminal, a line now and then in a log."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.last = -float("inf")

    def __call__(self, report):
        now = time.monotonic()
        final = report.finished == report.to_run
        if not (final or report.finished == 0 or now - self.last >= (0.2 if self.interactive else 5.0)):
            return
        self.last = now
        if report.finished == 0:
            print(f"sweep: {report.total} tasks, {report.total - report.to_run} already in the store, "
                  f"computing {report.to_run} on {report.engine}", file=self.stream, flush=True)
        eta = "ETA --:--:--" if report.eta is None else f"ETA {_duration(report.eta)}"
        line = (f"sweep: {report.done + report.failed}/{report.total} tasks ({report.failed} failed) | "
                f"this run {report.finished}/{report.to_run} | {_duration(report.elapsed)} elapsed | {eta}")
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if final else ""))
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)


def _spec_for(args):
    if args.default_spec:
        return load_spec(DEFAULT_SPEC)
    if args.spec:
        return load_spec(args.spec)
    try:
        return load_store(args.store).spec
    except ValueError:
        raise ValueError(f"--store {args.store!r} holds no sweep yet: give --spec S.json (or --default-spec)") from None


def _status(args):
    store = load_store(args.status)
    failures = [{"key": r.task.key, "point": r.task.point, "reason": r.reason} for r in store.records if not r.success]
    summary = {"done": store.n_done, "failed": store.n_failed, "missing": store.n_missing, "total": store.n_total,
               "status": store.status.code, "message": store.message, "failures": failures}
    # JSON always, like every command (it used to print text unless --json was given).
    return summary


def _dry_run(spec, store_path):
    try:
        finished = {record.task.key: record.status.code for record in load_store(store_path).records}
    except ValueError:
        finished = {}
    tasks = [{"key": task.key, "point": task.point, "status": finished.get(task.key, "missing")} for task in spec.tasks]
    return {"total": len(tasks), "missing": sum(task["status"] == "missing" for task in tasks), "tasks": tasks}


def _sweep(args):
    if args.status is not None:
        if args.spec or args.store or args.default_spec:
            raise ValueError("--status DIR reports on a store; do not combine it with --spec, --default-spec or --store")
        return _status(args)
    if args.json:
        raise ValueError("--json goes with --status DIR (every command prints JSON; the flag is kept for old scripts)")
    if args.store is None:
        raise ValueError("--store DIR is required (the folder that holds the results)")
    if args.spec and args.default_spec:
        raise ValueError("give either --spec S.json or --default-spec, not both")
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("give either --workers N (a local cluster) or --scheduler ADDRESS, not both")
    spec = _spec_for(args)
    if args.dry_run:
        return _dry_run(spec, args.store)
    progress = None if args.quiet else _ProgressLine()
    result = run_sweep(spec, args.store, workers=args.workers, scheduler=args.scheduler, retries=args.retries,
                       retry_failed=args.retry_failed, progress=progress)
    return result.to_dict()


def _count(low):
    # ArgumentTypeError: argparse then quotes our message instead of "invalid parse value".
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def register(subparsers):
    """Add ``landscape sweep`` to the CLI."""
    parser = subparsers.add_parser(
        "sweep", help="many catalogues over a grid, on Dask, into a resumable store",
        description="Compute one catalogue per grid point of a spec on Dask (a local cluster, or any "
        "scheduler by address) into a store folder; re-running resumes with the missing tasks. "
        "Progress goes to stderr, the summary (JSON) to stdout.",
    )
    parser.add_argument("--spec", metavar="S.json", help='sweep spec {"base": config, "grid": {...}, "starts": N, "seed": S}')
    parser.add_argument("--default-spec", action="store_true", help="use the built-in spec (the shipped catalogues)")
    parser.add_argument("--store", metavar="DIR", help="results folder (without --spec: resume the sweep stored there)")
    parser.add_argument("--workers", type=_count(1), metavar="N",
                        help="size of the local cluster (default: one process per core)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--retries", type=_count(0), default=2, metavar="N",
                        help="extra attempts for a task that crashes (default 2)")
    parser.add_argument("--retry-failed", action="store_true", help="compute tasks recorded as failed again")
    parser.add_argument("--dry-run", action="store_true", help="list the tasks and their status, compute nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--status", metavar="DIR", help="summarise a store: done, failed, missing")
    parser.add_argument("--json", action="store_true", help="with --status: accepted for old scripts (the status is always JSON)")
    parser.set_defaults(handler=_sweep)
