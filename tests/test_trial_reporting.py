"""The training loop's cancellation hook: a run asked to stop ends after that step."""

from __future__ import annotations

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
