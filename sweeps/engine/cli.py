"""The command line every ``sweeps/*.py`` script shares, and ``main``, its entry point.

    python sweeps/NAME.py [--smoke] [--address ADDR] [--storage URI] [--resume]
                          [--max-concurrent N] [--num-cpus N] [--optuna-storage URL]
                          [--dashboard] [--dashboard-port N]

A script with options of its own adds them through ``main(..., options=..., program=...)``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sweeps.engine import dashboard
from sweeps.engine.driver import DEFAULT_STORAGE, run
from sweeps.engine.smoke import smoke_version
from sweeps.engine.spec import Sweep
from sweeps.engine.tuner import Outcome


def parser(description: str = "Run this sweep on Ray Tune (+ Optuna).") -> argparse.ArgumentParser:
    """The engine's options; a script may add its own to the parser."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a tiny version that runs in minutes")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument(
        "--storage", default=None, help=f"local dir or URI (default: {DEFAULT_STORAGE}/)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument(
        "--max-concurrent", type=int, default=None, help="trials at once (default: all that fit)"
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    p.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="database for the cells' Optuna studies: sqlite:////abs/studies.db, "
        "postgresql://host/db (default: optuna-journal.log in the experiment directory; "
        "a bucket storage needs one for live studies)",
    )
    p.add_argument(
        "--dashboard",
        action="store_true",
        help=f"start the local Ray with its dashboard on {dashboard.HOST} and print the URL",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=dashboard.PORT,
        metavar="N",
        help=f"port of --dashboard (default: {dashboard.PORT})",
    )
    return p


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``run`` that the command line gave."""
    return {
        "storage": args.storage,
        "address": args.address,
        "resume": args.resume,
        "max_concurrent": args.max_concurrent,
        "num_cpus": args.num_cpus,
        "resume_hint": resume_command(),
        "optuna_storage": args.optuna_storage,
        "dashboard_port": args.dashboard_port if args.dashboard else None,
    }


def resume_command(argv: Sequence[str] | None = None) -> str:
    """The command line that resumes this sweep: this one, with ``--resume``."""
    argv = list(sys.argv if argv is None else argv)
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(["python", *argv])


def run_from_args(
    sweep: Sweep, args: argparse.Namespace, smoke: Callable[[Sweep], Sweep] | None = None
) -> Outcome:
    """``run`` the sweep (its smoke version with ``--smoke``) as the parsed options say."""
    if args.smoke:
        sweep = smoke_version(sweep, smoke)
    return run(sweep, **run_options(args))


def main(
    sweep: Sweep | None = None,
    smoke: Callable[[Sweep], Sweep] | None = None,
    *,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    program: Callable[[argparse.Namespace], int] | None = None,
    argv: Sequence[str] | None = None,
) -> NoReturn:
    """Entry point of a sweep script: parse the command line, run, exit with the code.

    ``options(parser)`` adds a script's own options; ``program(args)`` replaces the plain run
    of ``sweep`` (e.g. a sweep in two stages) and returns the exit code."""
    p = parser()
    if options is not None:
        options(p)
    args = p.parse_args(argv)
    if program is not None:
        sys.exit(program(args))
    if sweep is None:
        raise TypeError("main needs a sweep or a program")
    sys.exit(run_from_args(sweep, args, smoke).code)
