"""Nagarajan & Kolter's toy: GD-regulariser on vs off x sgda / nsgda / adam, several seeds.

A local study (plain processes, no Ray): every (optimizer, gd_reg, seed) is one trial run by
``trainers.trial.run.run_trial`` in ``OUT/steps<N>/<optimizer>_gd<eta>_seed<s>``, a pool of processes
runs them, and a Markdown table of the final mode coverage is printed (and written to
``OUT/steps<N>/table.md``). Rerunning resumes unfinished trials and reuses finished ones.

    python sweeps/mog_gdreg.py                    # 3 seeds x 20k steps, 2 processes
    python sweeps/mog_gdreg.py --seeds 5 --steps 50000
    python sweeps/mog_gdreg.py --smoke            # seconds: checks that everything runs
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sweeps.local_study import at_least, refuse

OPTIMIZERS = ("sgda", "nsgda", "adam")
ETAS = (0.0, 0.5)


def trial_config(optimizer: str, eta: float, seed: int, steps: int) -> dict[str, Any]:
    """The config of one trial (every key not named here has the experiment's default)."""
    return {
        "experiment": "mog",
        "optimizer": optimizer,
        "seed": seed,
        "gd_reg": eta,
        "steps": steps,
        "eval_every": min(1000, steps),
        "checkpoint_every": max(1000, steps // 4),
    }


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per trial: the pool provides the parallelism


def _run(job: tuple[dict[str, Any], str, bool]) -> tuple[dict[str, Any], dict[str, Any]]:
    from trainers.trial.run import run_trial

    config, out, quiet = job
    return config, run_trial(config, out, quiet=quiet)


def summarise(results: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """A Markdown table: one row per (optimizer, gd_reg) over its seeds."""
    from trainers import experiments

    groups: dict[tuple[str, float], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for config, last in results:
        groups.setdefault((config["optimizer"], config["gd_reg"]), []).append((config, last))
    lines = [
        "| optimizer | lr (D = G) | gd_reg | modes covered (per seed) | all modes | "
        "hq fraction | KL(modes, uniform) | s / 1k steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for opt in OPTIMIZERS + tuple(sorted({o for o, _ in groups} - set(OPTIMIZERS))):
        for eta in sorted({e for o, e in groups if o == opt}):
            runs = sorted(groups[(opt, eta)], key=lambda r: r[0]["seed"])
            lasts = [last for _, last in runs]
            cfg = experiments.resolve_config(runs[0][0])
            modes = [r.get("modes_covered", 0) for r in lasts]
            total = lasts[0].get("modes_total", "?")
            full = sum(m == total for m in modes)
            diverged = sum(bool(r.get("diverged")) for r in lasts)
            per_seed = ", ".join(map(str, modes)) + (f" ({diverged} diverged)" if diverged else "")
            lines.append(
                f"| {opt} | {cfg['lr_d']:g} | {eta:g} | {_mean_sd(modes, 1)} / {total} "
                f"({per_seed}) | {full}/{len(runs)} | "
                f"{_mean_sd([r.get('hq_fraction', 0.0) for r in lasts], 2)} | "
                f"{_mean_sd([r.get('mode_kl', float('nan')) for r in lasts], 2)} | "
                f"{statistics.mean(1000 * r['time_s'] / r['step'] for r in lasts):.1f} |"
            )
    return "\n".join(lines)


def _mean_sd(values: list[float], digits: int) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=at_least(1), default=3, help="seeds 0 .. N-1 (default 3)")
    parser.add_argument(
        "--steps", type=at_least(1), default=20_000, help="iterations per trial (default 20000)"
    )
    parser.add_argument("--workers", type=at_least(1), default=2, help="trials in parallel")
    parser.add_argument("--out", default="runs/mog_gdreg", help="root of the trial directories")
    parser.add_argument(
        "--optimizers", nargs="+", default=list(OPTIMIZERS), help="default: sgda nsgda adam"
    )
    parser.add_argument(
        "--etas",
        nargs="+",
        type=at_least(0.0, float),
        default=list(ETAS),
        help="gd_reg values, each its own variant (default: 0 0.5: off and N&K's eta)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 200 steps: a quick check")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.steps = 1, 200
    root = Path(args.out) / f"steps{args.steps}"
    jobs = [
        (trial_config(opt, eta, seed, args.steps), str(root / f"{opt}_gd{eta:g}_seed{seed}"))
        for opt in reversed(args.optimizers)  # adam first: the reference comparison
        for seed in range(args.seeds)
        for eta in args.etas  # on/off of a seed side by side
    ]
    code = refuse(str(root), (config for config, _ in jobs))  # in the parent, before any trial
    if code is not None:
        return code
    print(f"{len(jobs)} trials x {args.steps} steps, {args.workers} processes, in {root}")
    results = []
    tic = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
        work = [(config, out, args.quiet) for config, out in jobs]
        for k, (config, last) in enumerate(pool.imap_unordered(_run, work), 1):
            results.append((config, last))
            print(
                f"[{k}/{len(jobs)} done, {time.perf_counter() - tic:.0f}s] {config['optimizer']} "
                f"gd_reg {config['gd_reg']:g} seed {config['seed']}: modes "
                f"{last.get('modes_covered')}/{last.get('modes_total')} "
                f"hq {last.get('hq_fraction', float('nan')):.2f}",
                flush=True,
            )
    table = summarise(results)
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
