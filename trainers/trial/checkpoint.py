"""Checkpoint directories written atomically: ``<root>/step_<n>/state.pt``.

The final checkpoint of a trial that did not diverge also holds ``samples.npz``: the experiment's
final samples (``Experiment.final_samples``), which analysis draws its sample figures from.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from trainers.trial.atomic import atomic_write

STATE = "state.pt"
PREFIX = "step_"
SAMPLES = "samples.npz"


def write(payload: dict[str, Any], parent: str | os.PathLike) -> Path:
    """Write ``payload`` into a new directory under ``parent``; return the directory."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="ckpt-", dir=parent))
    with atomic_write(directory / STATE, "wb", sync=False) as f:
        torch.save(payload, f)
    return directory


def write_samples(directory: str | os.PathLike, arrays: dict[str, Any], step: int) -> Path:
    """``directory/samples.npz`` (compressed): the named arrays and the ``step`` they are from."""
    import numpy as np

    path = Path(directory) / SAMPLES
    with atomic_write(path, "wb", sync=False) as f:
        np.savez_compressed(
            f, step=np.asarray(step), **{k: np.asarray(v) for k, v in arrays.items()}
        )
    return path


def read(directory: str | os.PathLike) -> dict[str, Any]:
    """Load the payload of a checkpoint directory (tensors on the CPU)."""
    path = Path(directory) / STATE
    if not path.is_file():
        raise FileNotFoundError(f"{str(directory)!r} is not a checkpoint: it has no {STATE}")
    return torch.load(path, map_location="cpu", weights_only=True)


def install(directory: Path, root: str | os.PathLike, step: int, keep: int = 2) -> Path:
    """Move a written checkpoint to ``root/step_<step>`` atomically; keep the newest ``keep``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{PREFIX}{step:010d}"
    if target.exists():
        shutil.rmtree(target)
    os.replace(directory, target)
    for old in sorted(root.glob(PREFIX + "*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def step_of(directory: str | os.PathLike) -> int:
    """The training step of a checkpoint installed by ``install``."""
    return int(Path(directory).name[len(PREFIX) :])


def latest(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = [d for d in sorted(root.glob(PREFIX + "*")) if (d / STATE).is_file()]
    return done[-1] if done else None
