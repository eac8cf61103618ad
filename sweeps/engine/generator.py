"""Tune's search generator around the ``CellSearcher``, restorable from whatever state files a
killed driver left.

Tune restores a search generator from the newest ``search_gen_state-*.json`` and its searcher
from the newest ``searcher-state-*.pkl``. Tune copies both to storage in place every few
seconds, so a driver killed during the copy can leave either empty. Without the first Tune's
restored search counts as finished (its sample budget stays zero: the sweep ends with the
trials Tune had); without the second Tune fails the whole restore and goes on half-restored.
``SweepSearchGenerator`` needs neither file whole. What the first holds is a trial counter
(used in trial tags only), the sample budget (unbounded: the searcher itself answers
FINISHED), a finished flag (never kept: the searcher answers it again) and the experiment
spec, which this generator also keeps itself (``search-experiment.pkl``, written once as the
sweep starts). The ``CellSearcher`` rebuilds itself from its ledger; on a bucket, from the
newest snapshot that reads.
"""

from __future__ import annotations

import fnmatch
import pickle
import sys
from typing import Any

import cloudpickle
import pyarrow.fs
from ray.tune.search import SearchGenerator

from analysis import storage

SPEC = "search-experiment.pkl"


class SweepSearchGenerator(SearchGenerator):
    """``SearchGenerator`` whose restore reads the newest whole state file of each kind and
    falls back to the experiment spec it kept (``SPEC``) when none is whole."""

    def add_configurations(self, experiments: Any) -> None:
        super().add_configurations(experiments)
        fs, root = storage.filesystem(self.searcher.experiment)
        data = cloudpickle.dumps(self._experiment)
        storage.write_atomic(fs, f"{root}/{SPEC}", lambda f: f.write(data))

    def has_checkpoint(self, dirpath: str) -> bool:
        return True  # the spec kept at the start stands in for a lost state

    def restore_from_dir(self, dirpath: str) -> None:
        found = _newest_whole(dirpath, self.CKPT_FILE_TMPL.format("*"), _generator_state)
        if found is not None:
            self.set_state(found[1])
            self._finished = False  # the searcher says it again, unless it lost rows to rerun
        else:  # every one empty or cut short: the budget, flag and counter start over
            self._experiment = self._kept_spec()
            self._total_samples, self._finished, self._counter = sys.maxsize, False, 0
        searcher = self.searcher
        found = _newest_whole(dirpath, searcher.CKPT_FILE_TMPL.format("*"), pickle.loads)
        searcher.restore_snapshot(found[1] if found else None)  # None: rebuilt from its files

    def _kept_spec(self) -> Any:
        fs, root = storage.filesystem(self.searcher.experiment)
        path = f"{root}/{SPEC}"
        if not storage.is_file(fs, path):
            raise RuntimeError(
                f"no readable search_gen_state-*.json and no {SPEC} in {self.searcher.experiment}"
            )
        return cloudpickle.loads(storage.read_bytes(fs, path))


def _generator_state(data: bytes) -> dict[str, Any]:
    """A ``search_gen_state`` as ``SearchGenerator.set_state`` takes it (KeyError if not)."""
    state = cloudpickle.loads(data)
    for key in ("counter", "total_samples", "finished", "experiment"):
        state[key]
    return state


def _newest_whole(dirpath: str, pattern: str, read: Any) -> tuple[str, Any] | None:
    """(name, ``read(bytes)``) of the newest file matching ``pattern`` in the local directory
    ``dirpath`` that reads (Tune's order: newest by name); None if none does."""
    fs = pyarrow.fs.LocalFileSystem()
    names = [
        i.base_name for i in storage.listing(fs, dirpath) if i.type == pyarrow.fs.FileType.File
    ]
    for name in sorted(fnmatch.filter(names, pattern), reverse=True):
        try:
            return name, read(storage.read_bytes(fs, f"{dirpath}/{name}"))
        except Exception:  # noqa: BLE001 (empty, cut short, foreign: an older one may read)
            continue
    return None
