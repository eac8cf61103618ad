"""Tune experiment directories (or plain-process runs) -> one parquet dataset, incrementally.

The dataset is a directory of a few parquet files and a ``_manifest.json`` recording what each
trial's source files looked like when collected and which file holds its rows
(``analysis.dataset``). A trial whose files have not changed is skipped; a changed one is re-read
and merged with the rows already collected (key ``(sweep, trial_id, iteration)``, the newer row
wins), so collecting again, also while a sweep runs, adds rows and never duplicates or drops one.
New files are written under new names and the manifest is replaced last, so a reader sees the
dataset before a collect or after it, never partly.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis import dataset, packed, samples, schema, storage

TUNE_RESULT, TUNE_PARAMS = "result.json", "params.json"
PLAIN_RESULT, PLAIN_TRIAL = "results.jsonl", "trial.json"
ERROR_FILES = ("error.txt", "error.pkl")
MANIFEST = dataset.MANIFEST
COMMIT_TRIALS = 1000  # changed trials committed together
SWEEP_RECORD = "sweep.json"  # the engine's record of a sweep, beside its trials
# the engine's list of trials whose step size was stopped early (early stopping), beside them
PRUNED_RECORD = "pruned.json"
RECORDS = "sweeps"  # where collect keeps each sweep's record in the dataset
MAX_DEPTH = 4
CORE_CONFIG = ("experiment", "model", "dataset", "optimizer", "granularity")
CORE_CONFIG += ("lr_d", "lr_g", "seed", "steps")
CELL_KEY = "sweep_cell"
# Tune's bookkeeping in result.json that analysis does not keep (config comes from params.json)
TUNE_DROP = {
    "config",
    "checkpoint_dir_name",
    "should_checkpoint",
    "done",
    "date",
    "pid",
    "hostname",
    "node_ip",
    "time_this_iter_s",
    "time_since_restore",
    "iterations_since_restore",
    "experiment_tag",
    "trial_id",
    "training_iteration",
}

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Trial:
    """A trial directory found under a source."""

    fs: pafs.FileSystem
    path: str
    runner: str  # "tune" or "plain"
    sweep: str
    rel: str  # the directory's path relative to the source
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (size, mtime ns)

    @property
    def key(self) -> str:
        return f"{self.sweep}/{posixpath.basename(self.path)}"

    @property
    def part(self) -> str:
        return "part-" + hashlib.sha1(self.key.encode()).hexdigest()[:20] + ".parquet"

    def signature(self) -> list[list[Any]]:
        return [[n, *self.files[n]] for n in sorted(self.files)]


@dataclass
class Collected:
    """What ``collect`` did: trials found, trials (re)read, rows in the dataset, where."""

    dest: str
    trials: int = 0
    updated: int = 0
    rows: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def _trial_of(
    fs: pafs.FileSystem, path: str, infos: list[pafs.FileInfo], root: str
) -> Trial | None:
    names = {i.base_name: i for i in infos if i.type == pafs.FileType.File}
    if TUNE_RESULT in names or TUNE_PARAMS in names:
        runner = "tune"
    elif PLAIN_RESULT in names or PLAIN_TRIAL in names:
        runner = "plain"
    else:
        return None
    keep = (TUNE_RESULT, TUNE_PARAMS, PLAIN_RESULT, PLAIN_TRIAL, *ERROR_FILES)
    files = {n: (int(names[n].size or 0), int(names[n].mtime_ns or 0)) for n in keep if n in names}
    parent = posixpath.dirname(path)
    rel = posixpath.relpath(path, root) if path != root else posixpath.basename(path)
    return Trial(fs, path, runner, posixpath.basename(parent) or "-", rel, files)


def find_trials(source: str) -> list[Trial]:
    """Every trial directory under ``source`` (a trial, an experiment, or a tree of them)."""
    fs, root = storage.filesystem(source)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"collect: {source} is not a directory")
    found: list[Trial] = []

    def walk(path: str, depth: int) -> None:
        infos = storage.listing(fs, path)
        trial = _trial_of(fs, path, infos, root)
        if trial is not None:
            found.append(trial)
            return
        if depth >= MAX_DEPTH:
            return
        for i in sorted(infos, key=lambda i: i.path):
            name = i.base_name
            if i.type == pafs.FileType.Directory and not name.startswith((".", "checkpoint")):
                walk(i.path, depth + 1)

    walk(root, 0)
    return found


def _read_text(fs: pafs.FileSystem, path: str) -> str:
    return storage.read_bytes(fs, path).decode("utf-8", errors="replace")


def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    """Complete JSON lines; a last line still being written (no newline, bad JSON) is skipped."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue  # partial last line: the next collect reads it whole
            raise
        if isinstance(row, dict):
            yield row


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """Columns of a trial's config: a sweep trial's is ``{"cell", "study_trial", "stage",
    "trainer"}`` (``sweeps.engine.trials``; an older sweep's has no stage: every trial was a
    tuning one); a plain run's, or a still older sweep's, the trainer config itself."""
    ids: dict[str, Any] = {}
    if isinstance(config.get("trainer"), dict):
        ids = {
            "cell": config.get("cell"),
            "study_trial": config.get("study_trial"),
            "stage": config.get("stage") or "tune",
        }
        config = config["trainer"]
    elif CELL_KEY in config:  # sweeps before the ids moved beside the trainer config
        ids = {"cell": config[CELL_KEY], "study_trial": config.get("sweep_trial"), "stage": "tune"}
        config = {k: v for k, v in config.items() if k not in (CELL_KEY, "sweep_trial")}
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, sort_keys=True)
        out[k if k in CORE_CONFIG else f"config/{k}"] = v
    out["cell"] = ids.get("cell") or config.get("optimizer")
    if ids.get("study_trial") is not None:
        out["study_trial"] = int(ids["study_trial"])
    if ids.get("stage") is not None:
        out["stage"] = ids["stage"]
    return out


def read_trial(trial: Trial) -> pd.DataFrame:
    """The rows of one trial, as reported, with its config and identity columns."""
    rows, ident = trial_rows(trial)
    if not rows:
        return pd.DataFrame([ident]).iloc[:0]
    return pd.DataFrame(rows)


def trial_rows(trial: Trial) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``read_trial`` as plain dicts: the rows (with the identity columns), and the identity
    columns (sweep, trial_id, trial_dir, runner, config) alone."""
    fs, p = trial.fs, trial.path
    if trial.runner == "tune":
        config = {}
        if TUNE_PARAMS in trial.files:
            try:
                config = json.loads(_read_text(fs, f"{p}/{TUNE_PARAMS}"))
            except json.JSONDecodeError:  # cut short by a killed driver: the rows carry it
                config = {}
        text = _read_text(fs, f"{p}/{TUNE_RESULT}") if TUNE_RESULT in trial.files else ""
        raw = [_unpacked(r, f"{p}/{TUNE_RESULT}") for r in _json_lines(text)]
        if not config and raw:
            config = raw[0].get("config") or {}
        trial_id = next((r["trial_id"] for r in raw if r.get("trial_id")), None)
        rows = []
        for n, r in enumerate(raw, start=1):
            row = {k: v for k, v in r.items() if k not in TUNE_DROP}
            row["iteration"] = r.get("training_iteration", n)
            if "timestamp" in r:
                row["timestamp"] = pd.Timestamp(r["timestamp"], unit="s", tz="UTC")
            rows.append(row)
    else:
        meta = {}
        if PLAIN_TRIAL in trial.files:
            meta = json.loads(_read_text(fs, f"{p}/{PLAIN_TRIAL}"))
        config = meta.get("config") or {}
        text = _read_text(fs, f"{p}/{PLAIN_RESULT}") if PLAIN_RESULT in trial.files else ""
        rows = []
        for n, r in enumerate(_json_lines(text), start=1):
            row = dict(r)
            row["iteration"] = n
            row.setdefault("time_total_s", r.get("time_s"))
            row.setdefault("git_commit", meta.get("git_commit"))
            if n == 1 and meta.get("versions"):
                row.setdefault(
                    "versions", ", ".join(f"{k}={v}" for k, v in meta["versions"].items())
                )
            rows.append(row)
        trial_id = None
    ident = {
        "sweep": trial.sweep,
        "trial_id": trial_id or posixpath.basename(p),
        "trial_dir": trial.rel,
        "runner": trial.runner,
        **_config_columns(config),
    }
    return [{**r, **ident} for r in rows], ident


def _unpacked(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A result.json row with the engine's packed metrics as columns (``analysis.packed``)."""
    try:
        return packed.unpack(row)
    except ValueError as e:
        raise ValueError(f"collect: {where}: {e}") from None


def is_final_report(row: pd.Series | dict[str, Any]) -> bool:
    """The loop's last report: diverged, stopped early by the experiment, or all steps done."""
    diverged = row.get("diverged")
    if isinstance(diverged, (bool, np.bool_)) and diverged:
        return True
    stop = row.get("stop_reason")
    if isinstance(stop, str) and stop:
        return True
    step, steps = row.get("step"), row.get("steps")
    try:
        return float(step) >= float(steps)
    except (TypeError, ValueError):
        return False


def with_status(frame: pd.DataFrame, errored: bool, pruned: bool = False) -> pd.DataFrame:
    """Sort a trial's rows and set ``final`` and ``status`` (see ``schema.STATUSES``); a trial
    the engine's ``pruned.json`` names is "pruned" (its last row final)."""
    frame = frame.sort_values("iteration", kind="stable").reset_index(drop=True)
    final = pd.Series(False, index=frame.index)
    if len(frame) and (pruned or is_final_report(frame.iloc[-1])):
        final.iloc[-1] = True
    if pruned:
        status = "pruned"
    elif final.any():
        diverged = frame.get("diverged", pd.Series(False, index=frame.index))
        status = "diverged" if diverged.fillna(False).astype(bool).any() else "finished"
    else:
        status = "errored" if errored else "running"
    return frame.assign(final=final, status=status)


def _status(rows: list[dict[str, Any]], errored: bool, pruned: bool) -> str:
    """``with_status`` on a trial's rows sorted by iteration, as dicts: sets ``final`` and
    ``status`` in place and returns the status."""
    final = bool(rows) and (pruned or is_final_report(rows[-1]))
    if pruned:
        status = "pruned"
    elif final:
        diverged = any(not _missing(r.get("diverged")) and bool(r["diverged"]) for r in rows)
        status = "diverged" if diverged else "finished"
    else:
        status = "errored" if errored else "running"
    for r in rows:
        r["final"], r["status"] = False, status
    if final:
        rows[-1]["final"] = True
    return status


def _to_float(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None
    return float(v)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A trial's frame as an arrow table with the documented types (fixed columns all present;
    a non-fixed column without a value has arrow's null type, see ``schema.arrow_type``)."""
    arrays, names = [], []
    for col in schema.COLUMNS:
        if col.name not in frame.columns:
            arrays.append(pa.nulls(len(frame), col.type))
            names.append(col.name)
    for name in frame.columns:
        values = frame[name]
        type_ = schema.arrow_type(name, values)
        py = [None if _missing(v) else v for v in values.tolist()]
        if pa.types.is_floating(type_):
            arr = pa.array([_to_float(v) for v in py], type_)
        elif pa.types.is_integer(type_):
            ints = [_to_float(v) for v in py]
            arr = pa.array([None if v is None or math.isnan(v) else int(v) for v in ints], type_)
        elif pa.types.is_boolean(type_):
            arr = pa.array([None if v is None else bool(v) for v in py], type_)
        elif pa.types.is_timestamp(type_):
            arr = pa.array([None if v is None else pd.Timestamp(v) for v in py], type_)
        else:
            arr = pa.array([None if v is None else schema.as_text(v) for v in py], type_)
        arrays.append(arr)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _sources(source: str | Iterable[str]) -> list[str]:
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return [str(source)]
    return [str(s) for s in source]


def _changed(trial: Trial, entry: dict[str, Any] | None, pruned: set[str]) -> bool:
    return (
        entry is None
        or entry["signature"] != trial.signature()
        or (entry.get("trial_id") in pruned and entry["status"] != "pruned")
    )


def collect(source: str | Iterable[str], dest: str, progress: Progress | None = None) -> Collected:
    """Collect every trial under ``source`` (path(s) or URI(s)) into the parquet dataset ``dest``.

    Idempotent and incremental: unchanged trials are skipped, changed ones merged by
    ``(sweep, trial_id, iteration)``; the cost is the listing of the trial directories plus
    work in proportion to the trials that changed (``analysis.dataset`` keeps the rows in a
    few files). ``progress(done, total, trial)`` is called per trial. Changed trials are
    committed ``COMMIT_TRIALS`` at a time, so a long first collect that is killed keeps what
    it committed.
    """
    dfs, droot = storage.filesystem(dest)
    dfs.create_dir(droot, recursive=True)
    manifest = dataset.read_manifest(dfs, droot) or dataset.Manifest()
    trials = [t for s in _sources(source) for t in find_trials(s)]
    out = Collected(dest=str(dest), trials=len(trials))
    pruned_in: dict[str, set[str]] = {}
    pending: list[tuple[Trial, set[str]]] = []
    copied: set[str] = set()
    for n, trial in enumerate(trials, start=1):
        pruned = _pruned_ids(trial, pruned_in)
        if _changed(trial, manifest.trials.get(trial.key), pruned):
            pending.append((trial, pruned))
            if len(pending) >= COMMIT_TRIALS:
                _update(pending, manifest, dfs, droot, copied)
                out.updated += len(pending)
                pending = []
        if progress is not None:
            progress(n, len(trials), trial.key)
    if pending:
        _update(pending, manifest, dfs, droot, copied)
        out.updated += len(pending)
    if out.updated:
        dataset.remove_orphans(dfs, droot, manifest)
    for trial in trials:
        entry = manifest.trials[trial.key]
        out.rows += entry["rows"]
        out.statuses[entry["status"]] = out.statuses.get(entry["status"], 0) + 1
    return out


def _identity(key: str, entry: dict[str, Any]) -> str | None:
    """The identity of a collected trial's rows (``dataset.identity``), None without rows."""
    if not entry.get("file") or entry.get("trial_id") is None:
        return None
    return dataset.identity(key.split("/", 1)[0], entry["trial_id"])


def _update(
    pending: list[tuple[Trial, set[str]]],
    manifest: dataset.Manifest,
    dfs: pafs.FileSystem,
    droot: str,
    copied: set[str],
) -> None:
    """Read the ``pending`` trials, merge each with its rows already collected, and commit them
    (with the other rows of the files they were in) as one change of the dataset."""
    leaving: dict[str, set[str]] = {}  # file -> identities of the trials leaving it
    legacy: dict[str, str] = {}  # trial key -> its part of the old layout, not in the manifest
    for trial, _ in pending:
        entry = manifest.trials.get(trial.key)
        ident = _identity(trial.key, entry) if entry else None
        if ident is not None and entry["file"] in manifest.files:
            leaving.setdefault(entry["file"], set()).add(ident)
        elif entry is None and storage.is_file(dfs, f"{droot}/{trial.part}"):
            legacy[trial.key] = trial.part
    old, units, replaced = dataset.take(dfs, droot, manifest, leaving)
    old_rows: dict[str, list[dict[str, Any]]] = {}  # identity or legacy trial key -> rows
    for row in old.to_pylist() if old is not None else []:
        old_rows.setdefault(dataset.identity(row["sweep"], row["trial_id"]), []).append(row)
    for key, name in legacy.items():
        old_rows[key] = pq.read_table(f"{droot}/{name}", filesystem=dfs).to_pylist()
    out: dict[bool, tuple[list[dict[str, Any]], list[str]]] = {False: ([], []), True: ([], [])}
    for trial, pruned in pending:
        entry = manifest.trials.get(trial.key)
        ident = _identity(trial.key, entry) if entry else None
        rows, _ = trial_rows(trial)
        before = old_rows.get(ident) if ident is not None else old_rows.get(trial.key)
        if before:
            # a Tune restore re-reports the rows after the checkpoint it resumed from, with the
            # same training_iteration: within one file as across collects, the newer row wins
            rows = before + rows
        rows = sorted({int(r["iteration"]): r for r in rows}.values(), key=lambda r: r["iteration"])
        errored = any(e in trial.files for e in ERROR_FILES)
        is_pruned = bool(rows) and str(rows[0]["trial_id"]) in pruned
        status = _status(rows, errored, is_pruned)
        if rows:  # a trial without a report yet has no rows
            hot = status == "running"
            out[hot][0].extend(rows)
            out[hot][1].append(trial.key)
            samples.copy_into(
                trial.fs, trial.path, dfs, droot, samples.stored_name(trial.sweep, trial.path)
            )
            _copy_record(trial, dfs, droot, copied)
        manifest.trials[trial.key] = {
            "signature": trial.signature(),
            "file": None,
            "rows": len(rows),
            "status": status,
            "trial_id": str(rows[0]["trial_id"]) if rows else None,
        }
    for hot, (rows, keys) in out.items():
        if rows:  # one conversion for all the trials: to_arrow's cost is per column
            units.append(dataset.Unit(to_arrow(pd.DataFrame(rows)), keys, hot=hot))
    dataset.commit(dfs, droot, manifest, units, replaced | set(legacy.values()))


def _pruned_ids(trial: Trial, cache: dict[str, set[str]]) -> set[str]:
    """The trial ids the engine's ``pruned.json`` beside a Tune trial names (read once per
    experiment directory; empty when there is none)."""
    parent = posixpath.dirname(trial.path)
    if trial.runner != "tune":
        return set()
    if parent not in cache:
        src = f"{parent}/{PRUNED_RECORD}"
        ids: set[str] = set()
        if storage.is_file(trial.fs, src):
            try:
                ids = set(json.loads(storage.read_bytes(trial.fs, src)).get("trial_ids", []))
            except (json.JSONDecodeError, AttributeError):
                ids = set()
        cache[parent] = ids
    return cache[parent]


def _copy_record(trial: Trial, dfs: pafs.FileSystem, dest: str, copied: set[str]) -> None:
    """Copy the sweep's declaration (``sweep.json`` beside a Tune trial, written by the engine)
    to ``dest/sweeps/<sweep>.json``, for the report's per-sweep objective (once per collect and
    experiment directory: ``copied`` holds those done)."""
    src = f"{posixpath.dirname(trial.path)}/{SWEEP_RECORD}"
    if trial.runner != "tune" or src in copied or not storage.is_file(trial.fs, src):
        return
    copied.add(src)
    data = storage.read_bytes(trial.fs, src)
    dfs.create_dir(f"{dest}/{RECORDS}", recursive=True)
    storage.write_atomic(dfs, f"{dest}/{RECORDS}/{trial.sweep}.json", lambda f: f.write(data))


def records(dataset: str) -> dict[str, dict[str, Any]]:
    """sweep name -> its ``sweep.json`` as collected into ``dataset``."""
    fs, root = storage.filesystem(dataset)
    out = {}
    for info in storage.listing(fs, f"{root}/{RECORDS}"):
        if info.base_name.endswith(".json"):
            out[info.base_name[: -len(".json")]] = json.loads(storage.read_bytes(fs, info.path))
    return out
