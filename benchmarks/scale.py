"""How gansweep's costs grow with a sweep's size N, on this machine.

Engine (a real local Ray with 2 CPUs, trivial bimodal trials of a few steps; N = 16, 64, 256 and
1,024, ``--quick`` up to 256), each N in a fresh driver process: wall time per trial, the
driver's peak memory (ru_maxrss), size and total write time of Tune's experiment state
(``TuneController.save_to_dir``) and of the searcher's state (its ledger appends and its
``save``), the mean time from a trial's end to the next trial's start on a freed CPU (from the
trials' result.json timestamps), and ``--resume`` of the finished sweep (the whole ``run``).

Analysis, over synthetic trial directories made from the real output of the engine's N = 16
sweep (each copy gets its own trial id, seed, step size and slightly perturbed values), at
N = 1,000 and 10,000: ``collect`` first, again with nothing changed, and again with 1% of the
trials gaining a report (per changed trial), ``load``, ``main_table`` and the report
(``write_report`` on the loaded frame). The baseline, measured in the same run at the same N,
is ``load`` of the layout collect wrote before (one parquet part per trial): the ratio
new / old is printed (``--quick``: at N = 1,000 only; writing 10,000 parts for it takes long).

Prints one table: N, then each cost, then the exponent b of cost ~ N^b fitted over N (per-trial
costs should have b ~ 0, totals b ~ 1).

    python benchmarks/scale.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPUS = 2
STEPS, EVAL_EVERY = 40, 4  # a trivial trial: 40 generator steps, 10 reports


def engine_sweep(n: int, name: str):
    from sweeps.engine import Cell, StepSizes, Sweep

    side = int(round(math.sqrt(n)))
    grid = tuple(float(f"{1e-3 * 2 ** (i / 2):.4g}") for i in range(n // side))
    return Sweep(
        name=name,
        experiment="bimodal",
        metric="miss_both",
        seeds=list(range(side)),
        fixed={"steps": STEPS, "eval_every": EVAL_EVERY, "checkpoint_every": STEPS},
        cells=[Cell("nsgda", StepSizes(grid=grid, ratios=(2.0,)))],
    )


class Timer:
    """Wraps a method to count its calls and sum their seconds (measurement only)."""

    def __init__(self, owner: type, name: str) -> None:
        self.calls, self.seconds = 0, 0.0
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - t

        setattr(owner, name, timed)


def trial_gaps(experiment: Path) -> float:
    """Mean seconds from a trial's end to the start of the trial that took its CPU."""
    spans = []
    for rj in experiment.glob("*/result.json"):
        rows = [json.loads(x) for x in rj.read_text().splitlines() if x.strip()]
        if rows:
            start = rows[0]["timestamp"] - rows[0].get("time_this_iter_s", 0.0)
            spans.append((start, rows[-1]["timestamp"]))
    starts = sorted(s for s, _ in spans)
    ends = sorted(e for _, e in spans)
    gaps = [starts[k] - ends[k - CPUS] for k in range(CPUS, len(starts))]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def engine_child(n: int, storage: str, resume: bool) -> dict:
    """One sweep (or its resume) in this process, the driver; returns its measurements."""
    import ray
    from ray.tune.execution.tune_controller import TuneController

    from sweeps.engine import ledger, run
    from sweeps.engine.searcher import CellSearcher

    state = Timer(TuneController, "save_to_dir")
    appends = Timer(ledger.Ledger, "append")
    saves = Timer(CellSearcher, "save")
    ray.init(num_cpus=CPUS, include_dashboard=False, logging_level="ERROR")
    spec = engine_sweep(n, f"scale{n}")
    t = time.perf_counter()
    outcome = run(spec, storage=storage, num_cpus=CPUS, resume=resume)
    wall = time.perf_counter() - t
    ray.shutdown()
    exp = Path(storage) / spec.name
    size = lambda pattern: sum(p.stat().st_size for p in exp.glob(pattern))  # noqa: E731
    return {
        "n": spec.total_trials(),
        "code": outcome.code,
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tune_state_kb": size("experiment_state-*.json") / 1024,
        "tune_saves": state.calls,
        "tune_save_s": state.seconds,
        "ledger_kb": (size(ledger.LEDGER) + size(ledger.JOURNAL)) / 1024,
        "ledger_appends": appends.calls,
        "ledger_append_s": appends.seconds,
        "searcher_save_s": saves.seconds,
        "gap_s": trial_gaps(exp) if not resume else float("nan"),
    }


def engine_one(n: int, storage: str, resume: bool) -> dict:
    cmd = [sys.executable, __file__, "--engine-child", str(n), "--storage", storage]
    cmd += ["--resume"] if resume else []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"engine run of {n} trials failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def synthesize(real: Path, dest: Path, n: int, seed: int = 0) -> Path:
    """``n`` Tune trial directories under ``dest/<sweep>/`` copied from the real trials in
    ``real`` (an experiment directory), each with its own id, seed, step size and values."""
    from analysis.packed import PACKED, pack, unpack
    from sweeps.engine.trainable import TUNE_NAMES

    rng = random.Random(seed)
    sources = []
    for trial in sorted(p for p in real.iterdir() if (p / "result.json").exists()):
        rows = [json.loads(x) for x in (trial / "result.json").read_text().splitlines()]
        sources.append((json.loads((trial / "params.json").read_text()), rows))
    exp = dest / real.name
    exp.mkdir(parents=True)
    for name in ("sweep.json",):
        if (real / name).exists():
            shutil.copy(real / name, exp / name)
    for i in range(n):
        params, rows = sources[i % len(sources)]
        tid = f"{i:08x}"
        params = json.loads(json.dumps(params))
        trainer = params.get("trainer", params)
        trainer["seed"] = i // 16
        trainer["lr_g"] = float(trainer["lr_g"]) * (1 + (i % 16) / 16)
        trainer["lr_d"] = float(trainer["lr_d"]) * (1 + (i % 16) / 16)
        params["study_trial"] = i % 16
        out = exp / f"trial_{tid}"
        out.mkdir()
        (out / "params.json").write_text(json.dumps(params))
        lines = []
        for raw in rows:  # the engine's packed metrics perturbed too, and packed again
            r = dict(unpack(raw), trial_id=tid, config=params)
            for k, v in r.items():
                if isinstance(v, float) and k not in ("timestamp", "time_total_s"):
                    r[k] = v * (1 + 0.01 * rng.random())
            if PACKED in raw:
                r = pack(r, keep=set(raw), tune=TUNE_NAMES)
            lines.append(json.dumps(r))
        (out / "result.json").write_text("\n".join(lines) + "\n")
    return exp


def old_layout(runs: Path, dest: Path) -> None:
    """The dataset as collect wrote it before: one parquet part per trial, for the baseline."""
    import pyarrow.parquet as pq

    from analysis.collect import find_trials, read_trial, to_arrow, with_status

    dest.mkdir()
    for trial in find_trials(str(runs)):
        table = to_arrow(with_status(read_trial(trial), errored=False))
        pq.write_table(table, dest / trial.part)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def analysis_at(real: Path, n: int, work: Path, baseline: bool) -> dict:
    import analysis
    from analysis.collect import records
    from analysis.report import write_report
    from analysis.samples import read as read_samples

    runs = work / f"runs{n}"
    t_make, exp = timed(lambda: synthesize(real, runs, n))
    dest = work / f"results{n}"
    t_first, _ = timed(lambda: analysis.collect(str(runs), str(dest)))
    t_same, done = timed(lambda: analysis.collect(str(runs), str(dest)))
    assert done.updated == 0
    changed = sorted(exp.glob("trial_*"))[::100]
    for trial in changed:  # a further report of 1% of the trials
        rj = trial / "result.json"
        last = json.loads(rj.read_text().splitlines()[-1])
        last["training_iteration"] += 1
        last["step"] = last.get("step", 0) + 1
        with open(rj, "a") as f:
            f.write(json.dumps(last) + "\n")
    t_incr, done = timed(lambda: analysis.collect(str(runs), str(dest)))
    assert done.updated == len(changed), done
    loads = []
    for _ in range(3):
        t_load, df = timed(lambda: analysis.load(str(dest)))
        loads.append(t_load)
    t_load = sorted(loads)[1]
    assert df.groupby(["sweep", "trial_id"]).ngroups == n
    t_table, _ = timed(lambda: analysis.main_table(df, "objective"))
    out = work / f"report{n}"
    t_report, _ = timed(
        lambda: write_report(df, str(out), records(str(dest)), read_samples(str(dest), df))
    )
    row = {
        "n": n,
        "rows": len(df),
        "files": len(list(dest.glob("*.parquet"))),
        "make_s": t_make,
        "collect_first_s": t_first,
        "collect_same_s": t_same,
        "collect_1pct_s": t_incr,
        "collect_per_changed_ms": 1000 * (t_incr - t_same) / len(changed),
        "load_s": t_load,
        "main_table_s": t_table,
        "report_s": t_report,
    }
    if baseline:
        old = work / f"old{n}"
        old_layout(runs, old)
        olds = []
        for _ in range(3):  # interleaved with the new layout's loads
            olds.append(timed(lambda: analysis.load(str(old)))[0])
            loads.append(timed(lambda: analysis.load(str(dest)))[0])
        row["load_old_s"] = sorted(olds)[1]
        row["load_s"] = sorted(loads)[len(loads) // 2]
        row["load_ratio"] = row["load_s"] / row["load_old_s"]
    shutil.rmtree(runs)
    return row


def exponent(ns: list[int], values: list[float]) -> float:
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v and v > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    ns = [r["n"] for r in rows]
    head = "| N | " + " | ".join(label for _, label in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        lines.append(
            f"| {r['n']} | "
            + " | ".join(f"{r.get(k, float('nan')):.4g}" for k, _ in columns)
            + " |"
        )
    fits = [exponent(ns, [r.get(k, float("nan")) for r in rows]) for k, _ in columns]
    lines.append("| exponent | " + " | ".join(f"{b:.2f}" for b in fits) + " |")
    return "\n".join(lines)


ENGINE_COLUMNS = [
    ("per_trial_s", "wall s/trial"),
    ("marginal_s", "marginal s/trial"),
    ("peak_rss_mb", "driver peak MB"),
    ("tune_state_kb", "Tune state KB"),
    ("tune_save_s", "Tune state write s"),
    ("tune_saves", "Tune saves"),
    ("ms_per_save", "ms/save"),
    ("ledger_kb", "ledger+journal KB"),
    ("ledger_append_s", "ledger append s"),
    ("searcher_save_s", "searcher save s"),
    ("gap_s", "end->next start s"),
    ("resume_s", "resume s"),
]
ANALYSIS_COLUMNS = [
    ("rows", "rows"),
    ("files", "files"),
    ("collect_first_s", "collect s"),
    ("collect_same_s", "re-collect, none changed s"),
    ("collect_1pct_s", "re-collect, 1% changed s"),
    ("collect_per_changed_ms", "ms/changed trial"),
    ("load_s", "load s"),
    ("load_old_s", "load, old layout s"),
    ("load_ratio", "load new/old"),
    ("main_table_s", "main_table s"),
    ("report_s", "report s"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="engine up to N = 256")
    parser.add_argument("--engine-only", action="store_true")
    parser.add_argument(
        "--analysis-only",
        metavar="EXPERIMENT",
        help="only the analysis half, copying the real trials of this Tune experiment directory",
    )
    parser.add_argument("--engine-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_child:
        print(json.dumps(engine_child(args.engine_child, args.storage, args.resume)))
        return
    ns = [16, 64, 256] if args.quick else [16, 64, 256, 1024]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for n in ns if not args.analysis_only else []:
            storage = str(work / f"engine{n}")
            row = engine_one(n, storage, resume=False)
            row["resume_s"] = engine_one(n, storage, resume=True)["wall_s"]
            row["per_trial_s"] = row["wall_s"] / row["n"]
            row["ms_per_save"] = 1000 * row["tune_save_s"] / max(row["tune_saves"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
        for a, b in zip(rows, rows[1:], strict=False):
            b["marginal_s"] = (b["wall_s"] - a["wall_s"]) / (b["n"] - a["n"])
        if not args.analysis_only:
            print(
                f"\nEngine: trivial bimodal trials ({STEPS} steps, {STEPS // EVAL_EVERY} reports), "
                f"local Ray, {CPUS} CPUs; marginal = extra wall per extra trial from the previous N"
            )
            print(table(rows, ENGINE_COLUMNS), flush=True)
        if args.engine_only:
            return
        real = Path(args.analysis_only or work / f"engine{ns[0]}" / f"scale{ns[0]}")
        if not (real / "sweep.json").exists():
            parser.error(
                f"--analysis-only {real}: not a sweep's experiment directory (no sweep.json)"
            )
        arows = []
        for n in (1000, 10000):
            # the old layout's baseline writes a parquet file per trial: at 10,000 only in full
            arows.append(analysis_at(real, n, work, baseline=n <= 1000 or not args.quick))
            print(json.dumps(arows[-1]), flush=True)
        reals = len(list(real.glob("*/result.json")))
        print(f"\nAnalysis: synthetic copies of the {reals} real trials of {real.name}")
        print(table(arows, ANALYSIS_COLUMNS))


if __name__ == "__main__":
    main()
