"""The sweep engine on a real local Ray with real Optuna studies (tiny bimodal trials)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeps.engine import Cell, Resources, StepSizes, Sweep, SweepError, run
from sweeps.engine.tuner import EXIT_BAD_INPUT

SHORT = {"steps": 300, "eval_every": 100, "checkpoint_every": 100}


def tiny_sweep(name: str = "tiny", **changes) -> Sweep:
    fields = dict(
        name=name,
        experiment="bimodal",
        metric="miss_both",
        seeds=[0, 1],
        fixed=SHORT,
        cells=[
            Cell("sgda", StepSizes(grid=(0.1, 1.0))),
            Cell("nsgda", StepSizes(grid=(1e-3, 1e-2))),
        ],
    )
    fields.update(changes)
    return Sweep(**fields)


def result_rows(trial_dir: Path) -> list[dict]:
    """A trial's result.json rows as reported (the metrics Tune never sees unpacked)."""
    from analysis.packed import unpack

    text = (trial_dir / "result.json").read_text()
    return [unpack(json.loads(line)) for line in text.splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    outcome = run(tiny_sweep(), storage=str(storage), num_cpus=2)
    return storage, outcome


def test_every_config_runs_once_per_seed_and_the_table_is_complete(finished):
    _, outcome = finished
    assert outcome.code == 0
    trials = outcome.trials
    assert len(trials) == 8
    assert sorted(trials.groupby(["cell", "lr_g"]).size().tolist()) == [2, 2, 2, 2]
    assert set(trials["seed"]) == {0, 1}
    assert (trials["step"] == 300).all() | trials["diverged"].any()
    assert set(outcome.table["cell"]) == {"sgda", "nsgda"}
    assert (outcome.table["n"] == 2).all()


def test_each_trial_logs_its_rows_to_tensorboard(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, outcome = finished
    for trial_dir in [p.parent for p in Path(outcome.path).glob("*/result.json")]:
        rows = result_rows(trial_dir)
        board = EventAccumulator(str(trial_dir)).Reload()
        for tag in ("objective", "loss_d", "grad_ratio"):
            events = board.Scalars(tag)
            assert [e.step for e in events] == [r["step"] for r in rows]
            assert [e.value for e in events] == pytest.approx([r[tag] for r in rows], rel=1e-6)


def tune_trials(experiment: Path) -> list:
    """The Trial objects of Tune's newest experiment state, with their metric statistics."""
    from ray.tune.experiment.trial import Trial
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    newest = sorted(experiment.glob("experiment_state-*.json"))[-1]
    out = []
    for trial_json, metadata_json in _loads_with_cloudpickle(newest.read_text())["trial_data"]:
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(metadata_json)
        out.append(trial)
    return out


def test_tune_keeps_statistics_only_of_the_numbers_it_reads(finished):
    from analysis.packed import PACKED
    from sweeps.engine.trainable import TUNE_NAMES

    _, outcome = finished
    trials = tune_trials(Path(outcome.path))
    assert len(trials) == 8
    for trial in trials:
        assert trial.status == "TERMINATED"
        ours = set(trial.metric_analysis) - TUNE_NAMES  # less Tune's own counters
        assert ours == {"step", "diverged", "objective"}  # miss_both needs "verdict": text
        assert set(trial.metric_n_steps) - TUNE_NAMES == ours
        assert "step" in trial.last_result and PACKED in trial.last_result
    # every other number reached the trial's rows: nearly 100 of them per bimodal report
    nsgda = next(d for d in Path(outcome.path).iterdir() if d.name.startswith("nsgda_"))
    last = result_rows(nsgda)[-1]
    numbers = [k for k, v in last.items() if isinstance(v, float) and k not in TUNE_NAMES]
    assert len(numbers) > 90 and {"loss_d", "grad_ratio", "kimg"} <= set(numbers)


def reported(trial_dir: Path, tmp_path: Path) -> list[dict]:
    """What the trainer reports for the trial's config, trained again in this process."""
    import torch

    from trainers import experiments
    from trainers.trial import loop

    params = json.loads((trial_dir / "params.json").read_text())
    cfg = experiments.resolve_config(params["trainer"])
    reports = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray worker of one CPU
    try:
        loop.train(
            cfg,
            on_report=lambda r, ckpt: reports.append(r),
            on_figures=lambda step, figures: None,  # drawn as in a sweep (they sample)
            scratch=tmp_path / "again",
        )
    finally:
        torch.set_num_threads(threads)
    return reports


def assert_collected_as_reported(experiment: Path, tmp_path: Path, trial_dir: Path) -> None:
    """The trial's collected rows hold every number its trainer reports, with its value (NaN
    and inf included) and a column type that a sweep before packing gave it: the same sweep,
    its rows written unpacked, collects to the same dataset."""
    import math

    import analysis
    from analysis import schema
    from analysis.packed import unpack

    old = tmp_path / "unpacked" / experiment.name
    shutil.copytree(experiment, old, ignore=shutil.ignore_patterns("checkpoint_*", "results"))
    for rj in old.glob("*/result.json"):
        rows = [unpack(json.loads(x)) for x in rj.read_text().splitlines()]
        rj.write_text("".join(json.dumps(r) + "\n" for r in rows))
    new_df = analysis.load(str(experiment / "results"))
    analysis.collect(str(old), str(tmp_path / "old_results"))
    old_df = analysis.load(str(tmp_path / "old_results"))
    pd.testing.assert_frame_equal(new_df, old_df)

    trial_id = json.loads((trial_dir / "result.json").read_text().splitlines()[0])["trial_id"]
    got = new_df[new_df["trial_id"] == trial_id].sort_values("iteration")
    want = reported(trial_dir, tmp_path)
    assert got["step"].tolist() == [r["step"] for r in want]
    for (_, row), report in zip(got.iterrows(), want, strict=True):
        for key, value in report.items():
            if key == "time_s":  # wall time
                continue
            if isinstance(value, (str, bool)):
                assert row[key] == value, key
            elif isinstance(value, float) and not math.isfinite(value):
                assert (math.isnan(value) and pd.isna(row[key])) or row[key] == value, key
            else:
                assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
            fixed = schema.FIXED.get(key)
            if fixed is None and not isinstance(value, str):
                assert got[key].dtype == "float64", key


def test_collected_rows_hold_every_number_as_the_trainer_reported_it(finished, tmp_path):
    _, outcome = finished
    experiment = Path(outcome.path)
    for cell in ("sgda", "nsgda"):
        trial_dir = next(d for d in experiment.iterdir() if d.name.startswith(f"{cell}_"))
        assert_collected_as_reported(experiment, tmp_path / cell, trial_dir)


def test_each_study_is_told_the_mean_over_seeds(finished):
    import optuna

    storage, outcome = finished
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(Path(outcome.path) / "optuna-journal.log"))
    )
    names = [s.study_name for s in optuna.get_all_study_summaries(journal)]
    assert sorted(names) == ["tiny/nsgda", "tiny/sgda"]
    trials = outcome.trials
    for name in names:
        cell, study = name.split("/", 1)[1], optuna.load_study(study_name=name, storage=journal)
        done = [t for t in study.trials if t.value is not None]
        assert len(done) == 2
        for t in done:
            same = np.isclose(trials["lr_g"], t.params["lr"], rtol=1e-12)
            seeds = trials[(trials["cell"] == cell) & same]
            assert len(seeds) == 2
            assert t.value == pytest.approx(seeds["objective"].mean())


def test_the_table_ranks_step_sizes_by_what_each_study_was_told(finished):
    """One definition of a step size's score: the table's best per cell is the study's best
    value, at one of the step sizes that reached it."""
    import optuna

    _, outcome = finished
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(Path(outcome.path) / "optuna-journal.log"))
    )
    table = outcome.table.set_index("cell")
    for cell in ("sgda", "nsgda"):
        study = optuna.load_study(study_name=f"tiny/{cell}", storage=journal)
        best = min(t.value for t in study.trials)
        assert table.loc[cell, "score"] == pytest.approx(best)
        at_best = [t.params["lr"] for t in study.trials if t.value == pytest.approx(best)]
        assert any(np.isclose(table.loc[cell, "lr_g"], lr, rtol=1e-12) for lr in at_best)


def test_rerun_without_resume_refuses_and_resume_reruns_nothing(finished, capsys):
    storage, outcome = finished
    assert run(tiny_sweep(), storage=str(storage)).code == EXIT_BAD_INPUT
    assert "--resume" in capsys.readouterr().err
    again = run(tiny_sweep(), storage=str(storage), resume=True, num_cpus=2)
    assert again.code == 0
    assert len(again.trials) == 8
    assert again.trials["objective"].tolist() == outcome.trials["objective"].tolist()


@pytest.mark.parametrize(
    "sweep, words",
    [
        (tiny_sweep(cells=[Cell("adamw", StepSizes(grid=(1e-3,)))]), "unknown optimizer 'adamw'"),
        (tiny_sweep(seeds=[]), "seeds is empty"),
        (tiny_sweep(cells=[Cell("adam", StepSizes(grid=(0.0, 1e-3)))]), "must be finite and > 0"),
        (
            tiny_sweep(cells=[Cell("adam", StepSizes(low=1e-2, high=1e-3, trials=3))]),
            "must be below",
        ),
        (tiny_sweep(metric="accuracy"), "metric 'accuracy' is unknown"),
        (tiny_sweep(fixed={**SHORT, "gamma": 2.0}), "config key 'gamma'"),
        (
            Sweep(
                name="images",
                experiment="wgangp",
                metric="fid",
                seeds=[0],
                cells=[Cell("adam", StepSizes(grid=(1e-4,)), dataset="folder")],
                fixed={"data_path": "/nowhere/images"},
            ),
            "cell 'adam/folder': image folder not found: looked for /nowhere/images",
        ),
    ],
)
def test_bad_sweeps_exit_2_before_anything_is_written(tmp_path, capsys, sweep, words):
    storage = tmp_path / "runs"
    assert run(sweep, storage=str(storage)).code == EXIT_BAD_INPUT
    assert words in capsys.readouterr().err
    assert not storage.exists()


@pytest.mark.parametrize(
    "resources, words",
    [
        (Resources(cpu=1, workers=3), "3 workers of cpu=1, gpu=0 each"),
        (Resources(cpu=2, gpu=0.5), "cpu=2, gpu=0.5"),
    ],
)
def test_trials_the_cluster_cannot_hold_exit_2(tmp_path, capsys, resources, words):
    storage = tmp_path / "runs"
    outcome = run(tiny_sweep(resources=resources), storage=str(storage), num_cpus=2)
    assert outcome.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert words in err and "cannot hold" in err and "nodes: cpu=2, gpu=0" in err
    assert not storage.exists()


def test_validate_raises_sweep_error():
    with pytest.raises(SweepError, match="unknown optimizer"):
        tiny_sweep(cells=[Cell("sgd", StepSizes(grid=(1e-3,)))]).validate()


def test_a_diverging_trial_is_marked_penalised_and_the_sweep_goes_on(tmp_path):
    sweep = Sweep(
        name="diverge",
        experiment="mog",
        metric="modes_missed",
        seeds=[0],
        fixed={"steps": 100, "eval_every": 50, "checkpoint_every": 50, "eval_samples": 2000},
        cells=[Cell("sgda", StepSizes(grid=(1e6,))), Cell("adam", StepSizes(grid=(1e-4,)))],
    )
    outcome = run(sweep, storage=str(tmp_path), num_cpus=2)
    assert outcome.code == 0
    trials = outcome.trials.set_index("cell")
    assert bool(trials.loc["sgda", "diverged"]) and trials.loc["sgda", "step"] == 50
    assert trials.loc["sgda", "objective"] == 1.0  # the documented penalty of modes_missed
    assert not bool(trials.loc["adam", "diverged"]) and trials.loc["adam", "step"] == 100
    assert 0.0 <= trials.loc["adam", "objective"] <= 1.0
    # scalars and sample figures, both written by the trial, are in TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    adam_dir = next(d for d in (tmp_path / "diverge").iterdir() if d.name.startswith("adam_"))
    events = EventAccumulator(str(adam_dir), size_guidance={"images": 0}).Reload()
    assert any(tag.startswith("samples/") for tag in events.Tags()["images"])
    assert {"objective", "loss_d", "mode_kl"} <= set(events.Tags()["scalars"])
    # the diverged trial's non-finite losses reach the collected rows as the trainer made them
    sgda_dir = next(d for d in (tmp_path / "diverge").iterdir() if d.name.startswith("sgda_"))
    assert not all(np.isfinite(v) for v in result_rows(sgda_dir)[-1].values() if is_num(v))
    assert_collected_as_reported(tmp_path / "diverge", tmp_path / "check", sgda_dir)


def is_num(v: object) -> bool:
    return isinstance(v, float)
