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


def parser(
    description: str = "Run this sweep on Ray Tune (+ Optuna).", epilog: str | None = None
) -> argparse.ArgumentParser:
    """The engine's options; a script may add its own to the parser. ``description`` and
    ``epilog`` are shown as written (``describe`` gives a sweep's epilog)."""
    p = argparse.ArgumentParser(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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


def describe(sweep: Sweep, smoke: Callable[[Sweep], Sweep] | None = None) -> str:
    """The sweep in words, for ``--help``: experiment, metric, seeds, each cell's step sizes
    and settings, the fixed keys, resources and how many trials it runs (and its smoke)."""
    from sweeps.engine.objectives import OBJECTIVES, penalty_of

    objective = OBJECTIVES.get(sweep.metric)
    meaning = (
        f" ({objective.meaning}; lower is better; a diverged or failed seed counts as "
        f"{penalty_of(sweep.metric, sweep.penalty):g})"
        if objective
        else ""
    )
    lines = [
        f"sweep {sweep.name!r}: experiment {sweep.experiment!r}, metric {sweep.metric!r}{meaning}",
        f"tuning seeds: {_seeds(sweep.seeds)}; "
        f"confirmation seeds (the chosen step size): {_seeds(sweep.confirmation_seeds())}",
        "cells (each its own Optuna study; lr_G = lr, lr_D = lr * ratio):",
    ]
    width = max((len(c.name) for c in sweep.cells), default=0)
    for cell in sweep.cells:
        lrs = cell.lrs
        if isinstance(lrs.grid, Sequence) and lrs.grid:
            search = "grid " + ", ".join(f"{v:g}" for v in lrs.grid)
        else:
            search = (
                f"TPE, {lrs.trials} trials ({lrs.startup_trials()} random first), "
                f"log-uniform in [{lrs.low}, {lrs.high}]"
            )
        if tuple(lrs.ratios) != (1.0,):
            search += "; ratios " + ", ".join(f"{r:g}" for r in lrs.ratios)
        extra = {"optimizer": cell.optimizer} if cell.label else {}
        if cell.dataset:
            extra["dataset"] = cell.dataset
        extra.update(cell.overrides)
        lines.append(f"  {cell.name:<{width}}  {search}" + (f"  {_short(extra)}" if extra else ""))
    if sweep.fixed:
        lines.append(f"fixed trainer keys: {_short(sweep.fixed)}")
    res = sweep.resources
    lines.append(
        f"per trial: cpu={res.cpu:g}, gpu={res.gpu:g}"
        + (f", {res.workers} workers" if res.workers > 1 else "")
    )
    if sweep.early_stopping.enabled:
        lines.append(f"early stopping: {sweep.early_stopping.kind}")
    try:
        small = smoke_version(sweep, smoke).total_trials()
        lines.append(f"trials: {sweep.total_trials()} (--smoke: {small})")
    except Exception:  # a declaration that validate will refuse: show what can be shown
        pass
    return "\n".join(lines)


def _seeds(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "none"


def _short(mapping: dict[str, Any], limit: int = 100) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in mapping.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    script = sys.modules.get("__main__")
    doc = (getattr(script, "__doc__", None) or "").strip() or "Run this sweep on Ray Tune."
    p = parser(doc, describe(sweep, smoke) if sweep is not None else None)
    if options is not None:
        options(p)
    args = p.parse_args(argv)
    if program is not None:
        sys.exit(program(args))
    if sweep is None:
        raise TypeError("main needs a sweep or a program")
    sys.exit(run_from_args(sweep, args, smoke).code)
