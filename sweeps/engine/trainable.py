"""The adapter between ``trainers`` and Ray Tune: reports become ``tune.report`` calls and
trainer checkpoints become Tune checkpoints. A failed trial restarts from its last checkpoint."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from sweeps.engine.objectives import OBJECTIVES
from sweeps.engine.searcher import CELL_KEY, OBJECTIVE, TRIAL_KEY
from trainers import experiments, loop, provenance


def make_trainable(metric: str, penalty: float | None):
    """A Tune function trainable that trains one trial and reports ``objective`` with each row."""
    objective = OBJECTIVES[metric]

    def train_trial(config: dict[str, Any]) -> None:
        cfg = {k: v for k, v in config.items() if k not in (CELL_KEY, TRIAL_KEY)}
        cfg = experiments.resolve_config(cfg)
        meta = provenance.record()
        first = True
        with tempfile.TemporaryDirectory(prefix="gansweep-") as scratch:
            resume = None
            restored = tune.get_checkpoint()
            if restored is not None:
                resume = restored.to_directory(str(Path(scratch) / "resume"))

            def on_report(report: dict[str, Any], ckpt: Path | None) -> None:
                nonlocal first
                row = {k: v for k, v in report.items() if _reportable(v)}
                row[OBJECTIVE] = objective.of(report, penalty)
                row["git_commit"] = meta["git_commit"]
                if first:
                    row["node"] = ray.get_runtime_context().get_node_id()
                    row["versions"] = ", ".join(f"{k}={v}" for k, v in meta["versions"].items())
                    first = False
                checkpoint = tune.Checkpoint.from_directory(str(ckpt)) if ckpt else None
                tune.report(row, checkpoint=checkpoint)
                if ckpt is not None:
                    shutil.rmtree(ckpt, ignore_errors=True)

            images = _FigureLog()
            loop.train(
                cfg,
                on_report=on_report,
                on_figures=images.add,
                scratch=Path(scratch) / "out",
                resume=resume,
            )
            images.close()

    train_trial.__name__ = "gansweep_trial"
    return train_trial


class _FigureLog:
    """Sample figures of a trial as TensorBoard images in the trial's directory."""

    def __init__(self) -> None:
        self.writer = None

    def add(self, step: int, figures: dict[str, Any]) -> None:
        if self.writer is None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=tune.get_context().get_trial_dir())
        for name, fig in figures.items():
            self.writer.add_figure(f"samples/{name}", fig, global_step=step, close=False)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _reportable(value: Any) -> bool:
    """Tune rows hold scalars and strings (NaN included: it means 'not defined here')."""
    return isinstance(value, (int, float, str, bool)) or value is None
