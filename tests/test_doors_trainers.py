"""Bad input at the trainer's doors (``python -m trainers run|defaults|profile``): exit 2 on a
bad value (3 on a missing file) with a message naming it, nothing written, results untouched;
a corrupt newest checkpoint is set aside and the trial resumes from the one before."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainers import experiments, optim
from trainers.__main__ import main as trainers_main
from trainers.trial import checkpoint
from trainers.trial.run import run_trial

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "experiment": "bimodal",
    "optimizer": "ada-nsgda",
    "seed": 0,
    "steps": 60,
    "eval_every": 10,
    "checkpoint_every": 20,
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainers", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def rows(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny trial (3 checkpoints written, the newest 2 kept)."""
    out = tmp_path_factory.mktemp("finished") / "trial"
    run_trial(dict(TINY), out, quiet=True)
    return out


def test_a_scale_profile_that_does_not_match_the_layers_exits_2_and_writes_nothing(tmp_path):
    config = {**TINY, "optimizer": "nsgda", "optimizer_options": {"scales": {"nope": 1.0}}}
    out = tmp_path / "new" / "trial"
    done = cli("run", json.dumps(config), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert "does not match the model's groups" in done.stderr and "nope" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()


def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before(finished, tmp_path, capsys):
    copy = tmp_path / "trial"
    shutil.copytree(finished, copy)
    newest = checkpoint.latest(copy / "checkpoints")
    before = checkpoint.step_of(checkpoint.latest(finished / "checkpoints"))
    (newest / checkpoint.STATE).write_bytes(b"PK\x03\x04 cut short")
    last = run_trial(dict(TINY), copy)
    err = capsys.readouterr().err
    assert str(newest / checkpoint.STATE) in err and "does not load" in err
    assert "resumed from step 40" in err  # the checkpoint before the corrupt one (step 60)
    assert last["step"] == 60 and before == 60
    assert rows(copy) == rows(finished)  # no row lost, none twice, the same values
    assert (copy / "checkpoints" / f"corrupt-{newest.name}").is_dir()  # kept, set aside


def test_rerunning_with_another_config_names_the_key_the_user_changed(finished, capsys):
    before = (finished / "results.jsonl").read_text()
    changed = {**TINY, "optimizer": "adam"}  # adam's defaults move lr_d and lr_g too
    code = trainers_main(["run", json.dumps(changed), "--out", str(finished)])
    err = capsys.readouterr().err
    assert code == 2
    assert "'optimizer'" in err and "'ada-nsgda' -> 'adam'" in err
    assert "lr_d" not in err
    assert (finished / "results.jsonl").read_text() == before


def test_a_trial_json_without_the_given_keys_still_names_the_users_key(finished, tmp_path, capsys):
    copy = tmp_path / "old"
    shutil.copytree(finished, copy)
    trial = json.loads((copy / "trial.json").read_text())
    del trial["given"]  # written by an older gansweep
    (copy / "trial.json").write_text(json.dumps(trial))
    code = trainers_main(["run", json.dumps({**TINY, "seed": 5}), "--out", str(copy)])
    err = capsys.readouterr().err
    assert code == 2 and "seed: 0 -> 5" in err


def test_profile_reads_a_tune_trial_directory(finished, tmp_path, capsys):
    tune_trial = tmp_path / "ada-nsgda_s0_abcd"
    for n, src in enumerate(sorted((finished / "checkpoints").glob("step_*"))):
        shutil.copytree(src, tune_trial / f"checkpoint_{n:06d}")
    (tune_trial / "checkpoint_000009").mkdir()  # one Tune left without a state: skipped
    out = tmp_path / "profile.json"
    assert trainers_main(["profile", str(tune_trial), "--out", str(out)]) == 0
    newest = sorted((finished / "checkpoints").glob("step_*"))[-1]
    assert json.loads(out.read_text()) == pytest.approx(optim.checkpoint_profile(newest))


@pytest.mark.parametrize(
    "where, words",
    [("missing", "does not exist"), ("empty", "has no checkpoint")],
)
def test_profile_of_a_path_without_checkpoints_exits_3(tmp_path, capsys, where, words):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stop:
        trainers_main(["profile", str(tmp_path / where), "--out", str(tmp_path / "p.json")])
    assert stop.value.code == 3 and words in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_profile_to_a_directory_exits_2(finished, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        trainers_main(["profile", str(finished), "--out", str(tmp_path)])
    assert stop.value.code == 2 and "--out" in capsys.readouterr().err


def test_a_missing_config_file_exits_3_and_out_as_a_file_exits_2(tmp_path, capsys):
    assert trainers_main(["run", str(tmp_path / "none.json"), "--out", str(tmp_path / "t")]) == 3
    assert "none.json" in capsys.readouterr().err and not (tmp_path / "t").exists()
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert trainers_main(["run", json.dumps(TINY), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "mine"
    assert trainers_main(["defaults", '{"experiment": "mog", "optimizer": "x", "seed": 0}']) == 2
    assert "'x'" in capsys.readouterr().err


def test_a_short_trial_of_many_evaluations_prints_few_progress_lines(tmp_path, capsys):
    config = {**TINY, "optimizer": "nsgda", "steps": 1000, "eval_every": 10}  # 100 reports
    run_trial(config, tmp_path / "t")
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("[bimodal")]
    assert 1 <= len(progress) <= 10, progress
    assert "step 1000/1000" in progress[-1]  # the final line always comes
    assert len(rows(tmp_path / "t")) == 100  # every report is still a row


def test_the_mog_regulariser_is_off_unless_named():
    cfg = experiments.resolve_config({"experiment": "mog", "optimizer": "adam", "seed": 0})
    assert cfg["gd_reg"] == 0.0
    on = experiments.resolve_config(
        {"experiment": "mog", "optimizer": "adam", "seed": 0, "gd_reg": 0.5}
    )
    assert on["gd_reg"] == 0.5


def every_key() -> list[tuple[str, str]]:
    from trainers.config import common_fields

    out = []
    for name, kind in experiments.EXPERIMENTS.items():
        for key in {**common_fields(tuple(experiments.EXPERIMENTS)), **kind.fields}:
            out.append((name, key))
    return out


@pytest.mark.parametrize("experiment, key", every_key())
def test_every_config_key_refuses_a_value_of_the_wrong_kind_naming_it(experiment, key):
    from trainers.config import ConfigError

    config = {"experiment": experiment, "optimizer": "adam", "seed": 0, key: ["bad"]}
    with pytest.raises(ConfigError) as refused:
        experiments.resolve_config(config)
    assert refused.value.key == key
    assert f"{key!r} = ['bad']" in str(refused.value) and "allowed:" in str(refused.value)
