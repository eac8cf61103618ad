"""The trials' final samples: ``samples.npz`` in a trial's final checkpoint directory.

The trainer writes it beside the final checkpoint's state (``trainers.trial.checkpoint``):
``<trial>/checkpoints/step_<n>/samples.npz`` for a plain run, ``<trial>/checkpoint_<k>/``
for a Tune trial. mog: ``points`` (N x 2), ``centres`` (K x 2), ``std``; image GANs: ``images``
(uint8, 64 x H x W x 3); both ``step``. ``read`` finds them for the trials of a collected frame
(by their ``trial_dir`` under the sources they were collected from), through
``analysis.storage``.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from analysis import storage

SAMPLES = "samples.npz"
CHECKPOINT_DIRS = ("checkpoint_", "step_")  # Tune's, the plain runner's (under checkpoints/)


def _newest(fs: pafs.FileSystem, trial: str) -> str | None:
    """The newest checkpoint directory of a trial that holds samples."""
    dirs = [i for i in storage.listing(fs, trial) if i.type == pafs.FileType.Directory]
    dirs += [
        i
        for i in storage.listing(fs, posixpath.join(trial, "checkpoints"))
        if i.type == pafs.FileType.Directory
    ]
    found = [
        i.path
        for i in dirs
        if i.base_name.startswith(CHECKPOINT_DIRS)
        and storage.is_file(fs, posixpath.join(i.path, SAMPLES))
    ]
    return posixpath.join(max(found, key=posixpath.basename), SAMPLES) if found else None


def _trial_paths(source: str, trial_dir: str) -> list[str]:
    _, root = storage.filesystem(source)
    paths = [posixpath.join(root, trial_dir)]
    if posixpath.basename(root) == trial_dir:  # the source was the trial directory itself
        paths.append(root)
    return paths


def read(sources: str | Iterable[str], df: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(sweep, trial_id) -> the arrays of its ``samples.npz``, for the trials of ``df`` that
    have one under one of ``sources`` (the locations ``df`` was collected from)."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    trials = df[["sweep", "trial_id", "trial_dir"]].drop_duplicates()
    out: dict[tuple[str, str], dict] = {}
    for source in sources:
        fs, _ = storage.filesystem(source)
        for sweep, trial_id, trial_dir in trials.itertuples(index=False):
            key = (str(sweep), str(trial_id))
            if key in out or not isinstance(trial_dir, str):
                continue
            for path in _trial_paths(source, trial_dir):
                found = _newest(fs, path)
                if found is not None:
                    with np.load(io.BytesIO(storage.read_bytes(fs, found))) as f:
                        out[key] = {k: f[k] for k in f.files}
                    break
    return out
