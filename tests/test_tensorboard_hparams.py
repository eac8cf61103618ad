"""Each trial writes its line of TensorBoard's HParams table (cell, optimizer, lr_d, lr_g, seed,
stage -> final objective) into its own event directory: read back as TensorBoard reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from sweeps.engine import Cell, StepSizes, Sweep, run
from sweeps.engine.trainable import HPARAMS_PREFIX

HPARAMS = ["cell", "lr_d", "lr_g", "optimizer", "seed", "stage"]


def hparams_of(trial_dir: Path) -> tuple[dict, list[str], dict]:
    """(hparams of the session, the experiment's metric tags, the final/... scalars) as
    TensorBoard's HParams plugin finds them in the trial's event files."""
    board = EventAccumulator(str(trial_dir)).Reload()
    content = board.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert sorted(h.name for h in experiment.hparam_infos) == HPARAMS
    params = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        params[name] = getattr(value, kind)
    metrics = [m.name.tag for m in experiment.metric_infos]
    finals = {
        tag: board.Scalars(tag) for tag in board.Tags()["scalars"] if tag.startswith(HPARAMS_PREFIX)
    }
    return params, metrics, finals


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    sweep = Sweep(
        name="hp",
        experiment="bimodal",
        metric="miss_both",
        seeds=[0],
        confirm_seeds=1,
        fixed={"steps": 200, "eval_every": 100, "checkpoint_every": 100},
        cells=[
            Cell("sgda", StepSizes(grid=(0.1, 1.0))),
            Cell("nsgda", StepSizes(grid=(1e-3,), ratios=(2.0,))),
        ],
    )
    outcome = run(sweep, storage=str(tmp_path_factory.mktemp("runs")), num_cpus=2)
    assert outcome.code == 0
    return outcome


def test_each_trial_has_its_hparams_row_with_its_final_objective(finished):
    dirs = [p.parent for p in Path(finished.path).glob("*/result.json")]
    assert len(dirs) == 5  # 3 step sizes x seed 0, and each cell's choice on seed 1
    stages, seen = [], []
    for trial_dir in dirs:
        rows = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
        config = json.loads((trial_dir / "params.json").read_text())
        params, metrics, finals = hparams_of(trial_dir)
        trainer = config["trainer"]
        assert params == {
            "cell": config["cell"],
            "optimizer": trainer["optimizer"],
            "lr_d": pytest.approx(trainer["lr_d"]),
            "lr_g": pytest.approx(trainer["lr_g"]),
            "seed": trainer["seed"],
            "stage": config["stage"],
        }
        assert metrics == ["final/objective"]  # bimodal reports no fid
        (last,) = finals["final/objective"]
        assert last.step == rows[-1]["step"] == 200
        assert last.value == pytest.approx(rows[-1]["objective"])
        stages.append(params["stage"])
        seen.append(params)
    assert sorted(stages) == ["confirm", "confirm", "tune", "tune", "tune"]
    assert any(p["lr_d"] == pytest.approx(2 * p["lr_g"]) for p in seen)  # nsgda's ratio 2
