"""The digits FID extractor: a small CNN classifier of scikit-learn's digits, trained here.

No published network exists for 16 px digits, so FID on ``digits`` uses the penultimate layer
(64 ReLU features) of a CNN trained deterministically on the digits themselves: a fixed split
(``HELD_OUT`` images, permutation from ``SPLIT_SEED``), init and batch order from ``seed``,
Adam for ``EPOCHS`` epochs, one CPU thread (so the weights do not depend on the thread count).
Its held-out accuracy is kept with the weights (at least 97% is what the tests require).

The weights are cached where FID statistics are (``<cache>/digits_cnn-v1-s<seed>.pt``),
written atomically under a file lock, so concurrent trials train it once and never read a
partial file. Its ``name`` (with ``VERSION``) goes in every row's ``fid_extractor`` and in the
reference statistics' cache key: digits FIDs never mix with Inception or other FIDs. Change
``VERSION`` whenever the network, the data or the training changes.

    G: x (N, 1, 16, 16) in [0, 255] -> Conv 3x3 (1 -> 16), ReLU, max-pool 2 -> Conv 3x3
       (16 -> 32), ReLU, max-pool 2 -> Linear (512 -> 64), ReLU [features] -> Linear (64 -> 10)
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from trainers.data import images as data
from trainers.trial.atomic import atomic_write

NAME = "digits_cnn"
VERSION = 1
RESOLUTION = 16
HELD_OUT = 360  # images kept out of training (20%)
SPLIT_SEED = 0
EPOCHS = 15
BATCH_SIZE = 64
LR = 2e-3
FEATURES = 64


class DigitsCNN(nn.Module):
    """The classifier; ``features`` returns the penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(32 * (RESOLUTION // 4) ** 2, FEATURES)),
                    ("relu3", nn.ReLU()),
                ]
            )
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """uint8-valued floats (N, 1, 16, 16) in [0, 255] -> (N, 64)."""
        return self.body(x / 127.5 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def split(n: int, held_out: int = HELD_OUT, seed: int = SPLIT_SEED) -> tuple[np.ndarray, ...]:
    """(train indices, held-out indices) of ``n`` images: a fixed permutation."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def train(seed: int = 0, epochs: int = EPOCHS) -> tuple[DigitsCNN, float]:
    """The classifier trained from ``seed`` and its held-out accuracy; deterministic."""
    images, labels = data.digits_arrays(RESOLUTION)
    x, y = images.float(), labels
    tr, te = (torch.from_numpy(i) for i in split(len(x)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        model.train()
        for _ in range(epochs):
            for idx in tr[torch.randperm(len(tr), generator=gen)].split(BATCH_SIZE):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x[te]).argmax(1) == y[te]).float().mean())
    finally:
        torch.set_num_threads(threads)
    return model, accuracy


def weights_path(cache: Path, seed: int = 0) -> Path:
    return Path(cache) / f"{NAME}-v{VERSION}-s{seed}.pt"


def load_or_train(cache: Path, seed: int = 0, epochs: int = EPOCHS) -> tuple[DigitsCNN, float]:
    """The cached classifier of ``seed`` (trained and cached atomically, under a lock, when
    missing) and its held-out accuracy."""
    path = weights_path(cache, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        with FileLock(str(path) + ".lock"):
            if not path.is_file():
                model, accuracy = train(seed, epochs)
                blob: dict[str, Any] = {
                    "state": model.state_dict(),
                    "accuracy": accuracy,
                    "version": VERSION,
                    "epochs": epochs,
                }
                with atomic_write(path, "wb") as f:
                    torch.save(blob, f)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = DigitsCNN()
    model.load_state_dict(blob["state"])
    return model.eval(), float(blob["accuracy"])


class DigitsExtractor:
    """``trainers.metrics.fid.Extractor`` over the classifier's penultimate features; images
    keep their 16 px (no resize)."""

    def __init__(self, model: DigitsCNN, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.name = f"{NAME}-v{VERSION}-s{seed}"

    def resize(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (RESOLUTION, RESOLUTION) or image.shape[2] != 1:
            raise ValueError(
                f"the digits FID extractor takes 16 x 16 x 1 images, got {image.shape}"
            )
        return image.astype(np.float32)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.features(batch.float().to(self.device))


def extractor(cache: Path, device: torch.device | str = "cpu", seed: int = 0) -> DigitsExtractor:
    """The digits extractor with the cached (or newly trained) weights of ``seed``."""
    return DigitsExtractor(load_or_train(cache, seed)[0], seed, device)
