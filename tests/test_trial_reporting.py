"""How a trial hands its rows to Tune: in order, from a thread of its own (training goes on
while the driver handles a row), checkpoint directories deleted once Tune has them, a stop
from Tune ending training within a step, and an error while reporting failing the trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers import experiments
from trainers.trial import loop

CONFIG = {
    "experiment": "bimodal",
    "optimizer": "nsgda",
    "seed": 1,
    "steps": 600,
    "eval_every": 100,
    "checkpoint_every": 200,
}


def test_a_cancelled_run_ends_after_that_step_with_no_further_report(tmp_path):
    cfg = experiments.resolve_config(dict(CONFIG))
    steps = []
    asked = []

    def cancelled() -> bool:
        asked.append(True)
        return len(asked) >= 250

    loop.train(
        cfg,
        on_report=lambda report, ckpt: steps.append(report["step"]),
        scratch=tmp_path,
        cancelled=cancelled,
    )
    assert steps == [100, 200]  # no report at 250 (cancelled) and none after
    assert len(asked) == 250  # asked once a step, and training ended at once


def _trainable(stop_marks: str):
    """Reports rows 1..8 (a checkpoint directory with 2, 4, 6, 8), counting its steps after
    each report into ``stop_marks`` so the test sees how far training ran past a stop."""

    def fn(config):
        import tempfile
        import time

        from ray import tune

        from sweeps.engine.trainable import Reporter

        reporter = Reporter()
        made = []
        try:
            for step in range(1, 9):
                for _ in range(10):  # training steps between rows, each asking like loop.train
                    if reporter.ended():
                        break
                    time.sleep(0.03)
                if reporter.ended():
                    break
                ckpt = None
                if step % 2 == 0:
                    ckpt = Path(tempfile.mkdtemp())
                    (ckpt / "state.txt").write_text(str(step))
                    made.append(str(ckpt))
                row = {"step": step, "value": float(step)}
                if config.get("bad_at") == step:
                    import torch

                    row["value"] = torch.tensor(1.0)  # Tune refuses tensors in rows
                reporter.put(row, ckpt)
                with open(stop_marks, "a") as f:
                    f.write(
                        json.dumps(
                            {"trial": tune.get_context().get_trial_id(), "step": step, "made": made}
                        )
                        + "\n"
                    )
        finally:
            reporter.close()

    return fn


def _fit(tmp_path: Path, marks: Path, space: dict, stop: dict | None = None):
    import ray
    from ray import tune

    ray.shutdown()  # a Ray an earlier test in this module left running has other resources
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        tuner = tune.Tuner(
            _trainable(str(marks)),
            param_space=space,
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "runs"),
                name="reporting",
                stop=stop,
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=0,
            ),
        )
        return tuner.fit()
    finally:
        ray.shutdown()


def _marks(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        mark = json.loads(line)
        out.setdefault(mark["trial"], []).append(mark)
    return out


@pytest.mark.slow
def test_rows_reach_tune_in_order_and_a_stop_ends_training_soon_enough_to_reuse_the_actor(
    tmp_path,
):
    marks = tmp_path / "marks.jsonl"
    results = _fit(tmp_path, marks, {"trial": {"grid_search": [0, 1]}}, stop={"step": 3})
    assert not results.errors  # the second trial reused the first one's actor
    for result in results:
        assert list(result.metrics_dataframe["step"]) == [1, 2, 3]
        assert result.checkpoint is not None
        with result.checkpoint.as_directory() as d:
            assert (Path(d) / "state.txt").read_text() == "2"  # Tune's copy of step 2's
    by_trial = _marks(marks)
    assert len(by_trial) == 2
    for trial_marks in by_trial.values():
        # training ran at most the queue's depth (1) and the row in flight past the stop
        assert max(m["step"] for m in trial_marks) <= 5
        made = trial_marks[-1]["made"]
        assert made and not any(Path(d).exists() for d in made)  # deleted once reported


@pytest.mark.slow
def test_an_error_while_reporting_fails_the_trial_after_the_rows_before_it(tmp_path):
    marks = tmp_path / "marks.jsonl"
    results = _fit(tmp_path, marks, {"bad_at": 3})
    assert len(results.errors) == 1
    assert "Torch tensors" in str(results.errors[0])
    assert list(results[0].metrics_dataframe["step"]) == [1, 2]
    assert max(m["step"] for m in _marks(marks).popitem()[1]) <= 4
