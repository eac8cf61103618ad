"""A trial's final samples (``samples.npz`` in its final checkpoint) and an honest ``fid_best``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainers.trial import checkpoint
from trainers.trial.run import run_trial

pytestmark = pytest.mark.usefixtures("one_thread")

MOG = {
    "experiment": "mog",
    "optimizer": "adam",
    "seed": 0,
    "batch_size": 64,
    "z_dim": 16,
    "hidden": 32,
    "eval_samples": 600,
    "steps": 20,
    "eval_every": 10,
    "checkpoint_every": 10,
}
IMAGE = {
    "experiment": "wgangp",
    "optimizer": "adam",
    "seed": 0,
    "dataset": "generated",
    "generated_size": 64,
    "width": 0.0625,
    "batch_size": 4,
    "fid_extractor": "randconv",
    "fid_workers": 1,
    "n_dis": 1,
    "steps": 6,
    "eval_every": 2,
    "checkpoint_every": 6,
}


def final_samples(out) -> dict[str, np.ndarray]:
    last = checkpoint.latest(out / "checkpoints")
    with np.load(last / checkpoint.SAMPLES) as f:
        return dict(f)


def test_a_mog_trial_saves_its_last_points_and_the_modes(tmp_path):
    run_trial(MOG, tmp_path, quiet=True)
    got = final_samples(tmp_path)
    assert got["points"].shape == (512, 2) and got["points"].dtype == np.float32
    assert got["centres"].shape == (8, 2) and float(got["std"]) == pytest.approx(0.02)
    assert int(got["step"]) == 20
    # only the final checkpoint holds them
    first = sorted((tmp_path / "checkpoints").glob("step_*"))[0]
    assert first.name.endswith("10") and not (first / checkpoint.SAMPLES).exists()


def test_an_image_trial_saves_its_last_8x8_grid_as_uint8(tmp_path):
    run_trial({**IMAGE, "fid_cache": str(tmp_path / "fid")}, tmp_path / "t", quiet=True)
    got = final_samples(tmp_path / "t")
    assert got["images"].shape == (64, 32, 32, 3) and got["images"].dtype == np.uint8
    assert got["images"].std() > 1  # not a constant image


def test_fid_best_is_the_best_of_the_rows_own_protocol(tmp_path):
    # the final FID uses fewer images than training's (a higher, biased FID), so the old
    # minimum over every evaluation would show a training FID on the final row
    config = {**IMAGE, "fid_num_gen": 64, "fid_num_gen_final": 4, "fid_cache": str(tmp_path)}
    run_trial(config, tmp_path / "t", quiet=True)
    lines = (tmp_path / "t" / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["fid_num_gen"] for r in rows] == [64, 64, 4]
    for i, row in enumerate(rows):
        same = [r["fid"] for r in rows[: i + 1] if r["fid_num_gen"] == row["fid_num_gen"]]
        assert row["fid_best"] == pytest.approx(min(same))
    assert rows[-1]["fid_best"] == rows[-1]["fid"]
