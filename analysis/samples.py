"""The trials' final samples: ``samples.npz`` in a trial's final checkpoint directory.

The trainer writes it beside the final checkpoint's state (``trainers.trial.checkpoint``):
``<trial>/checkpoints/step_<n>/samples.npz`` for a plain run, ``<trial>/checkpoint_<k>/``
for a Tune trial. mog: ``points`` (N x 2), ``centres`` (K x 2), ``std``; image GANs: ``images``
(uint8, 64 x H x W x 3); both ``step``. ``analysis.collect`` copies each trial's newest one
into the dataset (``<dest>/samples/``, ``copy_into``), where ``read`` finds them for the
trials of a loaded frame: figures never read trial directories.
"""

from __future__ import annotations

import hashlib
import io
import posixpath

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from analysis import storage

SAMPLES = "samples.npz"
FOLDER = "samples"  # in a collected dataset
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


def stored_name(sweep: str, trial_dir: str) -> str:
    """The file name a trial's samples get in a collected dataset (``<dest>/samples/``)."""
    key = f"{sweep}/{posixpath.basename(trial_dir.rstrip('/'))}"
    return hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz"


def copy_into(fs: pafs.FileSystem, trial: str, dfs: pafs.FileSystem, dest: str, name: str) -> bool:
    """Copy the newest ``samples.npz`` of the trial directory ``trial`` to ``dest/samples/name``
    (atomically); False when the trial has none."""
    found = _newest(fs, trial)
    if found is None:
        return False
    data = storage.read_bytes(fs, found)
    dfs.create_dir(f"{dest}/{FOLDER}", recursive=True)
    storage.write_atomic(dfs, f"{dest}/{FOLDER}/{name}", lambda f: f.write(data))
    return True


def read(dataset: str, df: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(sweep, trial_id) -> the arrays of its ``samples.npz``, for the trials of ``df`` whose
    samples ``analysis.collect`` copied into the ``dataset``."""
    fs, root = storage.filesystem(dataset)
    trials = df[["sweep", "trial_id", "trial_dir"]].drop_duplicates()
    out: dict[tuple[str, str], dict] = {}
    for sweep, trial_id, trial_dir in trials.itertuples(index=False):
        if not isinstance(trial_dir, str):
            continue
        path = f"{root}/{FOLDER}/{stored_name(str(sweep), trial_dir)}"
        if storage.is_file(fs, path):
            with np.load(io.BytesIO(storage.read_bytes(fs, path))) as f:
                out[(str(sweep), str(trial_id))] = {k: f[k] for k in f.files}
    return out
