"""Multi-worker trials: a Tune function trainable that runs one trial as a Ray Train V2
TorchTrainer (DDP-style gradient averaging in ``trainers.distributed``; gloo on CPU, NCCL on
GPU) and forwards rank 0's reports to Tune, so Tune and its searcher see one trial.

Train persists the checkpoints (rank 0's) under ``<experiment>/_train/<trial id>``; a trial that
Tune restarts runs a Train run of the same name, which resumes from its latest checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.logger import TBXLoggerCallback

from analysis import packed
from sweeps.engine import noise, trials
from sweeps.engine.spec import Resources
from sweeps.engine.trainable import ReportRows, resume_dir
from trainers import experiments
from trainers.trial import loop

TRAIN_DIR = "_train"  # Train runs of a sweep: <storage>/<sweep>/_train/<trial id>


def driver_resources() -> dict[str, float]:
    """What the Tune trial itself reserves: no CPU or GPU (its driver only waits on the Train
    workers, which hold their own placement group). Tune refuses an all-zero request, and any
    CPU share would keep the last worker of a full node from starting, so: one byte of memory."""
    return {"cpu": 0, "gpu": 0, "memory": 1}


def make_distributed_trainable(
    metric: str, penalty: float | None, resources: Resources, experiment_path: str
):
    """A Tune function trainable that trains each trial on ``resources.workers`` Train workers."""
    scaling = ray.train.ScalingConfig(
        num_workers=resources.workers,
        use_gpu=resources.gpu > 0,
        resources_per_worker={"CPU": resources.cpu, "GPU": resources.gpu},
    )

    def train_trial(config: dict[str, Any]) -> None:
        noise.quiet_trial()
        cfg = trials.trainer_config(config)
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"cfg": cfg, "metric": metric, "penalty": penalty},
            scaling_config=scaling,
            run_config=ray.train.RunConfig(
                name=tune.get_context().get_trial_id(),
                storage_path=f"{experiment_path.rstrip('/')}/{TRAIN_DIR}",
                callbacks=[TuneReportCallback()],
                failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=3),
            ),
        )
        trainer.fit()

    train_trial.__name__ = "gansweep_trial"
    return train_trial


def _worker(config: dict[str, Any]) -> None:
    """One Train worker: trains its rank of the trial; every rank reports, rank 0 checkpoints."""
    noise.quiet_trial()
    cfg = experiments.resolve_config(config["cfg"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    rows = ReportRows(config["metric"], config["penalty"], workers=context.get_world_size())
    with tempfile.TemporaryDirectory(prefix="gansweep-") as scratch:

        def on_report(report: dict[str, Any], ckpt: Path | None) -> None:
            checkpoint = None
            if ckpt is not None and rank == 0:
                checkpoint = ray.train.Checkpoint.from_directory(str(ckpt))
            row = rows.for_tune(rows(report))
            ray.train.report(row, checkpoint=checkpoint)  # a barrier: every rank reports
            if ckpt is not None:
                shutil.rmtree(ckpt, ignore_errors=True)

        loop.train(
            cfg,
            on_report=on_report,
            scratch=Path(scratch) / "out",
            resume=resume_dir(ray.train.get_checkpoint(), scratch),
        )


class UnpackedTBXLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger (the driver's, for multi-worker trials) on the rows as
    reported: every number, unpacked (``analysis.packed``)."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        super().log_trial_result(iteration, trial, packed.unpack(result))


def trials_that_fit(resources: Resources) -> int:
    """How many multi-worker trials the cluster holds at once (the Tune trials reserve nothing,
    so Tune alone would start more than can train)."""
    total = ray.cluster_resources()
    fits = [int(total.get("CPU", 0) // (resources.cpu * resources.workers))]
    if resources.gpu > 0:
        fits.append(int(total.get("GPU", 0) // (resources.gpu * resources.workers)))
    return max(1, min(fits))
