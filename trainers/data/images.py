"""Image datasets held in memory as uint8 tensors (N, 3, R, R), batched as floats in [-1, 1].

- ``cifar10``: CIFAR-10 train split, 32 px (torchvision's ``cifar-10-batches-py`` under root).
- ``stl10``: STL-10 unlabeled split, 96 px resized to 48 px (antialiased bilinear); the resized
  array is cached next to the data as ``stl10_unlabeled_<R>.npy``.
- ``folder``: every image in a directory or a .zip, centre-cropped to a square and resized to
  the requested resolution (PIL bicubic). ``ffhq`` and ``lsun_church`` are such zips, made from
  the originals by ``python -m trainers.data prepare`` (``trainers.data.prepare``).
- ``generated``: synthetic coloured blobs made from a seed, for tests and smoke runs.
- ``digits``: scikit-learn's 1,797 handwritten digits (``sklearn.datasets.load_digits``, inside
  the package, no download), 8x8 with 17 grey levels, upsampled to 16 px, one channel.

Missing data raise ``DataMissingError`` naming the path looked at and the command that prepares
it (``python -m trainers.data.images prepare cifar10 --root DIR``); an unreadable image raises
``ImageDataError`` naming the file.
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainers.trial.atomic import atomic_write

DATASETS = ("cifar10", "stl10", "ffhq", "lsun_church", "folder", "generated", "digits")
NATIVE_RESOLUTION = {"cifar10": 32, "stl10": 48, "digits": 16}
CHANNELS = {"digits": 1}  # image channels of a dataset; 3 (RGB) when not listed
DIGITS_LEVELS = 16  # load_digits values are 0..16
# Named image zips (128 px in the paper): $GANSWEEP_<NAME>, else <data root>/<name>-128.zip
NAMED_FOLDERS = {"ffhq": "GANSWEEP_FFHQ", "lsun_church": "GANSWEEP_LSUN_CHURCH"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ENV_ROOT = "GANSWEEP_DATA"


class DataMissingError(FileNotFoundError):
    """The data are not where we looked; the message says how to prepare them."""


class ImageDataError(ValueError):
    """An image file could not be read or decoded."""


@dataclass
class ImageData:
    """uint8 images (N, C, R, R) (C = 3, or 1 for ``digits``) plus the names that identify them (for FID caches)."""

    images: torch.Tensor
    name: str
    split: str

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> ImageData:
        """The same data with the images on ``device``."""
        return ImageData(self.images.to(device), self.name, self.split)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images drawn uniformly with replacement (indices from ``generator``), in [-1, 1]."""
        return self.take(torch.randint(len(self), (n,), generator=generator))

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` in [-1, 1]."""
        return to_float(self.images.index_select(0, idx.to(self.images.device)))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded as when saving a PNG)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def default_root() -> Path:
    """``$GANSWEEP_DATA`` or ``~/.cache/gansweep/data``."""
    return Path(os.environ.get(ENV_ROOT) or Path.home() / ".cache" / "gansweep" / "data")


def prepare_command(name: str, root: Path) -> str:
    return f"python -m trainers.data.images prepare {name} --root {root}"


def require(
    name: str, path: str | os.PathLike | None = None, resolution: int | None = None
) -> Path | None:
    """Where ``load`` would read dataset ``name`` from, checked without reading it: raises
    ``DataMissingError`` (the path looked at, how to prepare it) when it is not there. None for
    generated data. Sweep drivers call this before any trial starts."""
    if name == "cifar10":
        return _cifar10_dir(Path(path) if path else default_root())
    if name == "stl10":
        return _stl10_source(Path(path) if path else default_root(), resolution or 48)
    if name == "folder":
        if not path:
            raise DataMissingError("dataset 'folder' needs a path (config key 'data_path')")
        return _folder_path(path)
    if name in NAMED_FOLDERS:
        return _named_path(name, path, resolution or 128)
    if name == "generated":
        return None
    if name == "digits":
        _sklearn_digits()
        return None
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def load(
    name: str,
    path: str | os.PathLike | None = None,
    resolution: int | None = None,
    seed: int = 0,
    size: int = 1024,
) -> ImageData:
    """Dataset ``name``: ``path`` is the data root (cifar10, stl10) or the folder/zip (folder)."""
    if name == "cifar10":
        return cifar10(Path(path) if path else default_root())
    if name == "stl10":
        return stl10(Path(path) if path else default_root(), resolution or 48)
    if name == "folder":
        if not path:
            raise DataMissingError("dataset 'folder' needs a path (config key 'data_path')")
        return folder(path, resolution or 32)
    if name in NAMED_FOLDERS:
        return named_folder(name, path, resolution or 128)
    if name == "generated":
        return generated(seed, size, resolution or 32)
    if name == "digits":
        return digits(resolution or NATIVE_RESOLUTION["digits"])
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def cifar10(root: Path) -> ImageData:
    """CIFAR-10 train split (50,000 images, 32 px)."""
    from torchvision.datasets import CIFAR10

    where = _cifar10_dir(root)
    try:
        ds = CIFAR10(str(root), train=True, download=False)
    except RuntimeError as e:
        raise ImageDataError(
            f"CIFAR-10 under {where} is incomplete or corrupt ({e}); "
            f"remove it and run `{prepare_command('cifar10', root)}`"
        ) from e
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, "cifar10", "train")


def _cifar10_dir(root: Path) -> Path:
    where = root / "cifar-10-batches-py"
    if not where.is_dir():
        raise DataMissingError(
            f"CIFAR-10 not found: looked for {where}. Prepare it (online) with "
            f"`{prepare_command('cifar10', root)}`, or point config key 'data_path' "
            f"(or ${ENV_ROOT}) to the directory that holds cifar-10-batches-py"
        )
    return where


def _stl10_source(root: Path, resolution: int) -> Path:
    """The resized cache if present, else the original binary (DataMissingError if neither)."""
    cached = root / f"stl10_unlabeled_{resolution}.npy"
    if cached.is_file():
        return cached
    where = root / "stl10_binary" / "unlabeled_X.bin"
    if not where.is_file():
        raise DataMissingError(
            f"STL-10 not found: looked for {where} (and {cached}). Prepare it (online) with "
            f"`{prepare_command('stl10', root)}`, or point config key 'data_path' "
            f"(or ${ENV_ROOT}) to the directory that holds stl10_binary"
        )
    return where


def stl10(root: Path, resolution: int = 48) -> ImageData:
    """STL-10 unlabeled split (100,000 images), resized from 96 px to ``resolution``."""
    source = _stl10_source(root, resolution)
    if source.suffix == ".npy":
        return ImageData(torch.from_numpy(np.load(source)), "stl10", "unlabeled")
    from torchvision.datasets import STL10

    where, cached = source, root / f"stl10_unlabeled_{resolution}.npy"
    try:
        ds = STL10(str(root), split="unlabeled", download=False)
    except RuntimeError as e:
        raise ImageDataError(f"STL-10 under {where} is incomplete or corrupt ({e})") from e
    images = resize(torch.from_numpy(ds.data), resolution)
    _save_npy_atomic(cached, images.numpy())
    return ImageData(images, "stl10", "unlabeled")


def resize(images: torch.Tensor, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, R, R), antialiased bilinear, in chunks."""
    out = []
    for part in images.split(chunk):
        x = F.interpolate(
            part.float(),
            size=(resolution, resolution),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def named_folder(name: str, path: str | os.PathLike | None, resolution: int) -> ImageData:
    """FFHQ or LSUN Church as an image folder/zip: ``path``, else ``$GANSWEEP_FFHQ`` (or
    ``$GANSWEEP_LSUN_CHURCH``), else ``<data root>/<name>-128.zip``."""
    where = _named_path(name, path, resolution)
    data = folder(where, resolution)
    return ImageData(data.images, f"{name}-{resolution}-{len(data.images)}", "all")


def _named_path(name: str, path: str | os.PathLike | None, resolution: int) -> Path:
    env = NAMED_FOLDERS[name]
    where = Path(path or os.environ.get(env) or default_root() / f"{name}-128.zip")
    if not where.exists():
        dest = where if where.suffix == ".zip" else "DEST.zip"
        raise DataMissingError(
            f"{name} not found: looked for {where}. Make a .zip of {resolution} px images from the "
            f"originals (an image folder, a zip or an LSUN LMDB directory) with `python -m "
            f"trainers.data prepare SRC {dest} --resolution {resolution}`, then set ${env} or "
            f"config key 'data_path' to it"
        )
    return where


def folder(path: str | os.PathLike, resolution: int) -> ImageData:
    """All images of a directory (recursively) or a .zip, sorted by name, as R x R RGB."""
    path = _folder_path(path)
    arrays = [decode_image(blob, label, resolution) for label, blob in _image_files(path)]
    if not arrays:
        raise DataMissingError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {path}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, f"folder-{path.stem}-{len(arrays)}", "all")


def _folder_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataMissingError(
            f"image folder not found: looked for {path}. Put the images there (a directory or a "
            ".zip of .png/.jpg files), or point config key 'data_path' to them"
        )
    return path


def _image_files(path: Path):
    """(label, bytes) of each image file, sorted by name."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_EXTENSIONS))
            for n in names:
                yield f"{path}:{n}", z.read(n)
        return
    if not path.is_dir():
        raise ImageDataError(f"{path} is neither a directory nor a zip file")
    for f in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        yield str(f), f.read_bytes()


def decode_image(blob: bytes, label: str, resolution: int) -> np.ndarray:
    """Decode one image to uint8 (R, R, 3): centre crop to a square, bicubic resize (the rule
    ``trainers.data.prepare`` applies too). Raises ``ImageDataError`` naming ``label``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as img:
            img = img.convert("RGB")
            w, h = img.size
            s = min(w, h)
            if (w, h) != (s, s):
                left, top = (w - s) // 2, (h - s) // 2
                img = img.crop((left, top, left + s, top + s))
            if s != resolution:
                img = img.resize((resolution, resolution), Image.BICUBIC)
            return np.asarray(img, dtype=np.uint8)
    except Exception as e:  # PIL raises many kinds on bad input
        raise ImageDataError(f"cannot read image {label}: {type(e).__name__}: {e}") from e


def generated(seed: int, size: int = 1024, resolution: int = 32, blobs: int = 3) -> ImageData:
    """``size`` images of soft coloured blobs on a plain background, fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    img = torch.rand(size, 3, 1, 1, generator=g).expand(size, 3, resolution, resolution)
    for _ in range(blobs):
        centre = torch.rand(size, 2, 1, 1, generator=g)
        radius = 0.08 + 0.17 * torch.rand(size, 1, 1, generator=g)
        colour = torch.rand(size, 3, 1, 1, generator=g)
        d2 = (xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2
        mask = torch.exp(-d2 / (2 * radius**2)).unsqueeze(1)
        img = img * (1 - mask) + colour * mask
    images = (img * 255).round().clamp(0, 255).to(torch.uint8)
    return ImageData(images, f"generated-s{seed}-n{size}", "all")


def _sklearn_digits():
    """``sklearn.datasets.load_digits`` (DataMissingError naming scikit-learn if it is absent)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataMissingError(
            "dataset 'digits' needs the package scikit-learn (sklearn.datasets.load_digits), "
            f"which is not installed ({e}); install it with `pip install scikit-learn`"
        ) from e
    return load_digits


def digits_arrays(resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as uint8 images (1797, 1, R, R) and int64 labels (1797,).

    The 17 grey levels (0 background .. 16 ink) are scaled to 0..255, then upsampled from 8 px
    by bilinear interpolation (``align_corners=False``) and rounded: fixed, no randomness.
    """
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"digits resolution={resolution!r}: allowed a power of two >= 8")
    bunch = _sklearn_digits()()
    x = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1) * (255.0 / DIGITS_LEVELS)
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8).contiguous()
    return images, torch.from_numpy(bunch.target.astype(np.int64))


def digits(resolution: int = 16) -> ImageData:
    """The digits data set (all 1,797 images, one split "all"), one channel."""
    return ImageData(digits_arrays(resolution)[0], f"digits-{resolution}", "all")


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def prepare(name: str, root: Path) -> None:
    """Download ``name`` (cifar10 or stl10) into ``root`` with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10, STL10

    root.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        CIFAR10(str(root), train=True, download=True)
    elif name == "stl10":
        STL10(str(root), split="unlabeled", download=True)
        stl10(root)
    else:
        raise ValueError(f"cannot prepare {name!r}; allowed: cifar10, stl10")
    print(f"{name} ready under {root}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainers.data.images")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download a dataset (needs internet)")
    p.add_argument("name", choices=("cifar10", "stl10"))
    p.add_argument("--root", type=Path, default=None, help=f"default ${ENV_ROOT} or ~/.cache")
    args = parser.parse_args(argv)
    prepare(args.name, args.root or default_root())


if __name__ == "__main__":
    main()
