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
    # a key without a value is written as null, so the parts themselves merge
    types = {pq.read_schema(p).field("config/resolution").type for p in Path(dest).glob("part-*")}
    assert types == {pa.null(), pa.float64()}
    sched = df.groupby("sweep")["config/schedule"].unique()
    assert list(sched["wgangp_smoke"]) == ["0.5"] and list(sched["stylegan2_smoke"]) == ["cosine"]


def old_writer(part: Path) -> None:
    """Rewrite a part as collect wrote it before: a column without a value as string."""
    t = pq.read_table(part)
    cols = [pa.nulls(len(t), pa.string()) if pa.types.is_null(c.type) else c for c in t.columns]
    pq.write_table(pa.Table.from_arrays(cols, names=t.schema.names), part)


def test_a_dataset_already_written_with_conflicting_parts_loads(two):
    tmp, wgangp, style = two
    dest = tmp / "results"
    analysis.collect([str(wgangp), str(style)], str(dest))
    parts = sorted(dest.glob("part-*.parquet"))
    for part in parts:
        old_writer(part)
    raw = [pq.read_table(p) for p in parts]
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError), match="config/"):
        pa.concat_tables(raw, promote_options="permissive")  # what load did before
    df = analysis.load(str(dest))
    style_rows = df[df["sweep"] == "stylegan2_smoke"]
    assert set(style_rows["config/resolution"]) == {64.0}
    assert df["config/resolution"].dtype == "float64"
    assert set(df["config/schedule"]) == {"0.5", "cosine"}


def test_a_report_of_both_experiments_at_once(two):
    tmp, wgangp, style = two
    out = tmp / "report"
    path = analysis.report([str(wgangp), str(style)], str(out), quiet=True)
    report = Path(path).read_text()
    for sweep in ("wgangp_smoke", "stylegan2_smoke"):  # one table per sweep, by its objective
        assert f"### {sweep}: " in report
        table = pd.read_csv(out / "tables" / f"{sweep}.csv")
        assert len(table) and table["mean"].notna().all()
