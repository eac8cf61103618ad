"""The adapter between ``trainers`` and Ray Tune: reports become ``tune.report`` calls and
trainer checkpoints become Tune checkpoints. A failed trial restarts from its last checkpoint.

Tune sees as numbers only what it, the searcher, the pruning scheduler and the progress table
read (``TUNE_READS`` and the objective's ``needs``); every number of the row travels packed in
one string (``analysis.packed``), which ``analysis.collect`` unpacks: Tune keeps statistics and
windows of every numeric key in the driver and rewrites them at every save."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.result import (
    AUTO_RESULT_KEYS,
    DEBUG_METRICS,
    DONE,
    EXPERIMENT_TAG,
    SHOULD_CHECKPOINT,
    TRIAL_ID,
)

from analysis import packed
from sweeps.engine import noise, trials
from sweeps.engine.objectives import OBJECTIVES
from sweeps.engine.searcher import OBJECTIVE
from trainers import experiments
from trainers.trial import loop, provenance

# the numbers read from Tune's results: the searcher and pruning scheduler (``step``,
# ``diverged``, ``objective`` and the objective's ``needs``), Tune's check of the searcher's
# metric, the progress table (tuner.py: step, objective, diverged)
TUNE_READS = ("step", "diverged", OBJECTIVE)
# names Tune sets in a result itself (and Train's TuneReportCallback, "checkpoint_path"): never
# packed, so Tune's say on them is unchanged
TUNE_NAMES = frozenset(
    (*AUTO_RESULT_KEYS, *DEBUG_METRICS, DONE, SHOULD_CHECKPOINT, TRIAL_ID, EXPERIMENT_TAG)
) | {"experiment_id", "checkpoint_path"}


class ReportRows:
    """Turns trainer reports into rows: scalars and strings only, plus ``objective`` and
    ``git_commit``; the first row also gets ``node`` and ``versions``; ``extra`` on every row.
    ``for_tune`` packs a row for ``tune.report``."""

    def __init__(self, metric: str, penalty: float | None, **extra: Any) -> None:
        self.objective = OBJECTIVES[metric]
        self.penalty = penalty
        self.extra = extra
        self.meta = provenance.record()
        self.first = True
        self.keep = frozenset((*TUNE_READS, *self.objective.needs))

    def for_tune(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` as Tune gets it: the numbers it reads, the strings, the rest packed."""
        return packed.pack(row, self.keep, TUNE_NAMES)

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
            last: dict[str, Any] = {}

            def on_report(report: dict[str, Any], ckpt: Path | None) -> None:
                checkpoint = tune.Checkpoint.from_directory(str(ckpt)) if ckpt else None
                row = rows(report)
                board.scalars(row)  # every number, unpacked
                last.update(row)
                if ckpt is not None:  # Tune may pause the trial here (stopping its process)
                    board.flush()
                tune.report(rows.for_tune(row), checkpoint=checkpoint)
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
            finally:  # a trial Tune stops (pruned) gets its HParams row too, at its last step
                if last:
                    board.hparams(config, last)
                board.close()

    train_trial.__name__ = "gansweep_trial"
    return train_trial


HPARAMS_PREFIX = "final/"
HPARAMS_METRICS = (OBJECTIVE, "fid")  # the HParams table's metric columns, where reported


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

    def hparams(self, config: dict[str, Any], row: dict[str, Any]) -> None:
        """The trial's line of TensorBoard's HParams table: its cell, optimizer, step size,
        seed and stage, and its final ``objective`` (and ``fid`` where it reports one) as the
        scalars ``final/objective`` (``final/fid``) at its last step."""
        from tensorboardX.summary import hparams, scalar

        trainer = trials.trainer_config(config)
        params = {
            "cell": str(config.get(trials.CELL)),
            "optimizer": str(trainer.get("optimizer")),
            "lr_d": trainer.get("lr_d"),
            "lr_g": trainer.get("lr_g"),
            "seed": trainer.get("seed"),
            "stage": str(config.get(trials.STAGE, trials.TUNE)),
        }
        final = {f"{HPARAMS_PREFIX}{k}": row[k] for k in HPARAMS_METRICS if k in row}
        writer = self._writer()._get_file_writer()
        for summary in hparams(params, final):  # experiment, session start, session end
            writer.add_summary(summary)
        for tag, value in final.items():
            writer.add_summary(scalar(tag, float(value)), row.get("step"))
        writer.flush()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _reportable(value: Any) -> bool:
    """Tune rows hold scalars and strings (NaN included: it means 'not defined here')."""
    return isinstance(value, (int, float, str, bool)) or value is None
