"""The Tune experiment of a sweep: build (or restore) the Tuner, fit it, and turn what it left
in storage into the comparison table."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import storage
from sweeps.engine import completeness, interrupts, ledger, trials
from sweeps.engine.preflight import SWEEP_RECORD
from sweeps.engine.spec import Sweep, record

EXIT_INCOMPLETE = 1  # the sweep ended with declared trials missing (the table is partial)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: resume with --resume
EXIT_RESTORE_FAILED = 4  # Tune could not read the experiment state a --resume found
# Tune deletes old checkpoints as new ones arrive, and forces an experiment snapshot only after
# a trial has checkpointed num_to_keep times; a driver killed in between restores from a
# snapshot up to two checkpoints behind, so keep three to always find it (Tuner.restore).
KEEP_CHECKPOINTS = 3


@dataclass
class Outcome:
    """What ``run`` returns: the exit code, the experiment path and the comparison table."""

    code: int
    path: str | None = None
    table: object | None = None  # pandas.DataFrame: the best step size per cell
    trials: object | None = None  # pandas.DataFrame: each trial's final row
    checkpoints: dict[str, Any] | None = None  # trial id -> its last ray.tune.Checkpoint
    error: str | None = None  # why the sweep did not start (code 2)


def trainable(sweep: Sweep, path: str) -> tuple[Any, int | None]:
    """The Tune trainable with its resources, and how many such trials fit at once when Tune
    cannot tell (multi-worker trials reserve their workers through Ray Train)."""
    from ray import tune

    from sweeps.engine.trainable import make_trainable

    if sweep.resources.workers > 1:
        from sweeps.engine import distributed

        fn = distributed.make_distributed_trainable(
            sweep.metric, sweep.penalty, sweep.resources, path
        )
        fits = distributed.trials_that_fit(sweep.resources)
        return tune.with_resources(fn, distributed.driver_resources()), fits
    fn = make_trainable(sweep.metric, sweep.penalty)
    return tune.with_resources(fn, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu}), None


def new_tuner(
    sweep: Sweep, root: str, fn: Any, max_concurrent: int | None, optuna_storage: str | None = None
) -> Any:
    """A fresh Tuner for the sweep under ``root``; records the declaration (``sweep.json``)."""
    from ray import tune

    from sweeps.engine.generator import SweepSearchGenerator
    from sweeps.engine.searcher import OBJECTIVE, CellSearcher, PruningScheduler

    path = storage.join(root, sweep.name)
    storage.write_text(path, SWEEP_RECORD, json.dumps(record(sweep), indent=1) + "\n")
    reporter = tune.CLIReporter(
        parameter_columns={
            f"{trials.TRAINER}/{k}": k for k in ("optimizer", "dataset", "lr_d", "lr_g", "seed")
        },
        metric_columns=["step", OBJECTIVE, "diverged"],
        max_report_frequency=30,
    )
    searcher = CellSearcher(sweep, path, max_concurrent, optuna_storage)
    # early stopping: the scheduler stops the seeds of the step sizes the searcher prunes
    scheduler = PruningScheduler(searcher) if sweep.early_stopping.enabled else None
    return tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(
            # the searcher limits concurrency itself: Tune's ConcurrencyLimiter keeps trial ids
            # in its checkpoint, and one lost by a killed driver holds its slot
            search_alg=SweepSearchGenerator(searcher),
            scheduler=scheduler,
            num_samples=-1,
            reuse_actors=True,  # a new process per trial would import torch again (seconds)
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=sweep.name,
            storage_path=root,
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            progress_reporter=reporter,
            callbacks=_loggers(sweep),
            verbose=1,
        ),
    )


def fit(
    sweep: Sweep,
    root: str,
    restore: bool,
    max_concurrent: int | None,
    resume_hint: str,
    optuna_storage: str | None = None,
) -> Outcome:
    """Run (or continue) the experiment; print and save the table once every trial ended."""
    from ray import tune

    import analysis

    path = storage.join(root, sweep.name)
    fn, fits = trainable(sweep, path)
    interrupts.hide_missing_metrics_warnings()
    if restore:
        for torn in ledger.set_aside_torn_states(path):
            print(
                f"gansweep: {torn} was cut short when the driver stopped; it is kept with the "
                "suffix .torn and Tune restores from the newest whole file of its kind",
                file=sys.stderr,
            )
        tuner = tune.Tuner.restore(path, trainable=fn, resume_errored=True)
    else:
        limit = max_concurrent if max_concurrent else fits
        tuner = new_tuner(sweep, root, fn, limit, optuna_storage)
    try:
        with interrupts.watch() as interrupted, refuse_half_restore():
            results = tuner.fit()
    except RestoreFailed as e:
        print(
            f"gansweep: Tune could not restore {path}: {e}. Nothing was run and nothing there "
            "was changed; a --resume reads the same files again (report this with the "
            "directory's experiment_state-*, search_gen_state-* and searcher-state-* files)",
            file=sys.stderr,
        )
        return Outcome(EXIT_RESTORE_FAILED, path, error=str(e))
    if interrupted.is_set():
        print(
            f"\n{sweep.name}: interrupted; no table is final until every trial has ended. "
            f"Resume with:\n  {resume_hint}",
            file=sys.stderr,
        )
        return Outcome(EXIT_INTERRUPTED, path)
    table, final = comparison(sweep, path)
    done = completeness.check(sweep, final)
    text = analysis.to_markdown(table)
    if not done.ok:
        print(f"\n{sweep.name}: INCOMPLETE, the table below is partial (metric {sweep.metric}):")
        print(text)
        print(
            f"\ngansweep: {sweep.name} is incomplete: {done.describe()}\n"
            f"Resume with:\n  {resume_hint}",
            file=sys.stderr,
        )
        return Outcome(EXIT_INCOMPLETE, path, table, final)
    print(f"\n{sweep.name}: {len(final)} trials; best step size per cell (metric {sweep.metric}):")
    print(text)
    storage.write_text(path, "summary.md", text + "\n")
    storage.write_text(path, "summary.csv", analysis.to_csv(table))
    return Outcome(0, path, table, final, last_checkpoints(results))


class RestoreFailed(RuntimeError):
    """Tune could not restore the experiment state it found."""


class _RefuseHalfRestore(logging.Filter):
    """Tune catches any error of its restore, logs it and goes on with a fresh experiment
    holding whatever it had restored so far (trials without their searcher, or the reverse):
    a run that looks like a resume and ends with trials missing. Raise instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RESTORE_FAILED):
            cause = record.exc_info[1] if record.exc_info else None
            raise RestoreFailed(f"{type(cause).__name__}: {cause}" if cause else RESTORE_FAILED)
        return True


TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
RESTORE_FAILED = "Failed to restore the run state"


@contextmanager
def refuse_half_restore() -> Iterator[None]:
    """Within the block, a restore that Tune's controller could not finish raises
    ``RestoreFailed`` (from its constructor, before any trial starts)."""
    logger = logging.getLogger(TUNE_CONTROLLER_LOGGER)
    guard = _RefuseHalfRestore()
    logger.addFilter(guard)
    try:
        yield
    finally:
        logger.removeFilter(guard)


def comparison(sweep: Sweep, path: str) -> tuple[Any, Any]:
    """Collect the sweep into ``<path>/results`` (parquet) and return (table, final rows):
    per cell the step size with the lowest mean objective over seeds, failed seeds counted
    as the objective's penalty (``sweeps.engine.objectives.penalty_of``)."""
    import analysis
    from sweeps.engine.objectives import OBJECTIVES, penalty_of

    results = storage.join(path, "results")
    analysis.collect(path, results, progress=_collect_fault)
    df = analysis.load(results)
    df = df[df["sweep"] == sweep.name]
    table = analysis.main_table(
        df,
        "objective",
        penalty=penalty_of(sweep.metric, sweep.penalty),
        binary=OBJECTIVES[sweep.metric].binary,
    )
    return table, analysis.final_rows(df)


def last_checkpoints(results: Any) -> dict[str, Any]:
    """trial id -> the trial's last checkpoint (a ray.tune.Checkpoint, local or on a bucket).
    Multi-worker trials keep theirs in Train's storage, named in their rows."""
    from ray.tune import Checkpoint

    out = {}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        ckpt = result.checkpoint
        path = (result.metrics or {}).get("checkpoint_path")
        if ckpt is None and path:
            fs, root = storage.filesystem(path)
            ckpt = Checkpoint(root, filesystem=fs)
        if trial_id is not None and ckpt is not None:
            out[trial_id] = ckpt
    return out


def _loggers(sweep: Sweep) -> list[Any]:
    """result.json (what ``analysis`` reads) and progress.csv per trial; Tune's TensorBoard
    logger, on the unpacked rows, only for multi-worker trials (single-process trials write
    their own, off the driver's thread: sweeps.engine.trainable.TrialBoard)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    class JsonRows(_LocalRowsFirst, JsonLoggerCallback):
        pass

    class CsvRows(_LocalRowsFirst, CSVLoggerCallback):
        pass

    loggers = [JsonRows(), CsvRows()]
    if sweep.resources.workers > 1:
        from sweeps.engine.distributed import UnpackedTBXLogger

        loggers.append(UnpackedTBXLogger())
    return loggers


class _LocalRowsFirst:
    """A Tune file logger that, when a trial starts again (resumed after a pause at a rung,
    restarted after a failure), keeps the driver's own copy of its rows where there is one.

    Tune's loggers copy the file back from storage first, and storage lags the driver by up
    to a sync period, so a trial resumed soon after its last report lost those rows (seen:
    a seed paused at its rung and resumed seconds later kept steps 200 and 300 of 100-300).
    Only a driver that never had the file (a ``--resume`` after a kill) takes storage's."""

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        if not (Path(trial.local_path) / file_name).exists():
            super()._restore_from_remote(file_name, trial)  # type: ignore[misc]


def _trial_name(trial: Any) -> str:
    return trials.name(trial.config, trial.trial_id)


def _collect_fault(done: int, total: int, name: str) -> None:
    """Tests only: ``GANSWEEP_TEST_KILL_AT=collect:N`` kills the driver after N trials of the
    end-of-sweep collection."""
    from sweeps.engine.searcher import _fault

    _fault("collect", done)
