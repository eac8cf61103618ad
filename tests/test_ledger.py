"""Tune's state files as a killed driver leaves them: cut short, set aside, never restored from."""

from __future__ import annotations

import json
import pickle

import cloudpickle

from sweeps.engine import ledger

WHOLE = json.dumps({"trial_data": []})  # an experiment state with no trials, as Tune writes it


def test_state_files_cut_short_are_set_aside_and_the_newest_whole_ones_kept(tmp_path):
    old, new = "2026-12-01_10-00-00", "2026-12-01_10-05-00"
    (tmp_path / f"experiment_state-{old}.json").write_text(WHOLE)
    (tmp_path / f"experiment_state-{new}.json").write_text("")  # killed while Tune wrote it
    (tmp_path / f"search_gen_state-{old}.json").write_bytes(cloudpickle.dumps({"n": 1}))
    (tmp_path / f"search_gen_state-{new}.json").write_bytes(cloudpickle.dumps({"n": 2})[:5])
    (tmp_path / f"searcher-state-{old}.pkl").write_bytes(pickle.dumps(None))
    (tmp_path / f"searcher-state-{new}.pkl").write_bytes(pickle.dumps(None))
    assert ledger.has_state(str(tmp_path))

    aside = ledger.set_aside_torn_states(str(tmp_path))

    assert sorted(p.rsplit("/", 1)[1] for p in aside) == [
        f"experiment_state-{new}.json",
        f"search_gen_state-{new}.json",
    ]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert f"experiment_state-{new}.json.torn" in left  # kept for a post-mortem
    assert ledger.newest_state(str(tmp_path)).endswith(f"experiment_state-{old}.json")
    assert f"searcher-state-{new}.pkl" in left  # whole: untouched
    assert ledger.set_aside_torn_states(str(tmp_path)) == []  # nothing more to do


def test_a_sweep_whose_only_state_is_cut_short_has_no_state(tmp_path):
    (tmp_path / "experiment_state-2026-12-01_10-00-00.json").write_text('{"trial_da')
    assert not ledger.has_state(str(tmp_path))  # the driver starts it afresh, set aside
    (tmp_path / "experiment_state-2026-12-01_09-00-00.json").write_text(WHOLE)
    assert ledger.has_state(str(tmp_path))


def test_a_trial_has_its_final_rows_only_when_its_last_report_is_final(tmp_path):
    trial = tmp_path / "adam_c5_0a1b2c3d"
    trial.mkdir()
    assert not ledger.has_final_rows(str(tmp_path), "0a1b2c3d")  # no result.json: rows lost
    rows = [{"step": 100, "steps": 300}, {"step": 200, "steps": 300}]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert not ledger.has_final_rows(str(tmp_path), "0a1b2c3d")  # cut before its end
    with open(trial / "result.json", "a") as f:
        f.write(json.dumps({"step": 300, "steps": 300}) + "\n" + '{"step": 3')  # + a torn line
    assert ledger.has_final_rows(str(tmp_path), "0a1b2c3d")
    assert not ledger.has_final_rows(str(tmp_path), "ffffffff")  # another trial


def test_a_real_rows_steps_come_from_its_config(tmp_path):
    """Tune's rows carry the report (``step``, no ``steps``) and the trial's config: a trial
    that trained every step is final even where its config leaves ``steps`` to the default."""
    from analysis.packed import pack
    from trainers import experiments

    trial = tmp_path / "adam_c5_0a1b2c3d"
    trial.mkdir()
    mog = {"experiment": "mog", "optimizer": "adam", "seed": 0}
    default = experiments.resolve_config(mog)["steps"]
    for trainer, steps in (({**mog, "steps": 300}, 300), (mog, default)):
        config = {"cell": "adam", "study_trial": 0, "stage": "tune", "trainer": trainer}
        rows = [{**pack({"step": s}, keep=("step",)), "config": config} for s in (steps - 1, steps)]
        (trial / "result.json").write_text(json.dumps(rows[0]) + "\n")
        assert not ledger.has_final_rows(str(tmp_path), "0a1b2c3d")
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert ledger.has_final_rows(str(tmp_path), "0a1b2c3d"), trainer


def test_a_packed_final_row_is_final(tmp_path):
    from analysis.packed import pack

    trial = tmp_path / "adam_c5_0a1b2c3d"
    trial.mkdir()
    rows = [pack({"step": s, "steps": 300}, keep=("step",)) for s in (200, 300)]
    assert "steps" not in rows[-1]  # only in the packed field
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows[:1]))
    assert not ledger.has_final_rows(str(tmp_path), "0a1b2c3d")
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ledger.has_final_rows(str(tmp_path), "0a1b2c3d")


def test_a_searcher_state_whose_only_file_is_cut_short_is_set_aside(tmp_path):
    (tmp_path / "experiment_state-2026-12-01_10-00-00.json").write_text(WHOLE)
    (tmp_path / "search_gen_state-2026-12-01_10-00-00.json").write_bytes(b"")
    aside = ledger.set_aside_torn_states(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in aside] == ["search_gen_state-2026-12-01_10-00-00.json"]
    assert ledger.has_state(str(tmp_path))  # Tune restores its trials without it
