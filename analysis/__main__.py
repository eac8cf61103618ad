"""Command line: ``python -m analysis {collect,report} ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from analysis import storage
from analysis.collect import collect
from analysis.report import Progress, report
from analysis.schema import SchemaError
from analysis.tables import ProtocolError


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="Tune output (paths or URIs) -> parquet dataset")
    c.add_argument("runs", nargs="+", help="experiment dirs, storage dirs or plain-run dirs")
    c.add_argument("--dest", required=True, help="parquet dataset directory (path or URI)")
    r = sub.add_parser("report", help="collect, then write report.md, tables and figures")
    r.add_argument("runs", nargs="+", help="experiment dirs, storage dirs or plain-run dirs")
    r.add_argument("--out", required=True, help="report directory")
    r.add_argument("--results", default=None, help="parquet dataset (default OUT/results)")
    args = p.parse_args(argv)
    for run in args.runs:
        problem = storage.directory_problem(run, must_exist=True)
        if problem is not None:
            print(f"analysis: {problem}", file=sys.stderr)
            return 3 if problem.endswith("does not exist") else 2
    places = {"--dest": getattr(args, "dest", None), "--out": getattr(args, "out", None)}
    places["--results"] = getattr(args, "results", None)
    for flag, value in places.items():
        problem = None if value is None else storage.directory_problem(value)
        if problem is not None:
            print(f"analysis: {flag} {problem}: give a directory", file=sys.stderr)
            return 2
    try:
        if args.command == "collect":
            done = collect(args.runs, args.dest, progress=Progress())
            print(f"{done.trials} trials, {done.updated} updated, {done.rows} rows -> {args.dest}")
        else:
            print(report(args.runs, args.out, args.results))
    except (FileNotFoundError, SchemaError, ProtocolError) as e:
        print(f"analysis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
