"""Several experiments in one dataset: config keys of different types merge, on collect, on
load (also of parts written before the fix) and in a report of them all at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis
from analysis.collect import find_trials, read_trial, to_arrow, with_status

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output" / "wgangp"
TRIALS = ("adam_s0_55068909", "adam_s1_ab782a6c", "nsgda_s0_20122076", "nsgda_s1_5ecbd456")


def experiment(root: Path, sweep: str, **config) -> Path:
    """Real Tune trial directories of the fixture's WGAN-GP sweep, copied into ``root/sweep``
    with ``config`` changed in each params.json (Tune's layout: params.json + result.json)."""
    for name in TRIALS:
        dst = root / sweep / name
        shutil.copytree(FIXTURE / name, dst)
        params = json.loads((dst / "params.json").read_text())
        (dst / "params.json").write_text(json.dumps(params | config))
    return root / sweep


@pytest.fixture
def two(tmp_path):
    """A WGAN-GP and a StyleGAN2 smoke sweep: ``resolution`` null in one, 64 in the other;
    ``schedule`` a number in one, text in the other."""
    runs = tmp_path / "runs"
    wgangp = experiment(runs, "wgangp_smoke", resolution=None, schedule=0.5)
    style = experiment(
        runs,
        "stylegan2_smoke",
        experiment="stylegan2",
        model="stylegan2",
        resolution=64,
        schedule="cosine",
    )
    return tmp_path, wgangp, style


def test_config_keys_of_different_types_collect_and_load(two):
    tmp, wgangp, style = two
    dest = str(tmp / "results")
    # a key without a value is written as null, so that later files merge with it
    analysis.collect(str(wgangp), dest)
    types = {pq.read_schema(p).field("config/resolution").type for p in Path(dest).glob("part-*")}
    assert types == {pa.null()}
    analysis.collect([str(wgangp), str(style)], dest)
    df = analysis.load(dest)
    assert df.groupby("sweep")["trial_id"].nunique().to_dict() == {
        "stylegan2_smoke": 4,
        "wgangp_smoke": 4,
    }
    res = df.groupby("sweep")["config/resolution"].unique()
    assert df["config/resolution"].dtype == "float64"
    assert (
        list(res["stylegan2_smoke"]) == [64.0] and res["wgangp_smoke"][0] != res["wgangp_smoke"][0]
    )
    sched = df.groupby("sweep")["config/schedule"].unique()
    assert list(sched["wgangp_smoke"]) == ["0.5"] and list(sched["stylegan2_smoke"]) == ["cosine"]


def old_writer(sources: list[Path], dest: Path) -> list[Path]:
    """A dataset as collect wrote it long ago: one part per trial, a column without a value as
    string, no manifest."""
    dest.mkdir()
    parts = []
    for trial in (t for s in sources for t in find_trials(str(s))):
        t = to_arrow(with_status(read_trial(trial), errored=False))
        cols = [pa.nulls(len(t), pa.string()) if pa.types.is_null(c.type) else c for c in t.columns]
        parts.append(dest / trial.part)
        pq.write_table(pa.Table.from_arrays(cols, names=t.schema.names), parts[-1])
    return parts


def test_a_dataset_already_written_with_conflicting_parts_loads(two):
    tmp, wgangp, style = two
    dest = tmp / "results"
    parts = old_writer([wgangp, style], dest)
    raw = [pq.read_table(p) for p in parts]
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError), match="config/"):
        pa.concat_tables(raw, promote_options="permissive")  # what load did before
    df = analysis.load(str(dest))
    style_rows = df[df["sweep"] == "stylegan2_smoke"]
    assert set(style_rows["config/resolution"]) == {64.0}
    assert df["config/resolution"].dtype == "float64"
    assert set(df["config/schedule"]) == {"0.5", "cosine"}
    # collecting into it merges the old parts into the compacted layout, rows unchanged
    done = analysis.collect([str(wgangp), str(style)], str(dest))
    assert done.updated == 8 and not any(p.exists() for p in parts)
    again = analysis.load(str(dest))
    assert len(again) == len(df) and not again.duplicated(["sweep", "trial_id", "iteration"]).any()
    assert set(again["config/schedule"]) == {"0.5", "cosine"}


def test_a_report_of_both_experiments_at_once(two):
    tmp, wgangp, style = two
    out = tmp / "report"
    path = analysis.report([str(wgangp), str(style)], str(out), quiet=True)
    report = Path(path).read_text()
    for sweep in ("wgangp_smoke", "stylegan2_smoke"):  # one table per sweep, by its objective
        assert f"### {sweep}: " in report
        table = pd.read_csv(out / "tables" / f"{sweep}.csv")
        assert len(table) and table["mean"].notna().all()
