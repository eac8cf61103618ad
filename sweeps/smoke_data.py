"""The StyleGAN2 smokes' own data: tiny originals of each data set's shape, made from a seed, put
through the real ``trainers.data.prepare`` into the zip that data set's loader reads.

FFHQ's originals are square; LSUN Church's are landscape (256 x ~340 px in the real set: here
24 x 32) and come as an LSUN LMDB export (keys -> WebP images) when the ``lmdb`` package is
installed, else as a folder of PNGs. ``prepare`` centre-crops and resizes them to the smoke's
resolution. Everything lives in ``place(storage)``: under a local storage, else under the data
root (a bucket cannot hold a zip the trainers open), so a resume finds the same paths.
"""

from __future__ import annotations

import importlib.util
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from analysis import storage
from trainers.data.images import default_root
from trainers.data.prepare import prepare_images

SHAPES = {"ffhq": (32, 32), "lsun_church": (24, 32)}  # originals' (height, width) in px
COUNT = 64  # as many as the generated smoke images (IMAGES' generated_size)
SEED = 0
FOLDER = "smoke-data"  # under the storage
FID_CACHE = "fid"  # reference statistics of the smoke data, beside them


def place(storage_value: str) -> Path:
    """Where the smoke data of a sweep under the storage ``storage_value`` live."""
    local = storage.local_dir(storage_value)
    return Path(local) / FOLDER if local is not None else default_root() / FOLDER


def originals(dataset: str, count: int = COUNT, seed: int = SEED) -> list[np.ndarray]:
    """``count`` uint8 RGB images (H, W, 3) of ``dataset``'s shape: a sky-to-ground gradient
    with a few coloured blocks, all fixed by ``seed``."""
    height, width = SHAPES[dataset]
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    images = []
    for _ in range(count):
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        image = np.broadcast_to(top + (bottom - top) * rows, (height, width, 3)).copy()
        for _ in range(3):
            y0, x0 = rng.integers(0, height - 4), rng.integers(0, width - 4)
            h, w = rng.integers(4, height // 2 + 1), rng.integers(4, width // 2 + 1)
            image[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
        images.append(image.round().astype(np.uint8))
    return images


def write_source(dest: Path, dataset: str) -> Path:
    """The originals of ``dataset`` under the new directory ``dest``, as the real set comes:
    LSUN Church as an LMDB export (a folder of PNGs without ``lmdb``), FFHQ as PNGs."""
    images = originals(dataset)
    dest.mkdir(parents=True)
    if dataset == "lsun_church" and importlib.util.find_spec("lmdb") is not None:
        return _write_lmdb(dest, images)
    for i, image in enumerate(images):
        Image.fromarray(image, "RGB").save(dest / f"{i:05d}.png")
    return dest


def _write_lmdb(dest: Path, images: list[np.ndarray]) -> Path:
    """LSUN's layout: one LMDB, keys the images' ids, values WebP files."""
    import lmdb

    env = lmdb.open(str(dest), map_size=64 << 20, subdir=True)
    try:
        with env.begin(write=True) as txn:
            for i, image in enumerate(images):
                buf = io.BytesIO()
                Image.fromarray(image, "RGB").save(buf, format="WEBP", lossless=True)
                txn.put(f"{i * 7919:040x}".encode(), buf.getvalue())
    finally:
        env.close()
    return dest


def zip_path(where: Path, dataset: str, resolution: int) -> Path:
    """Where ``prepared`` puts ``dataset``'s smoke zip at ``resolution`` px under ``where``."""
    return where / f"{dataset}-{resolution}.zip"


def prepared(where: Path, dataset: str, resolution: int) -> Path:
    """The zip of ``dataset``'s smoke originals at ``resolution`` px under ``where``, made by
    ``trainers.data.prepare`` unless it is there already."""
    dest = zip_path(where, dataset, resolution)
    if dest.is_file():
        return dest
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where, prefix=f".{dataset}-originals-") as tmp:
        src = write_source(Path(tmp) / "src", dataset)
        prepare_images(src, dest, resolution, force=True)  # written whole, then renamed
    return dest
