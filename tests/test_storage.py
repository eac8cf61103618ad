"""analysis.storage: one way to reach a location, a local path or a URI, for engine and analysis."""

from __future__ import annotations

import pytest

from analysis import storage


@pytest.mark.parametrize("uri", [False, True])
def test_text_round_trips_atomically_by_path_and_by_file_uri(tmp_path, uri):
    where = f"file://{tmp_path}/exp" if uri else str(tmp_path / "exp")
    assert storage.read_text(where, "summary.md") is None
    assert not storage.exists(where)
    storage.write_text(where, "summary.md", "first\n")
    storage.write_text(where, "summary.md", "second\n")  # replaced, not appended
    assert storage.read_text(where, "summary.md") == "second\n"
    assert storage.exists(storage.join(where, "summary.md"))
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["summary.md"]  # no temp left


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    storage.write_text(str(tmp_path), "table.csv", "a,b\n1,2\n")
    fs, root = storage.filesystem(str(tmp_path))

    def broken(stream):
        stream.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        storage.write_atomic(fs, f"{root}/table.csv", broken)
    assert (tmp_path / "table.csv").read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # the temporary is gone


def test_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.location("runs") == f"{tmp_path}/runs"
    assert storage.location("s3://bucket/runs") == "s3://bucket/runs"
    assert storage.local_dir("runs") == f"{tmp_path}/runs"
    assert storage.local_dir("file:///data/runs") == "/data/runs"
    assert storage.local_dir("s3://bucket/runs") is None
    assert (
        storage.join("s3://bucket/runs/", "sweep", "summary.md")
        == "s3://bucket/runs/sweep/summary.md"
    )
    assert storage.listing(*storage.filesystem(str(tmp_path / "absent"))) == []
    (tmp_path / "a").mkdir()
    storage.move(str(tmp_path / "a"), str(tmp_path / ".a.interrupted"))
    assert [p.name for p in tmp_path.iterdir()] == [".a.interrupted"]


def test_a_tune_state_being_rewritten_is_read_again_then_the_older_one(tmp_path, monkeypatch):
    """Tune rewrites experiment_state-*.json in place: an empty or cut-short newest file is
    retried, then the state before it (the one a resume restored from) is read."""
    from sweeps.engine import ledger

    monkeypatch.setattr(ledger, "_trials_of", lambda state: state)
    (tmp_path / "experiment_state-2026-12-01_10-00-00.json").write_text(
        '{"trial_data": [], "n": 1}'
    )
    (tmp_path / "experiment_state-2026-12-02_10-00-00.json").write_text('{"trial_da')
    assert ledger.tune_trials(str(tmp_path), attempts=2, wait_s=0.01) == {"trial_data": [], "n": 1}
    (tmp_path / "experiment_state-2026-12-02_10-00-00.json").write_text(
        '{"trial_data": [], "n": 2}'
    )
    assert ledger.tune_trials(str(tmp_path), attempts=2, wait_s=0.01)["n"] == 2
    for p in tmp_path.iterdir():
        p.write_text("")
    assert ledger.tune_trials(str(tmp_path), attempts=2, wait_s=0.01) == {}
