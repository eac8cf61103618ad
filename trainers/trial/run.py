"""The plain-process runner: one trial in DIR, resumable, results in DIR/results.jsonl.

    python -m trainers run CONFIG.json --out DIR      (CONFIG may also be inline JSON)

DIR/trial.json holds the resolved config, git commit and package versions; DIR/results.jsonl
one JSON object per report; DIR/checkpoints/ the newest checkpoints. Rerun with the same DIR
to resume from the newest checkpoint: reports after it are dropped and recomputed, so the
results file never holds a row twice and never loses one.
"""

from __future__ import annotations

import contextlib
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
    """Parse CONFIG: a JSON file's path or inline JSON. Raises ConfigError when unreadable,
    FileNotFoundError when the file does not exist."""
    source = text_or_path
    if not text_or_path.lstrip().startswith("{"):
        path = Path(text_or_path)
        if not path.exists():
            raise FileNotFoundError(
                f"config file {text_or_path!r} does not exist (give a JSON file or inline JSON)"
            )
        if not path.is_file():
            raise ConfigError("<config>", text_or_path, "a JSON file, or inline JSON")
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
    for place in (out, *out.parents):
        if place.exists():
            if not place.is_dir():
                raise ConfigError("--out", str(out), f"a directory ({place} is a file)")
            break
    trial_file = out / TRIAL
    if trial_file.exists():
        check_same_config(config, cfg, json.loads(trial_file.read_text()))
    made = [p for p in (out, *out.parents) if not p.exists()]  # removed again on a bad config
    out.mkdir(parents=True, exist_ok=True)
    fresh = not trial_file.exists()
    if fresh:
        write_json_atomic(trial_file, {"config": cfg, "given": config, **provenance.record()})

    results = out / RESULTS
    latest, rows = readable_checkpoint(out / CHECKPOINTS)
    resumed_at = checkpoint.step_of(latest) if latest is not None else 0
    if latest is not None:
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
    except ConfigError:  # found only when building (a scale profile against the layers)
        if fresh and not results.exists():
            trial_file.unlink(missing_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(OSError):
                (out / CHECKPOINTS).rmdir()
            for place in made:  # innermost first: only the empty directories made here
                with contextlib.suppress(OSError):
                    place.rmdir()
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    return last


def check_same_config(given: dict[str, Any], cfg: dict[str, Any], trial: dict[str, Any]) -> None:
    """Refuse to continue a trial directory with another config (ConfigError naming the keys
    the user changed, not the defaults that follow from them)."""
    previous = trial["config"]
    if previous == json.loads(json.dumps(cfg)):
        return
    before = trial.get("given")  # the user's own keys (absent in older trial.json)
    now = json.loads(json.dumps(given))
    if before is not None:
        changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
    else:
        changed = sorted(k for k in now if now[k] != previous.get(k))
    if not changed:  # only defaults moved (another gansweep version): name those
        changed = sorted(k for k in set(cfg) | set(previous) if cfg.get(k) != previous.get(k))
    words = "; ".join(
        f"{k}: {(before or previous).get(k, '(unset)')!r} -> {now.get(k, '(unset)')!r}"
        for k in changed
    )
    raise ConfigError(
        changed[0],
        now.get(changed[0], cfg.get(changed[0])),
        f"the config this directory's trial was started with; changed: {words}. "
        "Use another --out for another config",
    )


def readable_checkpoint(root: Path) -> tuple[Path | None, int]:
    """The newest checkpoint under ``root`` that loads, and the rows it says were written.
    A newer one that does not load (cut short, corrupt) is renamed ``corrupt-<name>`` with a
    warning naming it; the trial resumes from the one before (or the start)."""
    while True:
        latest = checkpoint.latest(root)
        if latest is None:
            return None, 0
        try:
            return latest, int(checkpoint.read(latest)["loop"]["reports"])
        except Exception as e:  # torch's errors for a damaged zip vary: any failure to load
            aside = latest.with_name("corrupt-" + latest.name)
            os.replace(latest, aside)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(
                f"warning: checkpoint {latest / checkpoint.STATE} does not load ({reason}); "
                f"moved to {aside}, resuming from the checkpoint before it",
                file=sys.stderr,
            )


class Interrupted(Exception):
    """Ctrl-C during a trial: the last step reported and the step of the newest checkpoint."""

    def __init__(self, step: int, checkpoint_step: int) -> None:
        super().__init__(step, checkpoint_step)
        self.step = step
        self.checkpoint_step = checkpoint_step
