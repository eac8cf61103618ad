"""FID and KID with clean-fid: in-memory generator -> features -> Frechet distance.

Images go through clean-fid's "clean" pipeline: uint8 values, each image resized to 299x299 by
PIL bicubic in float (``cleanfid.resize.build_resizer("clean")``), then the torchscript
Inception of clean-fid (``InceptionV3W``); ``frechet_distance`` and ``kernel_distance`` are
clean-fid's. Generated images are quantised to uint8 values first, as if saved as PNG.

Reference statistics are computed once per (dataset, resolution, split, mode, extractor, count)
and cached as ``<cache>/<key>.npz``, written atomically (temporary file + rename) under a file
lock, so concurrent trials compute them once and never read a partial file. clean-fid's
published CIFAR-10 statistics (``cifar10_clean_train_32.npz``) are used when present in the
cache or clean-fid's stats folder (``python -m trainers.metrics.fid fetch`` gets them).

The feature extractor is injectable: anything with ``name``, ``resize`` (one HxWx3 float image
-> resized image) and ``__call__`` (float (N, 3, H, W) in [0, 255] -> (N, F) features), e.g.
``RandomConvExtractor`` for tests and CPU smoke runs, and ``digits_cnn``
(``trainers.metrics.digits_cnn``), a classifier trained on the ``digits`` data set, whose
weights are cached beside the statistics.
"""

from __future__ import annotations

import argparse
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from filelock import FileLock

from trainers.trial.atomic import atomic_write

MODE = "clean"
INCEPTION_NAME = "inception_v3"
DIGITS_NAME = "digits_cnn"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE
)
CLEANFID_WEIGHTS_DIR = Path("/tmp")  # where clean-fid itself downloads the weights
STATS_URL = "https://www.cs.cmu.edu/~clean-fid/stats/"
ENV_WEIGHTS = "GANSWEEP_INCEPTION"
ENV_CACHE = "GANSWEEP_FID_CACHE"
KID_FEATURES = 5000  # reference features kept for KID


class WeightsMissingError(FileNotFoundError):
    """The Inception weights are not where we looked; the message says what to do."""


class Extractor(Protocol):
    name: str

    def resize(self, image: np.ndarray) -> np.ndarray: ...

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


# -- extractors -------------------------------------------------------------------------------


class InceptionExtractor:
    """clean-fid's torchscript Inception (2048 pool features) behind the "clean" resizer."""

    name = INCEPTION_NAME

    def __init__(self, path: Path, device: torch.device | str = "cpu") -> None:
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        self.device = torch.device(device)
        self.model = InceptionV3W(str(path.parent), download=False).to(self.device).eval()
        self.resize = build_resizer(MODE)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).float()


class RandomConvExtractor:
    """A small deterministic extractor: fixed random 5x5 conv, ReLU, mean and max pooling.

    No resizing (images keep their resolution); ``2 * channels`` features. For tests and CPU
    smoke runs; its FIDs are not comparable with Inception FIDs.
    """

    def __init__(self, channels: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(channels, 3, 5, 5, generator=g) / (255.0 * 75**0.5)
        self.bias = torch.randn(channels, generator=g) * 0.1
        self.name = f"randconv{channels}-s{seed}"

    def resize(self, image: np.ndarray) -> np.ndarray:
        return image.astype(np.float32)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().cpu()
        h = torch.relu(torch.nn.functional.conv2d(x, self.weight, self.bias, stride=2))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


def find_inception(path: str | os.PathLike | None = None) -> Path:
    """The weights file: ``path`` (config), else ``$GANSWEEP_INCEPTION``, else clean-fid's cache.

    A directory means ``<dir>/inception-2015-12-05.pt``. Raises WeightsMissingError.
    """
    given = path or os.environ.get(ENV_WEIGHTS)
    candidate = Path(given) if given else CLEANFID_WEIGHTS_DIR / INCEPTION_FILE
    if candidate.is_dir():
        candidate = candidate / INCEPTION_FILE
    if candidate.is_file() and candidate.name == INCEPTION_FILE:
        return candidate
    problem = "is not named " + INCEPTION_FILE if candidate.is_file() else "does not exist"
    raise WeightsMissingError(
        f"Inception weights for FID not found: {candidate} {problem}. Download {INCEPTION_URL} "
        f"(about 92 MB; `python -m trainers.metrics.fid fetch` does it on a machine with "
        f"internet) and put it at {CLEANFID_WEIGHTS_DIR / INCEPTION_FILE} (clean-fid's cache), "
        f"or anywhere as {INCEPTION_FILE} and give its path in config key 'fid_inception_path' "
        f"or ${ENV_WEIGHTS}. Tests and smoke runs can use fid_extractor 'randconv' instead"
    )


def build_extractor(
    name: str,
    device: torch.device | str = "cpu",
    weights: str | os.PathLike | None = None,
    cache: Path | None = None,
) -> Extractor:
    """``inception_v3`` (needs the weights, see ``find_inception``), ``randconv`` or
    ``digits_cnn`` (weights under ``cache``, default ``default_cache()``, trained if absent)."""
    if name == INCEPTION_NAME:
        return InceptionExtractor(find_inception(weights), device)
    if name == "randconv":
        return RandomConvExtractor()
    if name == DIGITS_NAME:
        from trainers.metrics import digits_cnn

        return digits_cnn.extractor(cache or default_cache(), device)
    raise ValueError(
        f"unknown FID extractor {name!r}; allowed: {INCEPTION_NAME}, randconv, {DIGITS_NAME}"
    )


# -- features and statistics ------------------------------------------------------------------


def features(batches: Iterable[torch.Tensor], extractor: Extractor, workers: int = 1) -> np.ndarray:
    """Features of uint8-valued image batches (N, 3, H, W); each image resized by the extractor."""
    out = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for batch in batches:
            hwc = batch.detach().cpu().permute(0, 2, 3, 1).numpy()
            resized = list(pool.map(extractor.resize, hwc))
            x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
            out.append(extractor(x).cpu().double().numpy())
    return np.concatenate(out)


def generator_batches(
    sample: Callable[[torch.Tensor], torch.Tensor],
    num: int,
    z_dim: int,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    rows: Callable[[torch.Tensor], torch.Tensor] = lambda z: z,
) -> Iterable[torch.Tensor]:
    """Batches of ``sample(z)`` (images in [-1, 1]) as uint8 values. The ``num`` latents are
    fixed by ``seed`` and drawn at once, so they do not depend on ``batch_size``; ``rows``
    selects the share of them to generate (a data-parallel rank's: ``distributed.local_rows``)."""
    latents = rows(torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed)))
    for z in latents.split(batch_size):
        with torch.no_grad():
            yield (sample(z.to(device)) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@dataclass
class Statistics:
    """Mean and covariance of features, plus up to KID_FEATURES features for KID."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int
    feats: np.ndarray | None = None

    @classmethod
    def of(cls, feats: np.ndarray, keep: int = KID_FEATURES) -> Statistics:
        feats = np.asarray(feats, dtype=np.float64)
        kept = feats[:: max(1, len(feats) // keep)][:keep] if keep else None
        return cls(feats.mean(0), np.cov(feats, rowvar=False), len(feats), kept)

    @classmethod
    def from_sums(cls, num: int, total: np.ndarray, outer: np.ndarray) -> Statistics:
        """From the number of features, their sum and the sum of their outer products (what
        data-parallel ranks add up instead of gathering features): unbiased covariance."""
        mu = total / num
        return cls(mu, (outer - num * np.outer(mu, mu)) / (num - 1), num)

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        with atomic_write(path, "wb") as f:
            extra = {} if self.feats is None else {"feats": self.feats.astype(np.float32)}
            np.savez(f, mu=self.mu, sigma=self.sigma, num=self.num, **extra)

    @classmethod
    def load(cls, path: Path) -> Statistics:
        with np.load(path) as z:
            feats = z["feats"].astype(np.float64) if "feats" in z else None
            num = int(z["num"]) if "num" in z else -1
            return cls(z["mu"].astype(np.float64), z["sigma"].astype(np.float64), num, feats)


def frechet(a: Statistics, b: Statistics) -> float:
    """clean-fid's Frechet distance between two feature Gaussians."""
    import warnings

    from cleanfid.fid import frechet_distance  # clean-fid imports torchvision: only when used

    # with fewer samples than feature dimensions (small evaluations, smokes) the covariances
    # are singular (or nearly) and scipy's sqrtm says so each time; clean-fid's result stands
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Matrix is (singular|ill-conditioned)")
        return float(frechet_distance(a.mu, a.sigma, b.mu, b.sigma))


def kid(feats: np.ndarray, reference: Statistics, seed: int = 0) -> float | None:
    """clean-fid's KID (polynomial kernel MMD) from the same features; None without reference
    features or with fewer than 2 samples."""
    from cleanfid.fid import kernel_distance

    if reference.feats is None or min(len(feats), len(reference.feats)) < 2:
        return None
    state = np.random.get_state()  # kernel_distance draws subsets from numpy's global RNG
    try:
        np.random.seed(seed)
        return kernel_distance(np.asarray(feats), reference.feats)
    finally:
        np.random.set_state(state)


# -- reference statistics ---------------------------------------------------------------------


def default_cache() -> Path:
    """``$GANSWEEP_FID_CACHE`` or ``~/.cache/gansweep/fid``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "gansweep" / "fid")


def reference_key(
    dataset: str, resolution: int, split: str, extractor: str, num: int | None
) -> str:
    """The cache key (file stem) of a reference: what FIDs are comparable under."""
    tag = "all" if num is None else str(num)
    return f"{dataset}_{resolution}px_{split}_{MODE}_{extractor}_n{tag}".lower()


def published_path(
    dataset: str, resolution: int, split: str, extractor: str, cache: Path
) -> Path | None:
    """clean-fid's published statistics file, if it is on disk (cache dir or clean-fid's)."""
    if extractor != INCEPTION_NAME:
        return None
    import cleanfid

    name = f"{dataset}_{MODE}_{split}_{resolution}.npz".lower()
    for folder in (cache, Path(cleanfid.__file__).parent / "stats"):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class Reference:
    """Reference statistics and the label that goes in the ``fid_ref`` column."""

    stats: Statistics
    label: str


def reference_statistics(
    cache: Path,
    dataset: str,
    resolution: int,
    split: str,
    extractor: Extractor,
    images: Callable[[], torch.Tensor],
    num: int | None = None,
    batch_size: int = 200,
    workers: int = 1,
    published: bool = True,
) -> Reference:
    """Cached statistics of the real images; computed (once, under a lock) when missing.

    ``images()`` returns the uint8 (N, 3, R, R) images and is called only on a cache miss;
    ``num`` takes the first ``num`` of them (None: all, and then clean-fid's published
    statistics are used where present).
    """
    cache = Path(cache)
    if published and num is None:
        path = published_path(dataset, resolution, split, extractor.name, cache)
        if path is not None:
            return Reference(Statistics.load(path), f"{path.stem} (clean-fid published)")
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / (reference_key(dataset, resolution, split, extractor.name, num) + ".npz")
    if not path.is_file():
        with FileLock(str(path) + ".lock"):
            if not path.is_file():
                real = images()
                real = real if num is None else real[:num]
                feats = features(real.split(batch_size), extractor, workers)
                Statistics.of(feats).save(path)
    stats = Statistics.load(path)
    return Reference(stats, f"{dataset}_{resolution}px_{split}_n{stats.num}")


# -- download (a machine with internet) -------------------------------------------------------


def _download(url: str, target: Path, timeout: float = 60.0) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return
        with (
            urllib.request.urlopen(url, timeout=timeout) as r,
            atomic_write(target, "wb", sync=False) as f,
        ):
            shutil.copyfileobj(r, f)


def fetch(cache: Path, weights: Path) -> None:
    """Download the Inception weights and clean-fid's CIFAR-10 train statistics, atomically."""
    _download(INCEPTION_URL, weights)
    print(f"Inception weights: {weights}")
    name = "cifar10_clean_train_32.npz"
    _download(STATS_URL + name, cache / name)
    print(f"CIFAR-10 statistics: {cache / name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainers.metrics.fid")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="download Inception weights and CIFAR-10 statistics")
    p.add_argument("--cache", type=Path, default=None, help=f"default ${ENV_CACHE} or ~/.cache")
    p.add_argument("--weights", type=Path, default=CLEANFID_WEIGHTS_DIR / INCEPTION_FILE)
    args = parser.parse_args(argv)
    fetch(args.cache or default_cache(), args.weights)


if __name__ == "__main__":
    main()
