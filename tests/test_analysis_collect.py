"""analysis.collect and analysis.load on real Tune output (committed fixture) and real runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis
from analysis import schema

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output"


def result_lines(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    dest = tmp_path_factory.mktemp("collected") / "results"
    done = analysis.collect(str(FIXTURE), str(dest))
    return done, dest, analysis.load(str(dest))


def test_every_report_of_every_trial_becomes_one_row_with_its_config(collected):
    done, _, df = collected
    trials = sorted(p for p in FIXTURE.glob("*/*") if (p / "result.json").exists())
    assert done.trials == len(trials) == df.groupby(["sweep", "trial_id"]).ngroups
    assert len(df) == sum(len(result_lines(t)) for t in trials) == done.rows
    assert not df.duplicated(list(schema.KEY)).any()
    for trial in trials[::5]:
        params = json.loads((trial / "params.json").read_text())
        rows = df[(df["sweep"] == trial.parent.name) & (df["trial_dir"].str.endswith(trial.name))]
        last = result_lines(trial)[-1]
        assert rows["iteration"].tolist() == list(range(1, len(result_lines(trial)) + 1))
        assert set(rows["trial_id"]) == {last["trial_id"]}
        assert set(rows["lr_d"]) == {params["lr_d"]} and set(rows["seed"]) == {params["seed"]}
        assert set(rows["cell"]) == {params["sweep_cell"]}
        assert rows["step"].iloc[-1] == last["step"]
        assert rows["loss_d"].iloc[-1] == pytest.approx(last["loss_d"])
        assert rows["time_total_s"].iloc[-1] == pytest.approx(last["time_total_s"])
        assert bool(rows["final"].iloc[-1]) and not rows["final"].iloc[:-1].any()
    assert set(df["status"]) == {"finished"}
    assert set(df["runner"]) == {"tune"}


def test_documented_dtypes(collected):
    _, _, df = collected
    assert str(df["seed"].dtype) == "Int64" and str(df["step"].dtype) == "Int64"
    assert str(df["diverged"].dtype) == "boolean" and str(df["final"].dtype) == "boolean"
    assert df["lr_d"].dtype == "float64" and df["fid"].dtype == "float64"
    assert str(df["fid_num_gen"].dtype) == "Int64"
    assert str(df["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert pd.api.types.is_string_dtype(df["verdict"])
    image = df[df["experiment"] == "wgangp"]
    assert image["fid"].notna().all() and image["fid_extractor"].notna().all()
    assert df.loc[df["experiment"] == "bimodal", "fid"].isna().all()
    mags = [c for c in df.columns if c.startswith("mag/G/")]
    assert mags and all(df[c].dtype == "float64" for c in mags)


def test_collect_again_rewrites_nothing_and_gives_the_same_frame(collected):
    _, dest, df = collected
    parts = {p: p.stat().st_mtime_ns for p in dest.glob("part-*.parquet")}
    again = analysis.collect(str(FIXTURE), str(dest))
    assert again.updated == 0 and again.rows == len(df)
    assert {p: p.stat().st_mtime_ns for p in dest.glob("part-*.parquet")} == parts
    pd.testing.assert_frame_equal(analysis.load(str(dest)), df)


def copy_trial(tmp_path: Path, name: str = "adam_s0_4431cda1") -> Path:
    src = FIXTURE / "bimodal" / name
    dst = tmp_path / "runs" / "bimodal" / name
    shutil.copytree(src, dst)
    return dst


def test_a_running_trial_gains_rows_without_duplicates_and_finishes(tmp_path):
    trial = copy_trial(tmp_path)
    lines = (trial / "result.json").read_text().splitlines(keepends=True)
    dest = str(tmp_path / "results")
    (trial / "result.json").unlink()  # Tune made the directory, no report yet
    assert analysis.collect(str(tmp_path / "runs"), dest).statuses == {"running": 1}
    # one whole report and half of the next one, as while Tune is writing
    (trial / "result.json").write_text(lines[0] + lines[1][:40])
    first = analysis.collect(str(tmp_path / "runs"), dest)
    df = analysis.load(dest)
    assert first.updated == 1 and len(df) == 1 and set(df["status"]) == {"running"}
    assert not df["final"].any()
    (trial / "result.json").write_text("".join(lines[:2]))
    analysis.collect(str(tmp_path / "runs"), dest)
    assert analysis.load(dest)["iteration"].tolist() == [1, 2]
    # a restored trial repeats iteration 2 (Tune appends again after a restore)
    (trial / "result.json").write_text("".join(lines[:2] + lines[1:]))
    analysis.collect(str(tmp_path / "runs"), dest)
    df = analysis.load(dest)
    assert df["iteration"].tolist() == [1, 2, 3]
    assert set(df["status"]) == {"finished"} and df["final"].tolist() == [False, False, True]


def test_rows_already_collected_are_kept_when_the_source_loses_them(tmp_path):
    trial = copy_trial(tmp_path)
    dest = str(tmp_path / "results")
    analysis.collect(str(tmp_path / "runs"), dest)
    lines = (trial / "result.json").read_text().splitlines(keepends=True)
    (trial / "result.json").write_text(lines[0])
    analysis.collect(str(tmp_path / "runs"), dest)
    assert analysis.load(dest)["iteration"].tolist() == [1, 2, 3]


def test_an_errored_trial_is_errored_until_it_finishes(tmp_path):
    trial = copy_trial(tmp_path)
    lines = (trial / "result.json").read_text().splitlines(keepends=True)
    (trial / "result.json").write_text(lines[0])
    (trial / "error.txt").write_text("Failure # 1 (occurred at ...)\nRuntimeError: boom\n")
    dest = str(tmp_path / "results")
    done = analysis.collect(str(tmp_path / "runs"), dest)
    assert done.statuses == {"errored": 1}
    assert set(analysis.load(dest)["status"]) == {"errored"}
    (trial / "result.json").write_text("".join(lines))  # retried and finished
    analysis.collect(str(tmp_path / "runs"), dest)
    assert set(analysis.load(dest)["status"]) == {"finished"}


def test_plain_process_runs_are_collected(tmp_path):
    from trainers.trial.run import run_trial

    config = {"experiment": "bimodal", "optimizer": "nsgda", "seed": 3}
    config |= {"steps": 60, "eval_every": 20, "checkpoint_every": 60}
    out = tmp_path / "plain" / "nsgda_seed3"
    run_trial(config, out, quiet=True)
    reports = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    meta = json.loads((out / "trial.json").read_text())
    dest = str(tmp_path / "results")
    done = analysis.collect(str(tmp_path / "plain"), dest)
    df = analysis.load(dest)
    assert done.trials == 1 and len(df) == len(reports) == 3
    assert set(df["runner"]) == {"plain"} and set(df["sweep"]) == {"plain"}
    assert set(df["trial_id"]) == {"nsgda_seed3"} and set(df["cell"]) == {"nsgda"}
    assert df["step"].tolist() == [r["step"] for r in reports]
    assert set(df["git_commit"]) == {meta["git_commit"]}
    assert df["status"].iloc[0] == "finished" and bool(df["final"].iloc[-1])
    assert df["time_total_s"].tolist() == pytest.approx([r["time_s"] for r in reports])


def test_file_uris_give_the_same_frame_as_paths(tmp_path, collected):
    _, _, df = collected
    dest = "file://" + str(tmp_path / "uri_results")
    done = analysis.collect("file://" + str(FIXTURE), dest)
    assert done.trials == df.groupby(["sweep", "trial_id"]).ngroups
    uri = analysis.load(dest)
    pd.testing.assert_frame_equal(uri, df)


def test_load_names_missing_columns_and_wrong_types(tmp_path, collected):
    _, dest, _ = collected
    part = next(dest.glob("part-*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.drop_columns(["status", "lr_d"]), tmp_path / "missing.parquet")
    with pytest.raises(analysis.SchemaError, match="missing column.*status.*lr_d|lr_d.*status"):
        analysis.load(str(tmp_path / "missing.parquet"))
    i = table.schema.get_field_index("seed")
    bad = table.set_column(i, "seed", pa.array([str(v) for v in table["seed"].to_pylist()]))
    pq.write_table(bad, tmp_path / "typed.parquet")
    with pytest.raises(analysis.SchemaError, match="seed is string, expected int64"):
        analysis.load(str(tmp_path / "typed.parquet"))
    with pytest.raises(FileNotFoundError, match="no results dataset"):
        analysis.load(str(tmp_path / "nothing"))


def test_no_temporary_files_are_left(collected):
    _, dest, _ = collected
    assert not [n for n in os.listdir(dest) if n.startswith(".")]


def test_the_schema_in_the_package_docs_is_the_checked_one():
    readme = (Path(analysis.__file__).parent / "README.md").read_text()
    assert schema.describe() in readme


def test_a_diverged_trial_is_final_and_diverged(tmp_path):
    trial = copy_trial(tmp_path)
    rows = result_lines(trial)[:2]
    rows[-1] |= {"diverged": True, "loss_d": float("nan")}
    dest = str(tmp_path / "results")
    for n in (1, 2):  # the second collect merges with the first one's (nullable) rows
        text = "".join(json.dumps(r) + "\n" for r in rows[:n])
        (trial / "result.json").write_text(text)
        analysis.collect(str(tmp_path / "runs"), dest)
    df = analysis.load(dest)
    assert set(df["status"]) == {"diverged"} and df["final"].tolist() == [False, True]
    assert df["step"].iloc[-1] < df["steps"].iloc[-1] and pd.isna(df["loss_d"].iloc[-1])


def test_a_restore_seen_by_the_first_collect_is_deduplicated_too(tmp_path):
    trial = copy_trial(tmp_path)
    lines = (trial / "result.json").read_text().splitlines(keepends=True)
    (trial / "result.json").write_text("".join(lines[:2] + lines[1:]))  # iteration 2 twice
    dest = str(tmp_path / "results")
    analysis.collect(str(tmp_path / "runs"), dest)
    assert analysis.load(dest)["iteration"].tolist() == [1, 2, 3]


def test_a_params_file_cut_short_by_a_kill_is_read_from_the_rows(tmp_path):
    trial = copy_trial(tmp_path)
    whole = analysis.collect(str(tmp_path / "runs"), str(tmp_path / "whole"))
    (trial / "params.json").write_text("")  # the driver died while Tune wrote it
    shutil.copytree(trial, trial.parent / "never_started")
    (trial.parent / "never_started" / "result.json").unlink()
    done = analysis.collect(str(tmp_path / "runs"), str(tmp_path / "torn"))
    assert done.rows == whole.rows  # the started trial's config comes from its rows
    a, b = analysis.load(str(tmp_path / "whole")), analysis.load(str(tmp_path / "torn"))
    assert a["lr_g"].tolist() == b["lr_g"].tolist() and b["lr_g"].notna().all()


def engine_packed(row: dict) -> dict:
    """A result.json row as the engine now has Tune write it (sweeps.engine.trainable): Tune's
    own keys as they are, the rest of the reported row through ``ReportRows.for_tune``."""
    from analysis.packed import pack
    from sweeps.engine.objectives import OBJECTIVES
    from sweeps.engine.trainable import TUNE_NAMES, TUNE_READS

    keep = {*TUNE_READS, *(k for o in OBJECTIVES.values() for k in o.needs)}
    return pack(row, keep, TUNE_NAMES)


def copy_runs(dest: Path, packed_every: int) -> None:
    """The fixture's trials under ``dest``, each ``packed_every``-th one's rows packed (0: none),
    with NaN, inf and -inf in some rows (as a diverging trainer reports them)."""
    for n, trial in enumerate(sorted(p for p in FIXTURE.glob("*/*") if p.is_dir())):
        out = dest / trial.relative_to(FIXTURE)
        shutil.copytree(trial, out)
        if not (out / "result.json").exists():
            continue
        rows = result_lines(out)
        rows[0] |= {"loss_d": float("nan"), "loss_g": float("inf")}
        rows[-1] |= {"grad_ratio": -float("inf")}
        if packed_every and n % packed_every == 0:
            rows = [engine_packed(r) for r in rows]
        (out / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("packed_every", [1, 2], ids=["all packed", "half packed"])
def test_packed_rows_collect_to_the_dataset_their_unpacked_rows_give(tmp_path, packed_every):
    from analysis.packed import PACKED

    copy_runs(tmp_path / "old", packed_every=0)
    copy_runs(tmp_path / "new", packed_every=packed_every)
    packed = [p for p in (tmp_path / "new").glob("*/*/result.json") if PACKED in p.read_text()]
    assert len(packed) >= 5
    old = analysis.collect(str(tmp_path / "old"), str(tmp_path / "old_results"))
    new = analysis.collect(str(tmp_path / "new"), str(tmp_path / "new_results"))
    assert (new.trials, new.rows, new.statuses) == (old.trials, old.rows, old.statuses)
    a = analysis.load(str(tmp_path / "old_results"))
    b = analysis.load(str(tmp_path / "new_results"))
    assert PACKED not in b.columns and len(b.columns) > 100
    pd.testing.assert_frame_equal(b, a)  # columns, their order, dtypes, values (NaN, inf)
    assert b["loss_g"].isin([float("inf")]).sum() == a["loss_g"].isin([float("inf")]).sum() > 0


def test_a_packed_field_that_is_not_json_names_its_file(tmp_path):
    from analysis.packed import PACKED

    trial = copy_trial(tmp_path)
    rows = [engine_packed(r) for r in result_lines(trial)]
    rows[1][PACKED] = rows[1][PACKED][:-10]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=f"{trial.name}/result.json: {PACKED} must be a JSON"):
        analysis.collect(str(tmp_path / "runs"), str(tmp_path / "results"))
