"""What survives a killed driver: the searcher's ledger and Tune's trials as last recorded.

The searcher writes every suggestion and every seed's result to an append-only ledger
(``searcher-ledger.jsonl`` in the experiment directory, fsynced) *before* Tune acts on it, and
keeps each cell's Optuna study in a journal file beside it. Tune's experiment state is written
every few seconds and so may lag behind; on restore the searcher compares the two
(``sweeps.engine.searcher.CellSearcher``) and suggests again whatever Tune lost.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pickle
import posixpath
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.fs

from analysis import storage

LEDGER = "searcher-ledger.jsonl"
JOURNAL = "optuna-journal.log"
STATE_GLOB = "experiment_state-*.json"


class Ledger:
    """Append-only JSON lines; each append is on disk (fsync) before it returns. With no
    ``path`` (a bucket storage) the events are kept in memory and pickled with the searcher."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []

    def load(self) -> list[dict[str, Any]]:
        """Read the events on disk (a torn last line, from a kill mid-write, is dropped)."""
        if self.path is None or not os.path.exists(self.path):
            return self.events
        with open(self.path) as f:
            text = f.read()
        events = []
        for line in text.split("\n"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # only the last line can be torn; an empty line also lands here
        self.events = events
        return events

    def append(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass(frozen=True)
class TuneTrial:
    """One trial as Tune's newest experiment state records it."""

    trial_id: str
    config: dict[str, Any]
    status: str  # PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    last_result: dict[str, Any]


def states(experiment: str) -> list[str]:
    """The paths of an experiment's ``experiment_state-*.json`` files, newest first (local or
    URI; Tune's own rule: newest by name)."""
    fs, root = storage.filesystem(experiment)
    infos = storage.listing(fs, root)
    names = [i.base_name for i in infos if i.type == pyarrow.fs.FileType.File]
    return [f"{root}/{n}" for n in sorted(fnmatch.filter(names, STATE_GLOB), reverse=True)]


def newest_state(experiment: str) -> str | None:
    """The path of the newest ``experiment_state-*.json`` of an experiment (None: none yet)."""
    found = states(experiment)
    return found[0] if found else None


def has_state(experiment: str) -> bool:
    """Whether Tune has recorded an experiment state there that it can read (what
    ``Tuner.restore`` needs): a driver killed while Tune wrote its first one leaves none."""
    fs, _ = storage.filesystem(experiment)
    return any(_whole(fs, path, posixpath.basename(path)) for path in states(experiment))


TORN = ".torn"
# what Tune restores from, each read as Tune reads it: the newest file of each family
SEARCH_STATE_GLOBS = ("search_gen_state-*.json", "searcher-state-*.pkl")


def _whole(fs: pyarrow.fs.FileSystem, path: str, name: str) -> bool:
    """Whether Tune can read this state file (one a killed driver left empty or cut short
    cannot be)."""
    import cloudpickle
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    try:
        data = storage.read_bytes(fs, path)
        if fnmatch.fnmatch(name, STATE_GLOB):
            _trials_of(_loads_with_cloudpickle(data))
        elif fnmatch.fnmatch(name, "search_gen_state-*"):
            cloudpickle.loads(data)
        else:  # our searcher's checkpoint: CellSearcher.save
            pickle.loads(data)
    except Exception:  # noqa: BLE001 (any failure to read is a torn file)
        return False
    return True


def set_aside_torn_states(experiment: str) -> list[str]:
    """Rename each newest state file that Tune cannot read to ``<name>.torn`` (a driver killed
    while Tune wrote its experiment state, or uploaded it, leaves files empty or cut short), so
    that ``Tuner.restore``, which reads only the newest of each, restores from the newest whole
    one: for the experiment state, the one ``tune_trials`` reads, so the searcher and Tune agree
    on which trials exist. The oldest experiment state is never renamed. Returns the paths set
    aside."""
    fs, root = storage.filesystem(experiment)
    names = [i.base_name for i in storage.listing(fs, root) if i.type == pyarrow.fs.FileType.File]
    aside = []
    for glob in (STATE_GLOB, *SEARCH_STATE_GLOBS):
        found = sorted(fnmatch.filter(names, glob), reverse=True)
        # the only experiment state, torn, means no state (``has_state``); a searcher state
        # may all go: Tune then restores without it and the searcher rebuilds from the ledger
        for name in found[:-1] if glob == STATE_GLOB else found:
            path = f"{root}/{name}"
            if _whole(fs, path, name):
                break
            fs.move(path, path + TORN)
            aside.append(path)
    return aside


def has_final_rows(experiment: str, trial_id: str) -> bool:
    """Whether the trial's ``result.json`` on storage ends with its final report (diverged,
    stopped by the experiment, or every step done). A trial that ended after Tune's last
    experiment state may have lost its rows with the driver (they are synced from the driver),
    or may not: only this tells which. Read on a restore, for such trials only."""
    from analysis.collect import is_final_report
    from analysis.packed import unpack

    fs, root = storage.filesystem(experiment)
    for info in storage.listing(fs, root):
        if info.type != pyarrow.fs.FileType.Directory or not info.base_name.endswith(
            f"_{trial_id}"
        ):
            continue
        path = f"{info.path}/result.json"
        if not storage.is_file(fs, path):
            continue
        rows = []
        for line in storage.read_bytes(fs, path).decode().split("\n"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by the kill, or an empty one
        if rows and isinstance(rows[-1], dict) and is_final_report(_with_steps(unpack(rows[-1]))):
            return True
    return False


def _with_steps(row: dict[str, Any]) -> dict[str, Any]:
    """A raw Tune row with the trainer's ``steps``: the report has ``step`` only, the number of
    steps is in the trial's config (Tune writes it in each row), resolved as the trainer does."""
    config = row.get("config")
    if "steps" in row or not isinstance(config, dict):
        return row
    from sweeps.engine import trials
    from trainers import experiments

    try:
        steps = experiments.resolve_config(trials.trainer_config(config))["steps"]
    except Exception:  # not a sweep trial's config, or one this code cannot resolve
        return row
    return {**row, "steps": steps}


def tune_trials(experiment: str, attempts: int = 5, wait_s: float = 0.2) -> dict[str, TuneTrial]:
    """Every trial of Tune's newest experiment state, by trial id (empty if there is none).

    Tune rewrites its state file in place while a sweep runs, so a read can find it empty or
    cut short: such a read is retried ``attempts`` times, ``wait_s`` apart, and then the next
    older state is read (on a resume, the one Tune restored from)."""
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    fs, _ = storage.filesystem(experiment)
    for n, path in enumerate(states(experiment)):
        for _ in range(attempts if n == 0 else 1):
            try:
                state = _loads_with_cloudpickle(storage.read_bytes(fs, path))  # as Tune reads it
                return _trials_of(state)
            except (ValueError, KeyError, TypeError):  # JSONDecodeError is a ValueError
                time.sleep(wait_s)
    return {}


def _trials_of(state: dict[str, Any]) -> dict[str, TuneTrial]:
    from ray.tune.experiment.trial import Trial

    out = {}
    for trial_json, metadata_json in state["trial_data"]:
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(metadata_json)
        out[trial.trial_id] = TuneTrial(
            trial.trial_id, dict(trial.config), trial.status, dict(trial.last_result or {})
        )
    return out
