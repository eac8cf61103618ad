"""``python -m trainers.data prepare``: folder, zip and LMDB sources to a zip of R x R PNGs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers.data import images, prepare
from trainers.data.prepare import PrepareError, prepare_images

R = 8
ROOT = Path(__file__).resolve().parents[1]


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _expected(blob: bytes, resolution: int = R) -> np.ndarray:
    """The centre square, bicubic to ``resolution``, computed here with PIL."""
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(img.crop(box).resize((resolution, resolution), Image.BICUBIC))


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as z:
        return {n: np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in z.namelist()}


# (name, width, height, format): non-square images whose centre crop is off any edge
SOURCES = [
    ("b/c.jpg", 12, 20, "JPEG"),
    ("a.png", 16, 10, "PNG"),
    ("b/a.webp", 9, 13, "WEBP"),
    ("d.bmp", 8, 8, "BMP"),
]


def _blobs() -> dict[str, bytes]:
    return {n: _encode(_image(w, h, i), fmt) for i, (n, w, h, fmt) in enumerate(SOURCES)}


def _folder(tmp_path: Path, blobs: dict[str, bytes]) -> Path:
    root = tmp_path / "src"
    for name, blob in blobs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    (root / "notes.txt").write_text("not an image")
    return root


def _check(dest: Path, blobs_in_order: list[bytes]) -> None:
    got = _read_zip(dest)
    assert sorted(got) == [f"{i:08d}.png" for i in range(len(blobs_in_order))]
    for i, blob in enumerate(blobs_in_order):
        assert got[f"{i:08d}.png"].shape == (R, R, 3)
        np.testing.assert_array_equal(got[f"{i:08d}.png"], _expected(blob))


def test_folder_source_gives_sorted_centre_crops_that_the_loader_reads(tmp_path, monkeypatch):
    blobs = _blobs()
    src, dest = _folder(tmp_path, blobs), tmp_path / "out" / "ffhq.zip"
    lines: list[str] = []
    assert prepare_images(src, dest, R, progress=lines.append) == 4
    order = ["a.png", "b/a.webp", "b/c.jpg", "d.bmp"]
    _check(dest, [blobs[n] for n in order])
    assert "wrote 4 images (8x8)" in lines[-1] and "img/s" in lines[-1]
    assert os.stat(dest).st_mode & 0o777 == 0o666 & ~_umask()

    loaded = images.folder(dest, R)
    want = np.stack([_expected(blobs[n]) for n in order]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(loaded.images.numpy(), want)
    monkeypatch.setenv("GANSWEEP_FFHQ", str(dest))
    named = images.load("ffhq", resolution=R)
    assert named.name == "ffhq-8-4" and np.array_equal(named.images.numpy(), want)

    again = tmp_path / "again.zip"
    prepare_images(src, again, R, progress=None)
    assert dest.read_bytes() == again.read_bytes()  # deterministic, byte for byte


def test_zip_source_is_read_in_name_order_and_limit_takes_the_first(tmp_path):
    blobs = _blobs()
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        for name, blob in blobs.items():  # not in name order
            z.writestr(name, blob)
        z.writestr("readme.txt", "not an image")
    assert prepare_images(src, tmp_path / "all.zip", R, progress=None) == 4
    _check(tmp_path / "all.zip", [blobs[n] for n in ["a.png", "b/a.webp", "b/c.jpg", "d.bmp"]])
    assert prepare_images(src, tmp_path / "two.zip", R, limit=2, progress=None) == 2
    _check(tmp_path / "two.zip", [blobs["a.png"], blobs["b/a.webp"]])


def _write_lmdb(path: Path, items: dict[bytes, bytes]) -> None:
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)
    env.close()


def test_lmdb_source_with_webp_and_jpeg_values_is_read_in_key_order(tmp_path):
    values = {
        b"f3a9": _encode(_image(14, 10, 0), "WEBP"),
        b"07bc": _encode(_image(10, 15, 1), "JPEG"),
        b"a001": _encode(_image(16, 16, 2), "WEBP"),
    }
    src = tmp_path / "church_outdoor_train_lmdb"
    _write_lmdb(src, values)
    assert prepare_images(src, tmp_path / "church.zip", R, progress=None) == 3
    _check(tmp_path / "church.zip", [values[k] for k in (b"07bc", b"a001", b"f3a9")])
    assert prepare_images(src / "data.mdb", tmp_path / "c2.zip", R, progress=None) == 3
    assert images.folder(tmp_path / "c2.zip", R).images.shape == (3, 3, R, R)


def test_lmdb_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb raises ImportError
    with pytest.raises(PrepareError, match=r"pip install lmdb.*\.\[lsun\]"):
        prepare_images(tmp_path / "db", tmp_path / "out.zip", R, progress=None)
    assert not (tmp_path / "out.zip").exists()


def test_a_corrupt_image_stops_the_run_naming_it_and_writes_nothing(tmp_path):
    blobs = _blobs()
    blobs["b/bad.png"] = blobs["a.png"][: len(blobs["a.png"]) // 2]  # truncated
    src, dest = _folder(tmp_path, blobs), tmp_path / "out.zip"
    with pytest.raises(images.ImageDataError, match=r"b/bad\.png.*after 2 of 5 images") as err:
        prepare_images(src, dest, R, progress=None)
    assert "--skip-bad" in str(err.value)
    assert not dest.exists() and not list(tmp_path.glob(".out.zip.*"))

    dest.write_bytes(b"the old zip")
    with pytest.raises(images.ImageDataError):
        prepare_images(src, dest, R, force=True, progress=None)
    assert dest.read_bytes() == b"the old zip" and not list(tmp_path.glob(".out.zip.*"))


def test_skip_bad_skips_and_reports_unreadable_images(tmp_path):
    blobs = _blobs()
    blobs["b/bad.png"] = b"not a png at all"
    src = _folder(tmp_path, blobs)
    lines: list[str] = []
    n = prepare_images(src, tmp_path / "out.zip", R, skip_bad=True, progress=lines.append)
    assert n == 4
    _check(tmp_path / "out.zip", [blobs[n] for n in ["a.png", "b/a.webp", "b/c.jpg", "d.bmp"]])
    assert any("skipped" in line and "bad.png" in line for line in lines)
    assert lines[-1].endswith("skipped 1 unreadable")


def test_progress_lines_and_an_interrupted_run_leaves_no_file(tmp_path, monkeypatch):
    src = _folder(tmp_path, _blobs())
    monkeypatch.setattr(prepare, "PROGRESS_EVERY", 2)
    lines: list[str] = []
    prepare_images(src, tmp_path / "out.zip", R, progress=lines.append)
    assert [line.split(" images")[0] for line in lines[:2]] == ["prepare: 2/4", "prepare: 4/4"]
    assert lines[0].endswith("img/s")

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    (tmp_path / "out.zip").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        prepare_images(src, tmp_path / "out.zip", R, force=True, progress=interrupt)
    assert (tmp_path / "out.zip").read_bytes() == b"old"
    assert not list(tmp_path.glob(".out.zip.*"))


def test_existing_dest_is_replaced_only_with_force(tmp_path):
    src, dest = _folder(tmp_path, _blobs()), tmp_path / "out.zip"
    dest.write_bytes(b"old")
    with pytest.raises(PrepareError, match=r"out\.zip exists.*--force"):
        prepare_images(src, dest, R, progress=None)
    assert dest.read_bytes() == b"old"
    assert prepare_images(src, dest, R, force=True, progress=None) == 4
    assert len(_read_zip(dest)) == 4


@pytest.mark.parametrize("resolution", [0, 2, 12, 100])
def test_resolution_must_be_a_power_of_two_of_at_least_4(tmp_path, resolution):
    src = _folder(tmp_path, _blobs())
    with pytest.raises(PrepareError, match=rf"power of two >= 4, got {resolution}\b"):
        prepare_images(src, tmp_path / "out.zip", resolution, progress=None)


def test_bad_dest_and_source_errors_name_them(tmp_path):
    src = _folder(tmp_path, _blobs())
    with pytest.raises(PrepareError, match=r"\.zip file, got .*out\.tar"):
        prepare_images(src, tmp_path / "out.tar", R, progress=None)
    with pytest.raises(images.DataMissingError, match=r"nowhere"):
        prepare_images(tmp_path / "nowhere", tmp_path / "out.zip", R, progress=None)
    with pytest.raises(PrepareError, match=r"notes\.txt is not an image folder.*LMDB"):
        prepare_images(src / "notes.txt", tmp_path / "out.zip", R, progress=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"no images .* found in .*empty"):
        prepare_images(tmp_path / "empty", tmp_path / "out.zip", R, progress=None)
    assert not (tmp_path / "out.zip").exists()


def test_named_dataset_missing_points_to_the_prepare_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSWEEP_FFHQ", str(tmp_path / "ffhq.zip"))
    with pytest.raises(images.DataMissingError, match=r"trainers\.data prepare SRC .*ffhq\.zip"):
        images.load("ffhq", resolution=128)


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "trainers.data", "prepare", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_command_line_exit_codes(tmp_path):
    src, dest = _folder(tmp_path, _blobs()), tmp_path / "out.zip"
    ok = _cli(str(src), str(dest), "--resolution", str(R), "--limit", "3")
    assert ok.returncode == 0, ok.stderr
    assert "wrote 3 images" in ok.stderr and len(_read_zip(dest)) == 3
    missing = _cli(str(tmp_path / "nowhere"), str(tmp_path / "o2.zip"), "--resolution", "8")
    assert missing.returncode == 3 and "nowhere" in missing.stderr


def test_command_line_bad_arguments_exit_2(tmp_path, capsys):
    from trainers.data.__main__ import main  # in-process: each python -m imports torch (2 s)

    src = _folder(tmp_path, _blobs())
    assert main(["prepare", str(src), str(tmp_path / "o.zip"), "--resolution", "12"]) == 2
    assert "power of two >= 4, got 12" in capsys.readouterr().err
    assert main(["prepare", str(src), str(tmp_path / "o.tar"), "--resolution", "8"]) == 2
    assert "o.tar" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "src", "dest.zip"])  # no --resolution
    assert exit_.value.code == 2 and "--resolution" in capsys.readouterr().err
    assert not list(tmp_path.glob("o.*"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
