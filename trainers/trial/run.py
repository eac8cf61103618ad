"""The plain-process runner: one trial in DIR, resumable, results in DIR/results.jsonl.

    python -m trainers run CONFIG.json --out DIR      (CONFIG may also be inline JSON)

DIR/trial.json holds the resolved config, git commit and package versions; DIR/results.jsonl
one JSON object per report; DIR/checkpoints/ the newest checkpoints. Rerun with the same DIR
to resume from the newest checkpoint: reports after it are dropped and recomputed, so the
results file never holds a row twice and never loses one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from trainers import experiments
from trainers.config import ConfigError
from trainers.trial import checkpoint, loop, provenance
from trainers.trial.atomic import atomic_write

RESULTS = "results.jsonl"
TRIAL = "trial.json"
CHECKPOINTS = "checkpoints"
IMAGES = "images"


def load_config(text_or_path: str) -> dict[str, Any]:
    """Parse CONFIG: a JSON file's path or inline JSON. Raises ConfigError when unreadable."""
    source = text_or_path
    if not text_or_path.lstrip().startswith("{"):
        path = Path(text_or_path)
        if not path.is_file():
            raise ConfigError("<config>", text_or_path, "a JSON file that exists, or inline JSON")
        source = path.read_text()
    try:
        config = json.loads(source)
    except json.JSONDecodeError as e:
        raise ConfigError("<config>", text_or_path, f"valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError("<config>", config, "a JSON object")
    return config


def strict_json(report: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities become null: results.jsonl is strict JSON (``diverged`` says why)."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in report.items()
    }


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and a rename."""
    with atomic_write(path) as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)


def truncate_results(path: Path, rows: int) -> None:
    """Keep the first ``rows`` complete lines of ``path`` (atomically); drop the rest."""
    if not path.exists():
        if rows:
            raise RuntimeError(
                f"{path} is missing but the checkpoint says {rows} rows were written"
            )
        return
    lines = path.read_text().splitlines(keepends=True)
    complete = [line for line in lines if line.endswith("\n")]
    if len(complete) < rows:
        raise RuntimeError(f"{path} has {len(complete)} rows but the checkpoint says {rows}")
    if len(lines) == rows:
        return
    with atomic_write(path) as f:
        f.writelines(complete[:rows])


def run_trial(
    config: dict[str, Any], out: str | os.PathLike, quiet: bool = False
) -> dict[str, Any]:
    """Train (or resume) the trial of ``config`` in directory ``out``; return its last report."""
    cfg = experiments.resolve_config(config)
    out = Path(out)
    trial_file = out / TRIAL
    if trial_file.exists():
        previous = json.loads(trial_file.read_text())["config"]
        if previous != json.loads(json.dumps(cfg)):
            diff = sorted(k for k in set(cfg) | set(previous) if cfg.get(k) != previous.get(k))
            raise ConfigError(
                diff[0],
                cfg.get(diff[0]),
                f"the value this directory's trial was started with ({previous.get(diff[0])!r}); "
                "use another --out for another config",
            )
    out.mkdir(parents=True, exist_ok=True)
    if not trial_file.exists():
        write_json_atomic(trial_file, {"config": cfg, **provenance.record()})

    results = out / RESULTS
    latest = checkpoint.latest(out / CHECKPOINTS)
    resumed_at = checkpoint.step_of(latest) if latest is not None else 0
    if latest is not None:
        rows = checkpoint.read(latest)["loop"]["reports"]
        truncate_results(results, rows)
        if not quiet:
            print(
                f"resumed from step {resumed_at} (the newest checkpoint in {out})", file=sys.stderr
            )
    elif results.exists():
        truncate_results(results, 0)  # rows from a run that never checkpointed are redone
    scratch = out / CHECKPOINTS / ".incoming"
    shutil.rmtree(scratch, ignore_errors=True)

    reached = {"step": resumed_at, "checkpoint": resumed_at}

    def on_report(report: dict[str, Any], ckpt: Path | None) -> None:
        reached["step"] = report["step"]
        with open(results, "a") as f:
            f.write(json.dumps(strict_json(report), sort_keys=True, allow_nan=False) + "\n")
            if ckpt is not None:  # rows up to a checkpoint are durable before it exists;
                f.flush()  # later rows are redone on resume anyway
                os.fsync(f.fileno())
        if ckpt is not None:
            checkpoint.install(ckpt, out / CHECKPOINTS, report["step"])
            reached["checkpoint"] = report["step"]

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def on_figures(step: int, figures: dict[str, Any]) -> None:
        images = out / IMAGES
        images.mkdir(exist_ok=True)
        for name, fig in figures.items():
            with atomic_write(images / f"{name}_step{step:09d}.png", "wb", sync=False) as f:
                fig.savefig(f, format="png", dpi=80)

    try:
        last = loop.train(
            cfg,
            on_report=on_report,
            on_figures=on_figures,
            scratch=scratch,
            resume=latest,
            progress=None if quiet else progress,
        )
    except KeyboardInterrupt:
        raise Interrupted(reached["step"], reached["checkpoint"]) from None
    shutil.rmtree(scratch, ignore_errors=True)
    return last


class Interrupted(Exception):
    """Ctrl-C during a trial: the last step reported and the step of the newest checkpoint."""

    def __init__(self, step: int, checkpoint_step: int) -> None:
        super().__init__(step, checkpoint_step)
        self.step = step
        self.checkpoint_step = checkpoint_step
