"""The adapter between ``trainers`` and Ray Tune: reports become ``tune.report`` calls and
trainer checkpoints become Tune checkpoints. A failed trial restarts from its last checkpoint."""

from __future__ import annotations

import queue
import shutil
import sys
import tempfile
import threading
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
            reporter = Reporter(board)
            try:
                loop.train(
                    cfg,
                    on_report=lambda report, ckpt: reporter.put(rows(report), ckpt),
                    on_figures=board.figures,
                    scratch=Path(scratch) / "out",
                    resume=resume_dir(tune.get_checkpoint(), scratch),
                    cancelled=reporter.ended,
                )
            finally:
                try:
                    reporter.close()  # a failed trial's rows (and checkpoint) are reported first
                finally:  # a trial Tune stops (pruned) gets its HParams row too, at its last step
                    if reporter.last:
                        board.hparams(config, reporter.last)
                board.close()

    train_trial.__name__ = "gansweep_trial"
    return train_trial


HPARAMS_PREFIX = "final/"
HPARAMS_METRICS = (OBJECTIVE, "fid")  # the HParams table's metric columns, where reported


class Reporter:
    """Hands a trial's rows (and checkpoint directories) to ``tune.report`` in order from a
    thread of its own, so training goes on while the driver handles the previous row: in a
    function trainable ``tune.report`` waits until the driver asks for the next result (about
    10 ms a row and 30 ms a checkpoint here, more while the driver is busy).

    At most ``depth`` rows wait behind the one being reported, so training is never further
    ahead of what Tune has recorded. A checkpoint directory is deleted once Tune has copied it.
    When Tune stops the trial (a pruned step size) its ``tune.report`` ends the reporting
    thread and training ends after its current step (``ended``; or at its next report, with
    ``SystemExit(0)`` as inside Tune's own ``tune.report``), soon enough for Tune to reuse the
    actor; an error while reporting is raised in the training thread."""

    def __init__(self, board: TrialBoard | None = None, depth: int = 1) -> None:
        self.board = board
        self.rows: queue.Queue[tuple[dict[str, Any], Path | None] | None] = queue.Queue(depth)
        self.stopped = False  # Tune stopped the trial
        self.last: dict[str, Any] = {}  # the rows handed to Tune, merged (the last one wins)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gansweep-report", daemon=True)
        self.thread.start()

    def put(self, row: dict[str, Any], ckpt: Path | None) -> None:
        """Queue ``row`` and its checkpoint directory (waits while ``depth`` rows wait)."""
        if not self._offer((row, ckpt)):
            if ckpt is not None:
                shutil.rmtree(ckpt, ignore_errors=True)
            if self.error is not None:
                raise self.error
            sys.exit(0)

    def ended(self) -> bool:
        """Tune stopped the trial, or reporting failed: training should end now."""
        return self.stopped or self.error is not None

    def close(self) -> None:
        """Wait until every queued row is reported; raise what ended reporting early. A trial
        Tune stopped must end with ``SystemExit(0)``: returning would make Tune's function
        wrapper report once more and wait for a driver that has stopped listening."""
        self._offer(None)
        self.thread.join()
        while not self.rows.empty():  # left behind by a stop: only checkpoint files to delete
            item = self.rows.get_nowait()
            if item is not None and item[1] is not None:
                shutil.rmtree(item[1], ignore_errors=True)
        if self.error is not None:
            raise self.error
        if self.stopped:  # end as inside Tune's own tune.report, without a further report
            sys.exit(0)

    def _offer(self, item: tuple[dict[str, Any], Path | None] | None) -> bool:
        while self.thread.is_alive():
            try:
                self.rows.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        while True:
            item = self.rows.get()
            if item is None:
                return
            row, ckpt = item
            try:
                if self.board is not None:
                    self.board.scalars(row)
                checkpoint = tune.Checkpoint.from_directory(str(ckpt)) if ckpt else None
                # a stop leaves this row the last Tune got: its report waits for a driver
                # that asked for no further row
                self.last.update(row)
                tune.report(row, checkpoint=checkpoint)
            except SystemExit:
                self.stopped = True
                return
            except BaseException as e:  # raised in the training thread at its next report
                self.error = e
                return
            finally:
                if ckpt is not None:
                    shutil.rmtree(ckpt, ignore_errors=True)


class TrialBoard:
    """A trial's TensorBoard log in its directory: every numeric value of each row as a scalar
    (tagged by its name, at its ``step``) and the experiment's sample figures as images.

    Written here, in the trial's process, rather than by Tune's TensorBoard logger on the driver:
    that logger serialises every scalar of every trial in the driver's one thread, which delays
    the next trial's start (about 0.15 s per trial of the bimodal benchmark)."""

    def __init__(self) -> None:
        self.writer = None
        self.lock = threading.Lock()  # rows come from the reporting thread, figures from training

    def _writer(self):
        with self.lock:
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

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _reportable(value: Any) -> bool:
    """Tune rows hold scalars and strings (NaN included: it means 'not defined here')."""
    return isinstance(value, (int, float, str, bool)) or value is None
