"""The paper's Section 3 check: nSGDA learns both modes, SGDA at any lr_D/lr_G does not.

A local study (plain processes, no Ray): nsgda at its defaults and sgda at lr_D/lr_G in
{0.1, 1, 10} (lr_D 1), each for seeds 0 .. N-1. Every trial runs through
``trainers.trial.run.run_trial`` in ``OUT/<config>_seed<s>`` (rerunning resumes unfinished trials and
reuses finished ones); a pool of processes runs them and a Markdown table of the final verdicts
is printed and written to ``OUT/table.md``.

    python sweeps/bimodal_theory.py                # 20 seeds x 4 configs, 2 processes
    python sweeps/bimodal_theory.py --seeds 50
    python sweeps/bimodal_theory.py --smoke        # seconds: checks that everything runs
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

SGDA_LR_D = 1.0
SGDA_RATIOS = (0.1, 1.0, 10.0)  # lr_D / lr_G
VERDICTS = ("both", "average", "none")


def configs(smoke: bool = False) -> list[dict[str, Any]]:
    """The study's configs without seed: nsgda at its defaults, sgda at three lr ratios."""
    out: list[dict[str, Any]] = [{"experiment": "bimodal", "optimizer": "nsgda"}]
    for ratio in SGDA_RATIOS:
        lr_g = SGDA_LR_D / ratio
        out.append({"experiment": "bimodal", "optimizer": "sgda", "lr_d": SGDA_LR_D, "lr_g": lr_g})
    if smoke:  # short runs, few evaluations: only checks that everything runs
        for cfg in out:
            cfg.update(steps=200, eval_every=50)
    return out


def name(config: dict[str, Any]) -> str:
    """A directory name for a config without its seed."""
    from trainers import experiments

    cfg = experiments.resolve_config({**config, "seed": 0})
    return f"{cfg['optimizer']}_lrd{cfg['lr_d']:g}_lrg{cfg['lr_g']:g}_steps{cfg['steps']}"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per trial: the pool provides the parallelism


def _run(job: tuple[dict[str, Any], str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from trainers.trial.run import run_trial

    config, out = job
    return config, run_trial(config, out, quiet=True)


def summarise(results: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """A Markdown table: one row per config, verdict counts over its seeds."""
    from trainers import experiments

    groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for config, last in results:
        groups.setdefault(name(_unseeded(config)), []).append((config, last))
    lines = [
        "| optimizer | lr_D | lr_G | lr_D/lr_G | seeds | both | average | none | "
        "stopped by the blow-up rule | steps (median) | s / run (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for runs in groups.values():
        cfg = experiments.resolve_config(runs[0][0])
        lasts = [last for _, last in runs]
        count = {v: sum(r.get("verdict") == v for r in lasts) for v in VERDICTS}
        stopped = sum("stop_reason" in r for r in lasts)
        lines.append(
            f"| {cfg['optimizer']} | {cfg['lr_d']:g} | {cfg['lr_g']:g} | "
            f"{cfg['lr_d'] / cfg['lr_g']:g} | {len(runs)} | "
            + " | ".join(str(count[v]) for v in VERDICTS)
            + f" | {stopped} | {statistics.median(r['step'] for r in lasts):g} | "
            f"{statistics.mean(r['time_s'] for r in lasts):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=at_least(1), default=20, help="seeds 0 .. N-1 (default 20)")
    parser.add_argument("--workers", type=at_least(1), default=2, help="trials in parallel")
    parser.add_argument("--out", default="runs/bimodal_theory", help="root of the trial dirs")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 200 steps: a quick check")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds = min(args.seeds, 2)
    root = Path(args.out) / ("smoke" if args.smoke else "")
    jobs = [
        ({**config, "seed": seed}, str(root / f"{name(config)}_seed{seed}"))
        for config in configs(args.smoke)
        for seed in range(args.seeds)
    ]
    code = refuse(str(root), (config for config, _ in jobs))
    if code is not None:
        return code
    print(f"{len(jobs)} trials, {args.workers} processes, in {root}", flush=True)
    results = []
    tic = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
        for k, (config, last) in enumerate(pool.imap_unordered(_run, jobs), 1):
            results.append((config, last))
            stop = " (stopped: blow-up)" if "stop_reason" in last else ""
            print(
                f"[{k}/{len(jobs)} done, {time.perf_counter() - tic:.0f}s] "
                f"{config['optimizer']} lr_d {config.get('lr_d', 'default')} "
                f"lr_g {config.get('lr_g', 'default')} seed {config['seed']}: "
                f"{last.get('verdict')} at step {last['step']}{stop}, {last['time_s']:.2f}s",
                flush=True,
            )
    order = {name(c): i for i, c in enumerate(configs(args.smoke))}
    results.sort(key=lambda r: (order[name(_unseeded(r[0]))], r[0]["seed"]))
    table = summarise(results)
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(table + "\n")
    print(table)
    return 0


def _unseeded(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "seed"}


if __name__ == "__main__":
    sys.exit(main())
