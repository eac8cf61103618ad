"""Every sweep script declares a valid sweep; an image sweep's --smoke runs end to end on the CPU."""

from __future__ import annotations

import importlib

import pytest

from sweeps.engine import run
from sweeps.engine.driver import smoke_version
from sweeps.image_presets import smoke

IMAGE_SCRIPTS = ["wgangp_cifar10", "wgangp_stl10", "dcgan_cifar10_ratio"]


@pytest.mark.parametrize("name", IMAGE_SCRIPTS)
def test_image_sweeps_follow_the_papers_protocol(name):
    sweep = importlib.import_module(f"sweeps.{name}").SWEEP
    assert sweep.metric == "fid"
    assert len(list(sweep.seeds)) == 5
    smoke_version(sweep, smoke).validate()  # the CPU version is runnable here
    if name.startswith("wgangp"):
        assert {c.optimizer for c in sweep.cells} == {"adam", "ada-nsgda", "sgda", "nsgda"}
        assert all(len(c.lrs.grid) == 7 for c in sweep.cells)
    else:
        (cell,) = sweep.cells
        assert cell.optimizer == "adam" and len(cell.lrs.ratios) == 8


def test_wgangp_smoke_sweep_runs_on_generated_images(tmp_path):
    from sweeps.wgangp_cifar10 import SWEEP

    outcome = run(SWEEP, ["--smoke", "--storage", str(tmp_path), "--num-cpus", "2"], smoke=smoke)
    assert outcome.code == 0
    trials = outcome.trials
    assert len(trials) == 4 and (trials["step"] == 6).all()
    assert trials["fid"].notna().all() and trials["fid_extractor"].str.startswith("randconv").all()
    assert set(outcome.table["cell"]) == {"adam", "ada-nsgda"}


def test_a_sweep_without_its_data_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    from sweeps.wgangp_cifar10 import SWEEP

    monkeypatch.setenv("GANSWEEP_DATA", str(tmp_path / "data"))
    assert run(SWEEP, ["--storage", str(tmp_path / "r"), "--num-cpus", "2"]).code == 2
    err = capsys.readouterr().err
    assert f"CIFAR-10 not found: looked for {tmp_path}/data/cifar-10-batches-py" in err
    assert "python -m trainers.data.images prepare cifar10" in err
    assert not (tmp_path / "r").exists()


def test_a_gpu_sweep_without_gpus_is_refused_before_it_starts(tmp_path, capsys):
    from dataclasses import replace

    from sweeps.engine import Cell
    from sweeps.wgangp_cifar10 import SWEEP

    generated = [Cell(c.optimizer, c.lrs, "generated", c.overrides, c.label) for c in SWEEP.cells]
    sweep = replace(SWEEP, cells=generated)
    assert run(sweep, ["--storage", str(tmp_path / "r"), "--num-cpus", "2"]).code == 2
    assert "cannot hold" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
