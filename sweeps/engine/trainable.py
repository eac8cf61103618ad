"""The adapter between ``trainers`` and Ray Tune: reports become ``tune.report`` calls and
trainer checkpoints become Tune checkpoints. A failed trial restarts from its last checkpoint."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from sweeps.engine import noise, trials
from sweeps.engine.objectives import OBJECTIVES
from sweeps.engine.searcher import OBJECTIVE
from trainers import experiments
from trainers.trial import loop, provenance


class ReportRows:
    """Turns trainer reports into Tune rows: scalars and strings only, plus ``objective`` and
    ``git_commit``; the first row also gets ``node`` and ``versions``; ``extra`` on every row."""

    def __init__(self, metric: str, penalty: float | None, **extra: Any) -> None:
        self.objective = OBJECTIVES[metric]
        self.penalty = penalty
        self.extra = extra
        self.meta = provenance.record()
        self.first = True

    def __call__(self, report: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in report.items() if _reportable(v)}
        row[OBJECTIVE] = self.objective.of(report, self.penalty)
        row["git_commit"] = self.meta["git_commit"]
        row.update(self.extra)
        if self.first:
            row["node"] = ray.get_runtime_context().get_node_id()
            row["versions"] = ", ".join(f"{k}={v}" for k, v in self.meta["versions"].items())
            self.first = False
        return row


def resume_dir(checkpoint: Any, scratch: str) -> str | None:
    """A restored Tune/Train checkpoint as a local directory under ``scratch`` (or None)."""
    if checkpoint is None:
        return None
    return checkpoint.to_directory(str(Path(scratch) / "resume"))


def make_trainable(metric: str, penalty: float | None):
    """A Tune function trainable that trains one trial and reports ``objective`` with each row."""

    def train_trial(config: dict[str, Any]) -> None:
        noise.quiet_trial()
        cfg = trials.trainer_config(config)
        cfg = experiments.resolve_config(cfg)
        rows = ReportRows(metric, penalty)
        with tempfile.TemporaryDirectory(prefix="gansweep-") as scratch:
            board = TrialBoard()

            def on_report(report: dict[str, Any], ckpt: Path | None) -> None:
                checkpoint = tune.Checkpoint.from_directory(str(ckpt)) if ckpt else None
                row = rows(report)
                board.scalars(row)
                tune.report(row, checkpoint=checkpoint)
                if ckpt is not None:
                    shutil.rmtree(ckpt, ignore_errors=True)

            try:
                loop.train(
                    cfg,
                    on_report=on_report,
                    on_figures=board.figures,
                    scratch=Path(scratch) / "out",
                    resume=resume_dir(tune.get_checkpoint(), scratch),
                )
            finally:
                board.close()

    train_trial.__name__ = "gansweep_trial"
    return train_trial


class TrialBoard:
    """A trial's TensorBoard log in its directory: every numeric value of each row as a scalar
    (tagged by its name, at its ``step``) and the experiment's sample figures as images.

    Written here, in the trial's process, rather than by Tune's TensorBoard logger on the driver:
    that logger serialises every scalar of every trial in the driver's one thread, which delays
    the next trial's start (about 0.15 s per trial of the bimodal benchmark)."""

    def __init__(self) -> None:
        self.writer = None

    def _writer(self):
        if self.writer is None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=tune.get_context().get_trial_dir())
        return self.writer

    def scalars(self, row: dict[str, Any]) -> None:
        """Every number of ``row`` at its ``step``, as one event (a few hundred scalars per row
        would cost milliseconds as separate ``add_scalar`` events)."""
        from tensorboardX.proto.summary_pb2 import Summary

        values = [
            Summary.Value(tag=name, simple_value=float(value))
            for name, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "step"
        ]
        self._writer()._get_file_writer().add_summary(Summary(value=values), row.get("step"))

    def figures(self, step: int, figures: dict[str, Any]) -> None:
        for name, fig in figures.items():
            self._writer().add_figure(f"samples/{name}", fig, global_step=step, close=False)
        self._writer().flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _reportable(value: Any) -> bool:
    """Tune rows hold scalars and strings (NaN included: it means 'not defined here')."""
    return isinstance(value, (int, float, str, bool)) or value is None
