"""The compacted dataset layout (analysis.dataset): a few files, changes that touch only the
rows that changed, a commit that a killed collect leaves undone. Real Tune output (the fixture's
bimodal trials, copied), real parquet."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import analysis
from analysis import dataset, schema

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output" / "bimodal"


def copies(root: Path, n: int) -> list[Path]:
    """``n`` real trial directories of one sweep, each the fixture's trial with its own id."""
    sources = sorted(p for p in FIXTURE.iterdir() if (p / "result.json").exists())
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        dst = root / "bimodal" / f"trial_{i:04d}"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint_*"))
        lines = (dst / "result.json").read_text().splitlines()
        rows = [json.loads(x) | {"trial_id": f"t{i:04d}"} for x in lines]
        (dst / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out.append(dst)
    return out


def grow(trial: Path) -> None:
    """One more report of a trial (as a restored trial reports again)."""
    last = json.loads((trial / "result.json").read_text().splitlines()[-1])
    last |= {"training_iteration": last["training_iteration"] + 1, "step": last["step"] + 1}
    with open(trial / "result.json", "a") as f:
        f.write(json.dumps(last) + "\n")


def files(dest: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in dest.glob("*.parquet")}


def expected_rows(trials: list[Path]) -> int:
    return sum(len((t / "result.json").read_text().splitlines()) for t in trials)


@pytest.fixture
def small_files(monkeypatch):
    """Files of about 40 rows, commits of 5 trials (so that 30 trials make several of each)."""
    monkeypatch.setattr(dataset, "TARGET_ROWS", 40)
    monkeypatch.setattr(importlib.import_module("analysis.collect"), "COMMIT_TRIALS", 5)


def test_many_trials_collect_into_a_few_files_each_row_once(tmp_path, small_files):
    trials = copies(tmp_path / "runs", 30)
    dest = tmp_path / "results"
    done = analysis.collect(str(tmp_path / "runs"), str(dest))
    df = analysis.load(str(dest))
    assert done.updated == 30 and len(df) == expected_rows(trials) == done.rows
    assert df.groupby(["sweep", "trial_id"]).ngroups == 30
    assert not df.duplicated(list(schema.KEY)).any()
    manifest = dataset.read_manifest(*_fs(dest))
    assert set(manifest.files) == set(files(dest)) and 1 < len(manifest.files) < 6
    assert all(i["rows"] < 2 * 40 + 15 for i in manifest.files.values())
    held = {k: e["file"] for k, e in manifest.trials.items()}
    assert set(held.values()) == set(manifest.files)
    # every trial's rows are in the one file the manifest names
    for key, name in list(held.items())[::7]:
        tid = manifest.trials[key]["trial_id"]
        part = pd.read_parquet(dest / name)
        assert (part["trial_id"] == tid).sum() == manifest.trials[key]["rows"]


def test_a_changed_trial_rewrites_no_file_until_half_of_one_is_superseded(tmp_path):
    trials = copies(tmp_path / "runs", 20)
    dest = tmp_path / "results"
    analysis.collect(str(tmp_path / "runs"), str(dest))
    before = files(dest)
    assert len(before) == 1
    grow(trials[3])
    done = analysis.collect(str(tmp_path / "runs"), str(dest))
    after = files(dest)
    assert done.updated == 1
    assert {n: after[n] for n in before} == before  # the old file is not rewritten
    assert len(after) == 2
    info = dataset.read_manifest(*_fs(dest)).files[next(iter(before))]
    assert info["dead"] == [dataset.identity("bimodal", "t0003")]
    df = analysis.load(str(dest))
    assert len(df) == expected_rows(trials) and not df.duplicated(list(schema.KEY)).any()
    rows = df[df["trial_id"] == "t0003"]
    assert rows["iteration"].tolist() == list(range(1, len(rows) + 1))
    assert rows["final"].sum() == 1 and bool(rows["final"].iloc[-1])
    # once half the first file's rows are superseded, it is replaced
    for trial in trials[4:14]:
        grow(trial)
    analysis.collect(str(tmp_path / "runs"), str(dest))
    assert not set(before) & set(files(dest))
    df = analysis.load(str(dest))
    assert len(df) == expected_rows(trials) and not df.duplicated(list(schema.KEY)).any()
    assert not any(i.get("dead") for i in dataset.read_manifest(*_fs(dest)).files.values())


def test_running_trials_have_a_file_of_their_own(tmp_path):
    trials = copies(tmp_path / "runs", 10)
    lines = (trials[0] / "result.json").read_text().splitlines(keepends=True)
    (trials[0] / "result.json").write_text(lines[0])
    dest = tmp_path / "results"
    analysis.collect(str(tmp_path / "runs"), str(dest))
    manifest = dataset.read_manifest(*_fs(dest))
    hot = [n for n, i in manifest.files.items() if i["hot"]]
    assert len(hot) == 1 and manifest.files[hot[0]]["rows"] == 1
    settled = {n: t for n, t in files(dest).items() if n not in hot}
    (trials[0] / "result.json").write_text("".join(lines))  # it finishes
    done = analysis.collect(str(tmp_path / "runs"), str(dest))
    assert done.updated == 1 and done.statuses == {"finished": 10}
    now = files(dest)
    assert hot[0] not in now and all(now.get(n) == t for n, t in settled.items())
    df = analysis.load(str(dest))
    assert len(df) == expected_rows(trials) and set(df["status"]) == {"finished"}


def test_a_collect_killed_before_its_commit_changes_nothing_a_reader_sees(tmp_path):
    trials = copies(tmp_path / "runs", 6)
    dest = tmp_path / "results"
    analysis.collect(str(tmp_path / "runs"), str(dest))
    df = analysis.load(str(dest))
    # what a collect killed after writing its new file and before replacing the manifest leaves
    orphan = dest / "part-999999-0123abcd.parquet"
    shutil.copy(next(dest.glob("part-*.parquet")), orphan)
    pd.testing.assert_frame_equal(analysis.load(str(dest)), df)
    grow(trials[0])
    analysis.collect(str(tmp_path / "runs"), str(dest))
    assert not orphan.exists()
    assert len(analysis.load(str(dest))) == len(df) + 1


def _fs(dest: Path):
    from analysis import storage

    return storage.filesystem(str(dest))
