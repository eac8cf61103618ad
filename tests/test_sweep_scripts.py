"""Every sweep script declares a valid sweep; an image sweep's --smoke runs end to end on the CPU."""

from __future__ import annotations

import importlib
import importlib.util
import json

import pytest

from sweeps.engine import run, smoke_version
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


@pytest.mark.parametrize("name", [*IMAGE_SCRIPTS, "stylegan2_ffhq", "quickstart"])
def test_every_sweep_has_a_small_default_smoke_version(name):
    """``--smoke`` needs no code in a script: one step size per cell, two seeds (and one
    confirmation seed where the sweep confirms), one CPU."""
    module = importlib.import_module(f"sweeps.{name}")
    for sweep in [module.SWEEP] if hasattr(module, "SWEEP") else [module.BIMODAL, module.MOG]:
        small = smoke_version(sweep)
        small.validate()
        assert small.name == f"{sweep.name}_smoke"
        confirms = bool(sweep.confirmation_seeds())
        assert small.confirmation_seeds() == sweep.confirmation_seeds()[:1]
        assert small.total_trials() == (2 + confirms) * len(sweep.cells)
        assert small.resources.gpu == 0 and small.resources.cpu == 1
        assert [c.optimizer for c in small.cells] == [c.optimizer for c in sweep.cells]
        assert all(
            len(c.lrs.grid) == 1 and c.lrs.grid[0] in o.lrs.grid
            for c, o in zip(small.cells, sweep.cells, strict=True)
        )


def test_wgangp_smoke_sweep_runs_on_generated_images(tmp_path):
    from sweeps.wgangp_cifar10 import SWEEP

    outcome = run(smoke_version(SWEEP, smoke), storage=str(tmp_path), num_cpus=2)
    assert outcome.code == 0
    trials = outcome.trials
    assert len(trials) == 6 and (trials["step"] == 6).all()  # 2 cells x (2 seeds + 1 fresh)
    assert sorted(trials.loc[trials["stage"] == "confirm", "seed"]) == [5, 5]
    assert trials["fid"].notna().all() and trials["fid_extractor"].str.startswith("randconv").all()
    assert set(outcome.table["cell"]) == {"adam", "ada-nsgda"}


def test_a_sweep_without_its_data_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    from sweeps.wgangp_cifar10 import SWEEP

    monkeypatch.setenv("GANSWEEP_DATA", str(tmp_path / "data"))
    assert run(SWEEP, storage=str(tmp_path / "r"), num_cpus=2).code == 2
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
    assert run(sweep, storage=str(tmp_path / "r"), num_cpus=2).code == 2
    assert "cannot hold" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_stylegan2_two_stages_and_the_profile_on_another_dataset(tmp_path, capsys):
    """FFHQ smoke: stage 1 (an ada-nsgda run) writes the profile, stage 2 runs nsgda with it;
    a resume reuses it; LSUN Church's sweep takes FFHQ's profile from the same storage. Each
    smoke trains on its own data set, prepared from originals of its shape (LSUN Church's
    landscape ones from an LMDB) into a 16 px zip, and its rows and table name that data set."""
    import glob
    import json

    from sweeps import smoke_data, stylegan2_ffhq, stylegan2_lsun_church
    from sweeps.stylegan2_presets import TINY, parse, run_with_profile
    from trainers.data import images
    from trainers.models import stylegan2

    argv = ["--smoke", "--storage", str(tmp_path), "--num-cpus", "2"]
    assert run_with_profile(stylegan2_ffhq.SWEEP, parse(argv)) == 0
    assert "prepare: wrote 64 images (16x16) from folder" in capsys.readouterr().err
    for sweep in ("stylegan2_ffhq_profile_smoke", "stylegan2_ffhq_smoke"):
        _assert_trained_on(tmp_path, sweep, "ffhq")
    profile = json.loads((tmp_path / "stylegan2_ffhq_profile_smoke/profile.json").read_text())
    t = TINY  # the smoke's sizes
    G = stylegan2.Generator(t["resolution"], t["z_dim"], t["z_dim"], 2, t["cbase"], t["cmax"])
    assert {k[2:] for k in profile if k.startswith("G/")} == _layer_names(G)
    assert all(v > 0 for v in profile.values())
    used = json.loads(_params(tmp_path, "stylegan2_ffhq_smoke", "nsgda-profile"))["trainer"]
    assert used["optimizer"] == "nsgda"
    assert used["optimizer_options"]["scales"] == pytest.approx(profile)
    cells = {p.split("/")[-2].rsplit("_s", 1)[0] for p in glob.glob(f"{tmp_path}/*_smoke/*/")}
    assert {"adam", "ada-nsgda", "nsgda-profile"} <= cells

    assert run_with_profile(stylegan2_ffhq.SWEEP, parse([*argv, "--resume"])) == 0  # nothing reruns
    assert len(glob.glob(f"{tmp_path}/stylegan2_ffhq_profile_smoke/ada-nsgda_*")) == 1

    lsun = stylegan2_lsun_church.SWEEP
    capsys.readouterr()
    assert run_with_profile(lsun, parse(argv), profile_from="stylegan2_ffhq") == 0
    kind = "lmdb" if importlib.util.find_spec("lmdb") else "folder"  # as the real LSUN comes
    assert f"prepare: wrote 64 images (16x16) from {kind}" in capsys.readouterr().err
    used = json.loads(_params(tmp_path, "stylegan2_lsun_church_smoke", "nsgda-profile"))["trainer"]
    assert used["optimizer_options"]["scales"] == pytest.approx(profile)
    _assert_trained_on(tmp_path, "stylegan2_lsun_church_smoke", "lsun_church")
    assert not glob.glob(f"{tmp_path}/stylegan2_lsun_church_profile_smoke*")  # FFHQ's profile
    for dataset in ("ffhq", "lsun_church"):
        data = images.load(dataset, tmp_path / smoke_data.FOLDER / f"{dataset}-16.zip", 16)
        assert tuple(data.images.shape) == (smoke_data.COUNT, 3, 16, 16)


def _assert_trained_on(storage, sweep: str, dataset: str) -> None:
    """Every row and table line of ``sweep`` names ``dataset``, and its trials read the smoke
    zip of that data set."""
    import glob

    import pandas as pd

    import analysis
    from sweeps import smoke_data

    rows = analysis.load(f"{storage}/{sweep}/results")
    assert len(rows) and set(rows["dataset"]) == {dataset}
    assert set(pd.read_csv(f"{storage}/{sweep}/summary.csv")["dataset"]) == {dataset}
    zip_path = f"{storage}/{smoke_data.FOLDER}/{dataset}-16.zip"
    for path in glob.glob(f"{storage}/{sweep}/*/params.json"):
        with open(path) as f:
            trainer = json.load(f)["trainer"]
        assert (trainer["dataset"], trainer["data_path"]) == (dataset, zip_path)


def test_lsun_church_without_a_profile_exits_2(tmp_path, capsys):
    from sweeps import stylegan2_lsun_church
    from sweeps.stylegan2_presets import parse, run_with_profile

    argv = ["--smoke", "--storage", str(tmp_path)]
    assert run_with_profile(stylegan2_lsun_church.SWEEP, parse(argv), "stylegan2_ffhq") == 2
    assert "run the stylegan2_ffhq sweep first" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"b4.conv1": 1.0}))
    argv = ["--smoke", "--storage", str(tmp_path), "--profile", str(bad)]
    assert run_with_profile(stylegan2_lsun_church.SWEEP, parse(argv), "stylegan2_ffhq") == 2
    assert "not a two-player profile" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [bad]


def _params(storage, sweep: str, cell: str | None = None) -> str:
    import glob

    pattern = f"{storage}/{sweep}/{cell or '*'}_s0_*/params.json"
    (path,) = glob.glob(pattern)
    with open(path) as f:
        return f.read()


def _layer_names(G) -> set[str]:
    """Modules that own parameters directly: the layers the optimizers see as groups."""
    return {n for n, m in G.named_modules() if any(True for _ in m.parameters(recurse=False))}


def test_quickstart_smoke_ends_with_tables_and_the_report(tmp_path, capsys):
    """The README's main job, in its --smoke form: both sweeps, their tables, the report."""
    from sweeps import quickstart

    argv = ["--smoke", "--storage", str(tmp_path), "--num-cpus", "2"]
    assert quickstart.main(argv) == 0
    out = capsys.readouterr().out
    assert "bimodal_smoke: 12 trials" in out and "mog_smoke: 9 trials" in out
    report = (tmp_path / "report" / "report.md").read_text()
    for cell in ("sgda", "nsgda", "ada-nsgda", "adam"):
        assert f"| {cell} |" in report
    figures = {p.name for p in (tmp_path / "report" / "figures").glob("*.png")}
    for sweep in ("bimodal_smoke", "mog_smoke"):
        assert {f"{sweep}_sensitivity.png", f"{sweep}_curves.png"} <= figures
    assert "mog_smoke_samples.png" in figures and "fig3.png" in figures
    assert "over fresh confirmation seeds" in report
    assert quickstart.main(argv) == 0  # a rerun resumes: nothing trains again
    assert "bimodal_smoke: 12 trials" in capsys.readouterr().out
