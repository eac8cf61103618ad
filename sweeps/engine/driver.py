"""Run a declared ``Sweep`` on Ray Tune: the command line every ``sweeps/*.py`` script shares.

    python sweeps/NAME.py [--smoke] [--address ADDR] [--storage URI] [--resume]
                          [--max-concurrent N] [--num-cpus N]

Everything is validated before Ray starts or a file is written; a bad value exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sweeps.engine import completeness, interrupts, ledger
from sweeps.engine.spec import Sweep, SweepError, differences, record

EXIT_INCOMPLETE = 1  # the sweep ended with declared trials missing (the table is partial)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: resume with --resume
SWEEP_RECORD = "sweep.json"
DEFAULT_STORAGE = "runs"
# Tune deletes old checkpoints as new ones arrive, and forces an experiment snapshot only after
# a trial has checkpointed num_to_keep times; a driver killed in between restores from a
# snapshot up to two checkpoints behind, so keep three to always find it (Tuner.restore).
KEEP_CHECKPOINTS = 3
DATA_CHECK_TIMEOUT_S = 600.0  # a cluster's data check waits this long for a worker node


@dataclass
class Outcome:
    """What ``run`` returns: the exit code, the experiment path and the comparison table."""

    code: int
    path: str | None = None
    table: object | None = None  # pandas.DataFrame
    trials: object | None = None  # pandas.DataFrame
    checkpoints: dict[str, Any] | None = None  # trial id -> its last ray.tune.Checkpoint


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run this sweep on Ray Tune (+ Optuna).")
    p.add_argument("--smoke", action="store_true", help="a tiny version that runs in a minute")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument(
        "--storage", default=None, help=f"local dir or URI (default: {DEFAULT_STORAGE}/)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument(
        "--max-concurrent", type=int, default=None, help="trials at once (default: all that fit)"
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    return p.parse_args(argv)


def smoke_version(sweep: Sweep, smoke: Callable[[Sweep], Sweep]) -> Sweep:
    """The script's smoke sweep, named ``<name>_smoke`` so it never mixes with the real one."""
    from dataclasses import replace

    return replace(smoke(sweep), name=f"{sweep.name}_smoke")


def storage_path(storage: str | None) -> str:
    """An absolute local path or a URI, as Tune wants it."""
    value = storage or DEFAULT_STORAGE
    return value if "://" in value else os.path.abspath(value)


def experiment_exists(storage: str, name: str) -> bool:
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(storage if "://" in storage else "file://" + storage)
    info = fs.get_file_info(f"{root.rstrip('/')}/{name}")
    return info.type != pyarrow.fs.FileType.NotFound


def workers_that_fit(node: dict[str, float], cpu: float, gpu: float) -> int:
    """How many workers of (cpu, gpu) one node's total resources hold."""
    fits = int(node.get("CPU", 0) // cpu + 1e-9)
    if gpu > 0:
        fits = min(fits, int(node.get("GPU", 0) // gpu + 1e-9))
    return fits


def _check_resources(sweep: Sweep, remote: bool) -> None:
    """Refuse trials that the cluster can never hold: all ``workers`` of one trial at once,
    each on one node (locally; warn on a cluster that may autoscale)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    res = sweep.resources
    if sum(workers_that_fit(r, res.cpu, res.gpu) for r in nodes) >= res.workers:
        return
    need = f"cpu={res.cpu:g}, gpu={res.gpu:g}"
    if res.workers > 1:
        need = f"{res.workers} workers of {need} each"
    have = "; ".join(f"cpu={r.get('CPU', 0):g}, gpu={r.get('GPU', 0):g}" for r in nodes)
    message = f"a trial needs {need} but the cluster cannot hold that (nodes: {have})"
    if remote:
        print(
            f"warning: {message}; trials wait until the autoscaler adds such a node",
            file=sys.stderr,
        )
    else:
        raise SweepError(message)


def check_data(sweep: Sweep) -> None:
    """Refuse a sweep whose data are missing on this machine (a local sweep's trials read them
    here), naming the cell, the path looked at and how to prepare the data."""
    from trainers import experiments

    for name, cfg in sweep.data_configs().items():
        try:
            experiments.check_data(cfg)
        except FileNotFoundError as e:
            raise SweepError(f"cell {name!r}: {e}") from None


def _check_data_on_cluster(sweep: Sweep, timeout_s: float = DATA_CHECK_TIMEOUT_S) -> None:
    """``check_data`` run as a Ray task with a trial's resources, so it runs where trials run
    (the data live on the workers, not necessarily on the head). If no such node comes up within
    ``timeout_s`` (an autoscaler still starting one) warn and go on: trials report it then."""
    import ray

    from trainers import experiments

    @ray.remote(max_retries=0)
    def check(cfg: dict[str, Any]) -> str | None:
        try:
            experiments.check_data(cfg)
        except FileNotFoundError as e:
            return f"{e} (on node {ray.util.get_node_ip_address()})"
        return None

    res = sweep.resources
    task = check.options(num_cpus=res.cpu, num_gpus=res.gpu)
    pending = {task.remote(cfg): name for name, cfg in sweep.data_configs().items()}
    done, late = ray.wait(list(pending), num_returns=len(pending), timeout=min(5.0, timeout_s))
    if late:
        print(
            f"checking the data on a worker with cpu={res.cpu:g}, gpu={res.gpu:g} (waiting for "
            f"one, up to {timeout_s:g} s)...",
            file=sys.stderr,
        )
        done, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
    for ref in done:
        try:
            problem = ray.get(ref)
        except ray.exceptions.RayError as e:  # e.g. the project is not installed on the node
            problem = f"the data check failed on a worker: {e}"
        if problem is not None:
            raise SweepError(f"cell {pending[ref]!r}: {problem}")
    if late:
        for ref in late:
            ray.cancel(ref, force=True)
        print(
            f"warning: the data check found no free worker in {timeout_s:g} s; trials will "
            "report missing data themselves",
            file=sys.stderr,
        )


def run(
    sweep: Sweep,
    argv: Sequence[str] | None = None,
    smoke: Callable[[Sweep], Sweep] | None = None,
) -> Outcome:
    """Validate, start (or resume) the Tune experiment, print and save the comparison table."""
    args = parse_args(argv)
    try:
        if args.smoke:
            if smoke is None:
                raise SweepError("this sweep has no --smoke version")
            sweep = smoke_version(sweep, smoke)
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise SweepError(f"--max-concurrent {args.max_concurrent}: must be >= 1")
        sweep.validate()
        if args.address is None:
            check_data(sweep)
        storage = storage_path(args.storage)
        exists = experiment_exists(storage, sweep.name)
        if args.resume and not exists:
            raise SweepError(f"--resume: there is no sweep {sweep.name!r} under {storage}")
        if exists and not args.resume:
            raise SweepError(
                f"{storage}/{sweep.name} already exists: pass --resume to continue it, "
                "or --storage for a fresh place"
            )
        path = f"{storage.rstrip('/')}/{sweep.name}"
        restore = exists and ledger.has_state(path)
        if restore:
            check_unchanged(sweep, path)
    except SweepError as e:
        print(f"gansweep: {e}", file=sys.stderr)
        return Outcome(EXIT_BAD_INPUT)

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")
    # loggers are given explicitly (_loggers); TensorBoard scalars come from the trials
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    ray.init(
        address=args.address,
        num_cpus=args.num_cpus if args.address is None else None,
        include_dashboard=False if args.address is None else None,
        logging_level="WARNING",
        ignore_reinit_error=True,
    )
    try:
        _check_resources(sweep, remote=args.address is not None)
        if args.address is not None:
            _check_data_on_cluster(sweep)
    except SweepError as e:
        print(f"gansweep: {e}", file=sys.stderr)
        return Outcome(EXIT_BAD_INPUT)
    if exists and not restore:
        set_aside(storage, sweep.name)
    return _fit(sweep, storage, args, restore)


def check_unchanged(sweep: Sweep, path: str) -> None:
    """Refuse to resume a sweep whose declaration differs from the one it was started with
    (``sweep.json``): the stored trials would silently answer another question."""
    stored = read_text(path, SWEEP_RECORD)
    if stored is None:
        print(
            f"warning: {path} has no {SWEEP_RECORD} (started by an older gansweep); "
            "cannot check that the sweep is unchanged",
            file=sys.stderr,
        )
        return
    diff = differences(json.loads(stored), record(sweep))
    if diff:
        raise SweepError(
            f"--resume: the sweep {sweep.name!r} differs from the one stored in {path}: "
            + "; ".join(diff)
            + ". Resume it unchanged, or run the changed sweep under another --storage or name"
        )


def set_aside(storage: str, name: str) -> str:
    """Move an experiment directory that Tune never recorded a state in (the driver died
    first) out of the way, so the sweep starts afresh and no half-run trial is collected."""
    import pyarrow.fs

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    fs, root = pyarrow.fs.FileSystem.from_uri(storage if "://" in storage else "file://" + storage)
    src, dest = f"{root.rstrip('/')}/{name}", f"{root.rstrip('/')}/.{name}.interrupted-{stamp}"
    fs.move(src, dest)
    print(
        f"gansweep: {storage}/{name} holds no experiment state (the last run stopped before "
        f"Tune recorded one); it was moved to {dest} and the sweep starts afresh",
        file=sys.stderr,
    )
    return dest


def _fit(sweep: Sweep, storage: str, args: argparse.Namespace, restore: bool) -> Outcome:
    from ray import tune

    import analysis
    from sweeps.engine.searcher import OBJECTIVE, CellSearcher
    from sweeps.engine.trainable import make_trainable

    path = f"{storage.rstrip('/')}/{sweep.name}"
    if sweep.resources.workers > 1:
        from sweeps.engine import distributed

        trainable = tune.with_resources(
            distributed.make_distributed_trainable(
                sweep.metric, sweep.penalty, sweep.resources, path
            ),
            distributed.driver_resources(),
        )
        if args.max_concurrent is None:
            args.max_concurrent = distributed.trials_that_fit(sweep.resources)
    else:
        trainable = tune.with_resources(
            make_trainable(sweep.metric, sweep.penalty),
            {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu},
        )
    interrupts.hide_missing_metrics_warnings()
    if restore:
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        save_text(path, SWEEP_RECORD, json.dumps(record(sweep), indent=1) + "\n")
        reporter = tune.CLIReporter(
            parameter_columns=["optimizer", "dataset", "lr_d", "lr_g", "seed"],
            metric_columns=["step", OBJECTIVE, "diverged"],
            max_report_frequency=30,
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                # the searcher limits concurrency itself: Tune's ConcurrencyLimiter keeps
                # trial ids in its checkpoint, and one lost by a killed driver holds its slot
                search_alg=CellSearcher(sweep, path, max_concurrent=args.max_concurrent),
                num_samples=-1,
                reuse_actors=True,  # a new process per trial would import torch again (seconds)
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=sweep.name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                sync_config=tune.SyncConfig(sync_artifacts=True),
                progress_reporter=reporter,
                callbacks=_loggers(sweep),
                verbose=1,
            ),
        )
    with interrupts.watch() as interrupted:
        results = tuner.fit()
    if interrupted.is_set():
        print(
            f"\n{sweep.name}: interrupted; no table is final until every trial has ended. "
            f"Resume with:\n  {interrupts.resume_command()}",
            file=sys.stderr,
        )
        return Outcome(EXIT_INTERRUPTED, path)
    table, trials = comparison(sweep, path)
    done = completeness.check(sweep, trials)
    text = analysis.to_markdown(table)
    if not done.ok:
        print(f"\n{sweep.name}: INCOMPLETE, the table below is partial (metric {sweep.metric}):")
        print(text)
        print(
            f"\ngansweep: {sweep.name} is incomplete: {done.describe()}\n"
            f"Resume with:\n  {interrupts.resume_command()}",
            file=sys.stderr,
        )
        return Outcome(EXIT_INCOMPLETE, path, table, trials)
    print(f"\n{sweep.name}: {len(trials)} trials; best step size per cell (metric {sweep.metric}):")
    print(text)
    save_text(path, "summary.md", text + "\n")
    save_text(path, "summary.csv", analysis.to_csv(table))
    return Outcome(0, path, table, trials, last_checkpoints(results))


def _loggers(sweep: Sweep) -> list[Any]:
    """result.json (what ``analysis`` reads) and progress.csv per trial; Tune's TensorBoard
    logger only for multi-worker trials (single-process trials write their own, off the
    driver's thread: sweeps.engine.trainable.TrialBoard)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    loggers = [JsonLoggerCallback(), CSVLoggerCallback()]
    if sweep.resources.workers > 1:
        loggers.append(TBXLoggerCallback())
    return loggers


def last_checkpoints(results: Any) -> dict[str, Any]:
    """trial id -> the trial's last checkpoint (a ray.tune.Checkpoint, local or on a bucket).
    Multi-worker trials keep theirs in Train's storage, named in their rows."""
    import pyarrow.fs
    from ray.tune import Checkpoint

    out = {}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        ckpt = result.checkpoint
        path = (result.metrics or {}).get("checkpoint_path")
        if ckpt is None and path:
            fs, root = pyarrow.fs.FileSystem.from_uri(path if "://" in path else "file://" + path)
            ckpt = Checkpoint(root, filesystem=fs)
        if trial_id is not None and ckpt is not None:
            out[trial_id] = ckpt
    return out


def comparison(sweep: Sweep, path: str) -> tuple[Any, Any]:
    """Collect the sweep into ``<path>/results`` (parquet) and return (table, final rows):
    per cell the step size with the lowest mean objective over seeds, failed seeds counted
    as the objective's penalty."""
    import analysis
    from sweeps.engine.objectives import OBJECTIVES

    analysis.collect(path, f"{path}/results", progress=_collect_fault)
    df = analysis.load(f"{path}/results")
    df = df[df["sweep"] == sweep.name]
    penalty = sweep.penalty if sweep.penalty is not None else OBJECTIVES[sweep.metric].penalty
    table = analysis.main_table(df, "objective", penalty=penalty)
    return table, analysis.final_rows(df)


def _collect_fault(done: int, total: int, name: str) -> None:
    """Tests only: ``GANSWEEP_TEST_KILL_AT=collect:N`` kills the driver after N trials of the
    end-of-sweep collection."""
    from sweeps.engine.searcher import _fault

    _fault("collect", done)


def _trial_name(trial) -> str:
    """Short, readable trial names: <cell>_s<seed>_<id>."""
    cell = str(trial.config.get("sweep_cell", "trial")).replace("/", "-")
    return f"{cell}_s{trial.config.get('seed')}_{trial.trial_id}"


def save_text(directory: str, name: str, text: str) -> None:
    """Write a small text file into the experiment directory (local or URI), atomically."""
    import pyarrow.fs

    uri = directory if "://" in directory else "file://" + directory
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    fs.create_dir(root, recursive=True)
    tmp = f"{root}/.{name}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode())
    fs.move(tmp, f"{root}/{name}")


def read_text(directory: str, name: str) -> str | None:
    """A small text file of an experiment directory (local or URI); None if it is absent."""
    import pyarrow.fs

    uri = directory if "://" in directory else "file://" + directory
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    try:
        with fs.open_input_stream(f"{root}/{name}") as f:
            return f.read().decode()
    except FileNotFoundError:
        return None


def main(sweep: Sweep, smoke: Callable[[Sweep], Sweep] | None = None) -> None:
    """Entry point of a sweep script: run and exit with the outcome's code."""
    sys.exit(run(sweep, smoke=smoke).code)
