"""Image data: generated sets, folders and zips, missing and corrupt data."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from trainers import experiments
from trainers.data import images as data


def test_generated_images_are_fixed_by_the_seed():
    a, b, c = (data.generated(s, size=20, resolution=16) for s in (0, 0, 1))
    assert a.images.shape == (20, 3, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.float().std() > 20  # not a flat colour
    x = a.sample(8, torch.Generator().manual_seed(0))
    y = a.sample(8, torch.Generator().manual_seed(0))
    assert torch.equal(x, y) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(data.to_uint8(data.to_float(a.images)), a.images)


def _write_images(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")


def test_folder_and_zip_load_the_same_images_at_the_requested_resolution(tmp_path):
    _write_images(tmp_path / "imgs", [(16, 16), (24, 20), (8, 8)])
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    loaded = data.folder(tmp_path / "imgs", 16)
    assert loaded.images.shape == (3, 3, 16, 16)
    original = np.asarray(Image.open(tmp_path / "imgs" / "img0.png"))
    assert np.array_equal(loaded.images[0].permute(1, 2, 0).numpy(), original)
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted((tmp_path / "imgs").glob("*.png")):
            z.write(p, f"sub/{p.name}")
    zipped = data.load("folder", archive, resolution=16)
    assert torch.equal(zipped.images, loaded.images)


def test_a_corrupt_image_is_reported_by_file_name(tmp_path):
    _write_images(tmp_path / "imgs", [(8, 8)])
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(data.ImageDataError, match="broken.png"):
        data.folder(tmp_path / "imgs", 8)


def test_missing_data_name_the_path_and_the_command_that_prepares_them(tmp_path):
    with pytest.raises(data.DataMissingError) as err:
        data.load("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert f"python -m trainers.data.images prepare cifar10 --root {tmp_path}" in message
    with pytest.raises(data.DataMissingError, match="prepare stl10"):
        data.load("stl10", tmp_path)
    with pytest.raises(data.DataMissingError, match=str(tmp_path / "nope")):
        data.load("folder", tmp_path / "nope", 32)


def test_an_experiment_on_missing_data_fails_with_that_error(tmp_path):
    cfg = experiments.resolve_config(
        {"experiment": "wgangp", "optimizer": "adam", "seed": 0, "data_path": str(tmp_path)}
    )
    with pytest.raises(data.DataMissingError, match="cifar-10-batches-py"):
        experiments.build(cfg)


def test_stl10_uses_the_resized_array_once_prepared(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 48, 48), dtype=np.uint8)
    np.save(tmp_path / "stl10_unlabeled_48.npy", images)
    loaded = data.load("stl10", tmp_path)
    assert (loaded.name, loaded.split, loaded.resolution) == ("stl10", "unlabeled", 48)
    assert np.array_equal(loaded.images.numpy(), images)


def test_resize_averages_down_to_the_target_resolution():
    big = torch.zeros(2, 3, 96, 96, dtype=torch.uint8)
    big[:, :, :48] = 200
    small = data.resize(big, 48)
    assert small.shape == (2, 3, 48, 48) and small.dtype == torch.uint8
    assert small[:, :, :23].eq(200).all() and small[:, :, 25:].eq(0).all()


def test_missing_inception_weights_stop_the_experiment_before_training(tmp_path):
    from trainers.metrics import fid

    cfg = experiments.resolve_config(
        {
            "experiment": "dcgan",
            "optimizer": "adam",
            "seed": 0,
            "dataset": "generated",
            "generated_size": 8,
            "fid_inception_path": str(tmp_path / "missing"),
        }
    )
    with pytest.raises(fid.WeightsMissingError, match="fid_inception_path"):
        experiments.build(cfg)


def test_ffhq_is_found_through_its_environment_variable_and_named_when_missing(
    tmp_path, monkeypatch
):
    zip_path = tmp_path / "ffhq-small.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(zip_path, "w") as z:
        for i in range(3):
            buf = tmp_path / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf)
            z.write(buf, f"img{i}.png")
    monkeypatch.setenv("GANSWEEP_FFHQ", str(zip_path))
    got = data.load("ffhq", resolution=32)
    assert tuple(got.images.shape) == (3, 3, 32, 32) and got.name == "ffhq-32-3"

    monkeypatch.setenv("GANSWEEP_FFHQ", str(tmp_path / "nowhere.zip"))
    with pytest.raises(data.DataMissingError, match=r"nowhere\.zip.*GANSWEEP_FFHQ"):
        data.load("ffhq")
    cfg = experiments.resolve_config({"experiment": "stylegan2", "optimizer": "adam", "seed": 0})
    assert cfg["dataset"] == "ffhq" and cfg["resolution"] == 128  # the paper's setting by default
