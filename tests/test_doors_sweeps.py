"""Bad input at a sweep's doors (every ``sweeps/*.py`` flag, a script's declaration, the
engine's checks): exit 2 (3 for a missing file) with a message naming the value, before Ray
starts or a file is written; ``--help`` describes the sweep; the smokes keep their data's shape;
Ray's routine notices are silenced and its real warnings are not."""

from __future__ import annotations

import logging
import os
import runpy
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sweeps.engine import Cell, StepSizes, Sweep, SweepError, noise, run
from sweeps.engine.spec import record

ROOT = Path(__file__).resolve().parents[1]
ENGINE_SCRIPTS = [
    "dcgan_cifar10_ratio",
    "wgangp_cifar10",
    "wgangp_stl10",
    "stylegan2_ffhq",
    "stylegan2_lsun_church",
]


def script(name: str, *argv: str) -> int:
    """Run ``sweeps/<name>.py`` in this process as ``__main__``; its exit code."""
    before = sys.argv
    sys.argv = [f"sweeps/{name}.py", *argv]
    try:
        runpy.run_path(str(ROOT / "sweeps" / f"{name}.py"), run_name="__main__")
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        sys.argv = before
    return 0


def mog_sweep(**kw) -> Sweep:
    base = Sweep(
        name="doors",
        experiment="mog",
        cells=[Cell("adam", StepSizes(grid=(1e-4,)))],
        seeds=[0, 1],
        metric="mode_kl",
    )
    return replace(base, **kw)


@pytest.mark.parametrize("storage", ["foo://bucket/runs", "AFILE", "AFILE/under"])
def test_a_storage_that_cannot_hold_a_sweep_exits_2_before_ray_starts(tmp_path, capsys, storage):
    import ray

    ray.shutdown()  # a Ray an earlier test left running would make the last check say nothing
    afile = tmp_path / "afile"
    afile.write_text("mine")
    storage = storage.replace("AFILE", str(afile))
    assert script("wgangp_cifar10", "--smoke", "--storage", storage) == 2
    err = capsys.readouterr().err
    assert "--storage" in err and (storage.split("/")[0] if "://" in storage else "file") in err
    assert "Traceback" not in err
    assert afile.read_text() == "mine"
    assert not ray.is_initialized()


def test_the_quickstart_refuses_a_storage_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert script("quickstart", "--smoke", "--storage", str(afile)) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "mine"


def test_a_missing_profile_file_exits_3(tmp_path, capsys):
    code = script(
        "stylegan2_ffhq", "--smoke", "--storage", str(tmp_path), "--profile", str(tmp_path / "p")
    )
    assert code == 3 and "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_metric_the_experiment_never_reports_is_refused_before_work(tmp_path):
    outcome = run(mog_sweep(metric="fid"), storage=str(tmp_path / "runs"))
    assert outcome.code == 2
    assert "never reports fid" in outcome.error and "mode_kl" in outcome.error
    assert not (tmp_path / "runs").exists()
    for metric in ("mode_kl", "modes_missed"):
        mog_sweep(metric=metric).validate()
    with pytest.raises(SweepError, match="'bimodal' experiment never reports mode_kl"):
        mog_sweep(experiment="bimodal", cells=[Cell("nsgda", StepSizes(grid=(1e-3,)))]).validate()


def test_num_cpus_must_be_at_least_one(tmp_path):
    outcome = run(mog_sweep(), storage=str(tmp_path / "runs"), num_cpus=0)
    assert outcome.code == 2 and "num_cpus 0" in outcome.error


def test_integer_like_seeds_are_accepted_as_ints():
    sweep = mog_sweep(seeds=np.arange(2), confirm_seeds=np.array([5, 6]))
    sweep.validate()
    assert sweep.seeds == [0, 1] and sweep.confirmation_seeds() == [5, 6]
    assert all(type(s) is int for s in sweep.seeds)
    assert record(sweep) == record(mog_sweep(confirm_seeds=[5, 6]))  # a resume sees no change
    assert mog_sweep(seeds=range(2)).seeds == [0, 1]
    for bad in ([0.5, 1], [True, 2], [-1, 0], "01"):
        with pytest.raises(SweepError, match="seeds"):
            mog_sweep(seeds=bad).validate()


def test_a_step_size_grid_that_is_not_a_list_is_named():
    with pytest.raises(
        SweepError, match=r"grid=0.001 must be a list of numbers, e.g. grid=\[0.001\]"
    ):
        mog_sweep(cells=[Cell("adam", StepSizes(grid=1e-3))]).validate()
    with pytest.raises(SweepError, match="ratios=2"):
        mog_sweep(cells=[Cell("adam", StepSizes(grid=(1e-3,), ratios=2))]).validate()


def test_tpe_startup_trials_are_declared_checked_and_reach_the_sampler(tmp_path):
    from sweeps.engine.searcher import CellSearcher

    tpe = StepSizes(low=1e-4, high=1e-2, trials=6, startup=np.int64(2))
    sweep = mog_sweep(cells=[Cell("adam", tpe), Cell("sgda", replace(tpe, startup=None))])
    sweep.validate()
    assert type(tpe.startup) is int and record(sweep)["cells"][0]["lrs"]["startup"] == 2
    searcher = CellSearcher(sweep, str(tmp_path / "exp"))
    searcher._load()
    got = {name: study.sampler._n_startup_trials for name, study in searcher.studies.items()}
    assert got == {"adam": 2, "sgda": 10}  # Optuna's default where the sweep says nothing
    for bad in (-1, 1.5, True, "2"):
        cells = [Cell("adam", replace(tpe, startup=bad))]
        with pytest.raises(SweepError, match=rf"startup={bad!r} must be an integer >= 0"):
            mog_sweep(cells=cells).validate()
    with pytest.raises(SweepError, match="startup=2 is for a TPE range search"):
        mog_sweep(cells=[Cell("adam", StepSizes(grid=(1e-3,), startup=2))]).validate()
    # a record written before ``startup`` existed resumes as the same sweep
    from sweeps.engine.spec import differences

    old = record(mog_sweep())
    del old["cells"][0]["lrs"]["startup"]
    assert differences(old, record(mog_sweep())) == []
    changed = mog_sweep(cells=[Cell("adam", replace(tpe, startup=3))])
    assert differences(record(sweep), record(changed))


BAD_SCRIPT = """
from sweeps.engine import Cell, StepSizes, Sweep, log_grid, main

SWEEP = Sweep("bad", "mog", [Cell("adam", StepSizes(grid=log_grid(-1e-4, 1e-2, 3)))], [0], "mode_kl")
main(SWEEP)
"""


def test_a_bad_declaration_at_script_load_exits_2_without_a_traceback(tmp_path):
    path = tmp_path / "bad_sweep.py"
    path.write_text(BAD_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(path), "--storage", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert "log_grid(-0.0001, 0.01, 3)" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ENGINE_SCRIPTS)
def test_every_sweep_scripts_help_describes_the_sweep(name, capsys):
    assert script(name, "--help") == 0
    text = capsys.readouterr().out
    sweep = runpy.run_path(str(ROOT / "sweeps" / f"{name}.py"))["SWEEP"]
    assert f"metric {sweep.metric!r}" in text
    assert "tuning seeds:" in text and "confirmation seeds" in text
    for cell in sweep.cells:
        assert cell.name in text
        assert ", ".join(f"{v:g}" for v in cell.lrs.grid) in text
    for flag in ("--smoke", "--storage", "--resume", "--max-concurrent", "--num-cpus"):
        assert flag in text
    if name.startswith("stylegan2"):
        assert "--profile" in text
    assert "trials:" in text and "--smoke:" in text


def test_the_quickstart_and_local_studies_help_say_what_they_run(capsys):
    assert script("quickstart", "--help") == 0
    text = capsys.readouterr().out
    assert "sweep 'bimodal'" in text and "sweep 'mog'" in text and "gd_reg=0.5" in text
    for name, flags in (("mog_gdreg", ("--etas", "--seeds", "--steps")), ("bimodal_theory", ())):
        assert script(name, "--help") == 0
        text = capsys.readouterr().out
        assert all(flag in text for flag in ("--seeds", "--workers", "--out", *flags))


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--seeds", "0"], "--seeds: '0': must be >= 1"),
        (["--workers", "0"], "--workers: '0': must be >= 1"),
        (["--etas", "-1"], "--etas: '-1': must be >= 0"),
        (["--optimizers", "bogus", "--smoke"], "'bogus' is not allowed"),
        (["--out", "AFILE", "--smoke"], "lies under the file"),
    ],
)
def test_the_local_studies_refuse_bad_flags(tmp_path, capsys, argv, words):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    argv = [a.replace("AFILE", str(afile)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert script("mog_gdreg", *argv) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and afile.read_text() == "mine"


def test_the_stl10_smoke_trains_at_48_px_and_cifar10s_at_32():
    import torch

    from sweeps.engine import smoke_version
    from trainers import models
    from trainers.experiments.image_gan import resolution_of

    sizes = {}
    for name in ("wgangp_cifar10", "wgangp_stl10"):
        small = smoke_version(
            runpy.run_path(str(ROOT / "sweeps" / f"{name}.py"))["SWEEP"],
            runpy.run_path(str(ROOT / "sweeps" / "image_presets.py"))["smoke"],
        )
        small.validate()
        (cfg, *_) = small.data_configs().values()
        G, _ = models.build(cfg["model"], resolution=resolution_of(cfg), z_dim=8, width=0.125)
        sizes[name] = (cfg["dataset"], G(torch.randn(2, 8)).shape[-1])
    assert sizes == {"wgangp_cifar10": ("generated", 32), "wgangp_stl10": ("generated", 48)}


def test_the_quickstart_mog_cells_name_the_regulariser_explicitly():
    from trainers import experiments

    mog = runpy.run_path(str(ROOT / "sweeps" / "quickstart.py"))["MOG"]
    trained = {}
    for cell in mog.cells:
        assert "gd_reg" in cell.overrides  # never the experiment's default
        cfg = experiments.resolve_config(mog.trial_config(cell, cell.lrs.grid[0], 1.0, 0))
        trained[cell.name] = (cfg["optimizer"], cfg["gd_reg"], cfg["lr_d"])
    assert trained == {
        "adam+gd_reg": ("adam", 0.5, 1e-4),
        "adam": ("adam", 0.0, 1e-4),
        "nsgda": ("nsgda", 0.0, 1e-3),
    }


UNRAISABLE = """
import gc, weakref
from sweeps.engine import noise

class Thing:
    pass

def stop(_):
    raise SystemExit(1)  # as Ray's SIGTERM handler does when it lands in a callback

def broken(_):
    raise ValueError("a real bug in a callback")

if QUIET:
    noise.quiet_trial()
    noise.quiet_trial()  # twice: one hook, not two wrapped
a, b = Thing(), Thing()
refs = [weakref.ref(a, stop), weakref.ref(b, broken)]
del a, b
gc.collect()
print("still running")
"""


@pytest.mark.parametrize("quiet", [True, False])
def test_a_stop_signal_in_a_trial_callback_prints_no_traceback_but_real_errors_do(quiet):
    code = f"QUIET = {quiet}\n" + UNRAISABLE
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0 and "still running" in done.stdout
    assert "ValueError: a real bug in a callback" in done.stderr  # kept either way
    assert ("SystemExit" in done.stderr) is not quiet, done.stderr


def test_ray_notices_are_silenced_and_real_warnings_kept(monkeypatch):
    from ray._private.authentication import authentication_token_setup as auth

    monkeypatch.delenv(noise.SNAPSHOT_WARNING_ENV, raising=False)
    noise.quiet_driver()
    noise.quiet_driver()  # twice: one filter
    import os

    assert os.environ[noise.SNAPSHOT_WARNING_ENV] == "0"
    logger = logging.getLogger(noise.AUTH_LOGGER)
    assert sum(isinstance(f, noise.DropMessages) for f in logger.filters) == 1
    # a handler on the logger itself: Ray's loggers do not propagate to the root (caplog's)
    # once Ray has configured them, so caplog would see nothing when this test runs alone
    records: list[logging.LogRecord] = []
    catch = logging.Handler(logging.WARNING)
    catch.emit = records.append
    logger.addHandler(catch)
    try:
        auth._warn_token_auth_enabled()  # Ray's own notice, as ray.init prints it
        auth._warn_token_auth_disabled()  # a real warning: stays
    finally:
        logger.removeHandler(catch)
    messages = [r.getMessage() for r in records]
    assert len(messages) == 1 and "disabled" in messages[0]
    noise.quiet_trial()
    for name in noise.CHECKPOINT_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
        assert logging.getLogger(name).isEnabledFor(logging.WARNING)


def test_a_small_sample_fid_does_not_warn_about_a_singular_matrix():
    from trainers.metrics import fid

    rng = np.random.default_rng(0)
    stats = []
    for _ in range(2):  # few samples, and features that are always 0 (ReLU): singular
        feats = np.maximum(rng.normal(size=(8, 16)), 0.0)
        feats[:, :4] = 0.0
        stats.append(fid.Statistics(feats.mean(0), np.cov(feats, rowvar=False), 8))
    a, b = stats
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fid.frechet(a, b)
    assert np.isfinite(value) and value > 0
    assert not [w for w in caught if "singular" in str(w.message)]


@pytest.mark.parametrize(
    "name, dataset", [("stylegan2_ffhq", "ffhq"), ("stylegan2_lsun_church", "lsun_church")]
)
def test_each_stylegan2_smoke_reads_its_own_data_set_through_prepare(
    tmp_path, capsys, name, dataset
):
    """FFHQ's smoke trains on square originals, LSUN Church's on landscape ones (an LMDB export
    where ``lmdb`` is installed), each prepared by ``trainers.data prepare`` into the zip its
    own loader reads; never on generated images."""
    import importlib.util

    from sweeps import smoke_data
    from sweeps.engine import smoke_version
    from sweeps.stylegan2_presets import TINY, own_data_smoke, parse
    from trainers import experiments
    from trainers.data import images

    sweep = runpy.run_path(str(ROOT / "sweeps" / f"{name}.py"))["SWEEP"]
    small = smoke_version(
        sweep, own_data_smoke(sweep, parse(["--smoke", "--storage", str(tmp_path)]))
    )
    small.validate()
    zip_path = tmp_path / smoke_data.FOLDER / f"{dataset}-16.zip"
    for cfg in small.data_configs().values():
        assert (cfg["dataset"], cfg["data_path"]) == (dataset, str(zip_path))
        assert cfg["resolution"] == TINY["resolution"] == 16
        experiments.check_data(cfg)
    kind = "lmdb" if dataset == "lsun_church" and importlib.util.find_spec("lmdb") else "folder"
    assert (
        f"prepare: wrote {smoke_data.COUNT} images (16x16) from {kind} " in capsys.readouterr().err
    )
    height, width = smoke_data.SHAPES[dataset]
    assert (height == width) == (dataset == "ffhq")  # LSUN Church's originals are not square
    assert {a.shape for a in smoke_data.originals(dataset)} == {(height, width, 3)}
    data = images.load(dataset, zip_path, 16)
    assert tuple(data.images.shape) == (smoke_data.COUNT, 3, 16, 16)
    assert data.name == f"{dataset}-16-{smoke_data.COUNT}"
    # the zip holds the originals centre-cropped to a square, then resized (prepare's rule)
    first = smoke_data.originals(dataset)[0]
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    crop = first[top : top + side, left : left + side]
    expected = images.decode_image(_png_bytes(crop), "crop", 16)
    assert np.array_equal(data.images[0].permute(1, 2, 0).numpy(), expected)
    before = zip_path.stat().st_mtime_ns
    own_data_smoke(sweep, parse(["--smoke", "--storage", str(tmp_path)]))  # a rerun reuses it
    assert zip_path.stat().st_mtime_ns == before
    assert sorted(p.name for p in zip_path.parent.iterdir()) == [zip_path.name]


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "address, words",
    [
        ("nonsense", "not HOST:PORT"),
        ("ray://", "not HOST:PORT"),
        ("10.0.0.5", "not HOST:PORT"),
        ("10.0.0.5:99999", "port '99999' is not a number from 1 to 65535"),
        ("ray://10.0.0.5:port", "port 'port' is not a number"),
        ("http://10.0.0.5:8265", "not HOST:PORT"),
        ("local", "a local Ray is what no --address gives"),
    ],
)
def test_a_malformed_address_exits_2_before_ray_starts(tmp_path, capsys, address, words):
    import ray

    ray.shutdown()
    runs = tmp_path / "runs"
    assert script("wgangp_cifar10", "--smoke", "--storage", str(runs), "--address", address) == 2
    err = capsys.readouterr().err
    assert f"--address {address!r}: {words}" in err, err
    assert "allowed: auto" in err and "HOST:PORT of a running Ray head" in err
    assert "ray://HOST:PORT" in err and "Traceback" not in err
    assert not runs.exists() and not ray.is_initialized()


@pytest.mark.parametrize("scheme", ["", "ray://"])
@pytest.mark.parametrize("name", ["wgangp_cifar10", "stylegan2_lsun_church"])
def test_an_address_nobody_listens_on_exits_2_at_once(tmp_path, capsys, name, scheme):
    """Refused before Ray is contacted (Ray itself retries a refused GCS for minutes), and
    before the LSUN Church smoke prepares its data or looks for FFHQ's profile."""
    import ray

    ray.shutdown()
    address = f"{scheme}127.0.0.1:{free_port()}"
    runs = tmp_path / "runs"
    assert script(name, "--smoke", "--storage", str(runs), "--address", address) == 2
    err = capsys.readouterr().err  # the probe's words: Ray was never asked (it retries minutes)
    host_port = address.removeprefix("ray://")
    assert f"--address {address}: nobody answered at {host_port}" in err, err
    assert "ray start --head" in err and "Traceback" not in err
    assert not runs.exists() and not ray.is_initialized()


LISTENER = """
import socket, sys
server = socket.create_server(("0.0.0.0", 0))
print(server.getsockname()[1], flush=True)
held = []
while True:
    held.append(server.accept()[0])  # accepted, never answered: no Ray head
"""


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_that_answers_but_is_no_ray_head_exits_2_soon(tmp_path, scheme):
    """Something listens at HOST:PORT but speaks no Ray: Ray's own error (after its retries,
    cut short: 20 s for a GCS, 35 s for Ray Client by default) becomes a message, exit 2."""
    listener = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        address = f"{scheme}127.0.0.1:{listener.stdout.readline().strip()}"
        runs = tmp_path / "runs"
        done = subprocess.run(  # Ray's default retries would take minutes: TimeoutExpired
            [sys.executable, "sweeps/wgangp_cifar10.py", "--smoke", "--storage", str(runs)]
            + ["--address", address],
            capture_output=True,
            text=True,
            timeout=150,
            cwd=ROOT,
        )
    finally:
        listener.kill()
        listener.wait()
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"--address {address}: no Ray cluster answered there (Ray: " in done.stderr
    assert "ray start --head" in done.stderr and "Traceback" not in done.stderr
    assert not runs.exists()


def test_auto_probes_ray_address_where_it_is_set(tmp_path, capsys, monkeypatch):
    import ray

    ray.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    runs = tmp_path / "runs"
    assert script("wgangp_cifar10", "--smoke", "--storage", str(runs), "--address", "auto") == 2
    err = capsys.readouterr().err
    assert f"--address auto ($RAY_ADDRESS={os.environ['RAY_ADDRESS']}): nobody answered" in err
    assert not runs.exists() and not ray.is_initialized()
