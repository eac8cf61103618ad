"""The files of a collected dataset: a few compacted parquet files and the manifest naming them.

A dataset directory holds ``part-<seq>-<id>.parquet`` files, each the rows of many trials (every
trial's rows in one file), and ``_manifest.json``, which names the live files and, per trial,
its source signature and the file holding its rows. Files are never rewritten in place: a
collect writes new files under new names, then replaces the manifest (the commit: a reader
sees the old set of files or the new one, never a mix), then deletes the files it replaced.
A file left by a collect killed before its commit is named by no manifest and read by no one;
the next collect deletes it.

Running trials (rows still coming) are kept in a file of their own, rewritten by each collect
that changes one of them; settled trials go to files that are merged geometrically (a new file
absorbs the newest smaller ones while they hold at most twice its rows, up to ``TARGET_ROWS``),
so a dataset of N trials has O(N / TARGET_ROWS + log N) files and a row is rewritten O(log N)
times over the dataset's life. Datasets written before (one ``part-<hash>.parquet`` per trial,
manifest version 1, or no manifest) load as they are; the next collect that changes anything
merges their parts.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis import storage

MANIFEST = "_manifest.json"
VERSION = 2
TARGET_ROWS = 200_000  # a settled file stops absorbing others at this many rows
PREFIX = "part-"
OWN = re.compile(r"part-\d{6,}-[0-9a-f]{8}\.parquet")  # the names _write gives


@dataclass
class Manifest:
    """What a dataset holds: trial key -> entry, live file name -> its rows, sequence, kind."""

    trials: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_seq: int = 1
    version: int = VERSION

    def keys_by_file(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, entry in self.trials.items():
            if entry.get("file"):
                out.setdefault(entry["file"], []).append(key)
        return out


def read_manifest(fs: pafs.FileSystem, root: str) -> Manifest | None:
    """The dataset's manifest (a version 1 manifest as one file per trial); None without one."""
    path = f"{root}/{MANIFEST}"
    if not storage.is_file(fs, path):
        return None
    data = json.loads(storage.read_bytes(fs, path).decode("utf-8"))
    trials = data.get("trials", {})
    if data.get("version", 1) >= 2:
        return Manifest(trials, data.get("files", {}), int(data.get("next_seq", 1)))
    files = {}
    for entry in trials.values():  # version 1: one part per trial that has rows
        if entry.get("rows"):
            files[entry["file"]] = {"rows": entry["rows"], "seq": 0, "hot": False}
        else:
            entry["file"] = None
    return Manifest(trials, files, 1, version=1)


def write_manifest(fs: pafs.FileSystem, root: str, manifest: Manifest) -> None:
    """Replace the manifest atomically (the commit of a collect)."""
    data = {
        "version": VERSION,
        "next_seq": manifest.next_seq,
        "files": manifest.files,
        "trials": manifest.trials,
    }
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    storage.write_atomic(fs, f"{root}/{MANIFEST}", lambda f: f.write(raw))
    manifest.version = VERSION


def live_files(fs: pafs.FileSystem, root: str) -> dict[str, list[str]] | None:
    """Path -> the identities of trials whose rows in it are superseded, for each file the
    manifest names (None for a dataset without a manifest)."""
    manifest = read_manifest(fs, root)
    if manifest is None:
        return None
    return {f"{root}/{n}": list(i.get("dead", [])) for n, i in sorted(manifest.files.items())}


def live_rows(table: pa.Table, dead: list[str] | set[str]) -> pa.Table:
    """``table`` without the rows of the trials ``dead`` names."""
    return split(table, set(dead))[1] if dead else table


def take(
    fs: pafs.FileSystem, root: str, manifest: Manifest, leaving: dict[str, set[str]]
) -> tuple[pa.Table | None, list[Unit], set[str]]:
    """The rows of the trials leaving each file (file name -> their identities), the units of
    rows that must move with them, and the files to replace.

    A file is not rewritten for a few trials leaving it: the manifest marks their rows there
    superseded (``dead``), which readers skip; once at least half its rows are superseded (or
    it is the running trials' file), its live rows move into the new files and it is replaced.
    So the cost of a change is the rows that changed, plus reading the files they were in."""
    going: list[pa.Table] = []
    units: list[Unit] = []
    replaced: set[str] = set()
    by_file = manifest.keys_by_file()
    for name, idents in leaving.items():
        info = manifest.files[name]
        table = pq.read_table(f"{root}/{name}", filesystem=fs)
        dead = set(info.get("dead", [])) | idents
        gone, staying = split(table, dead)
        going.append(split(gone, idents)[0])
        if info["hot"] or 2 * gone.num_rows >= table.num_rows:
            replaced.add(name)
            keys = [k for k in by_file.get(name, []) if _ident(k, manifest) not in dead]
            if staying.num_rows:
                units.append(Unit(staying, keys, hot=bool(info["hot"])))
        else:
            info["dead"] = sorted(dead)
            info["live"] = staying.num_rows
    from analysis.load import unify

    old = pa.concat_tables(unify(going), promote_options="permissive") if going else None
    return old, units, replaced


def _ident(key: str, manifest: Manifest) -> str | None:
    entry = manifest.trials.get(key, {})
    if entry.get("trial_id") is None:
        return None
    return identity(key.split("/", 1)[0], entry["trial_id"])


def row_keys(table: pa.Table) -> pa.ChunkedArray:
    """``sweep`` + US + ``trial_id`` of each row: the identity of the trial a row belongs to."""
    return pc.binary_join_element_wise(
        table["sweep"].cast(pa.string()), table["trial_id"].cast(pa.string()), "\x1f"
    )


def identity(sweep: str, trial_id: str) -> str:
    return f"{sweep}\x1f{trial_id}"


def split(table: pa.Table, ids: set[str]) -> tuple[pa.Table, pa.Table]:
    """(rows of the trials ``ids`` names, the other rows); ids as ``identity`` gives them."""
    if not ids:
        return table.slice(0, 0), table
    mask = pc.is_in(row_keys(table), value_set=pa.array(sorted(ids), pa.string()))
    return table.filter(mask), table.filter(pc.invert(mask))


@dataclass
class Unit:
    """Rows to write together: one trial's new rows, or the survivors of a replaced file."""

    table: pa.Table
    keys: list[str]
    hot: bool


def _write(fs: pafs.FileSystem, root: str, manifest: Manifest, units: list[Unit], hot: bool):
    from analysis.load import unify

    tables = [u.table for u in units if u.table.num_rows]
    name = f"{PREFIX}{manifest.next_seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
    manifest.next_seq += 1
    table = pa.concat_tables(unify(tables, keep_null=True), promote_options="permissive")
    storage.write_atomic(
        fs, f"{root}/{name}", lambda f: pq.write_table(table, f, row_group_size=64 * 1024)
    )
    manifest.files[name] = {"rows": table.num_rows, "seq": manifest.next_seq - 1, "hot": hot}
    for u in units:
        for key in u.keys:
            manifest.trials[key]["file"] = name


def commit(
    fs: pafs.FileSystem,
    root: str,
    manifest: Manifest,
    units: list[Unit],
    replaced: set[str],
    target_rows: int | None = None,
) -> None:
    """Write ``units`` (and the survivors already in them) as new files, absorb the newest small
    settled files, replace the manifest, then delete the ``replaced`` files and the absorbed.

    ``manifest.trials`` must already hold the entries of the units' trials; their ``file`` is
    set here. ``replaced`` are the files the units' trials (or survivors) came from."""
    target_rows = target_rows or TARGET_ROWS
    settled = [u for u in units if not u.hot]
    pool = sum(u.table.num_rows for u in settled)
    if settled:  # the newest small settled files join the new one while at most twice its size
        by_file = manifest.keys_by_file()
        small = sorted(
            (info["seq"], name)
            for name, info in manifest.files.items()
            if not info["hot"] and name not in replaced and _live(info) < target_rows
        )
        while small and pool < target_rows and _live(manifest.files[small[-1][1]]) <= 2 * pool:
            name = small.pop()[1]
            info = manifest.files[name]
            table = live_rows(pq.read_table(f"{root}/{name}", filesystem=fs), info.get("dead", []))
            keys = [
                k for k in by_file.get(name, []) if _ident(k, manifest) not in info.get("dead", [])
            ]
            settled.append(Unit(table, keys, hot=False))
            pool += table.num_rows
            replaced = replaced | {name}
    batch: list[Unit] = []
    rows = 0
    for u in settled:  # files of about target_rows, every trial's rows in one of them
        batch.append(u)
        rows += u.table.num_rows
        if rows >= target_rows:
            _write(fs, root, manifest, batch, hot=False)
            batch, rows = [], 0
    if batch:
        _write(fs, root, manifest, batch, hot=False)
    hot = [u for u in units if u.hot]
    if hot:
        _write(fs, root, manifest, hot, hot=True)
    for name in replaced:
        manifest.files.pop(name, None)
    write_manifest(fs, root, manifest)
    for name in replaced:
        if storage.is_file(fs, f"{root}/{name}"):
            fs.delete_file(f"{root}/{name}")


def _live(info: dict[str, Any]) -> int:
    return int(info.get("live", info["rows"]))


def remove_orphans(fs: pafs.FileSystem, root: str, manifest: Manifest) -> int:
    """Delete files of this layout the manifest does not name (left by a collect killed before
    its commit); the count deleted. Files of other names are left alone."""
    gone = 0
    for info in storage.listing(fs, root):
        name = info.base_name
        if info.type == pafs.FileType.File and OWN.fullmatch(name) and name not in manifest.files:
            fs.delete_file(info.path)
            gone += 1
    return gone
