"""analysis.figures and the report command, rendered from real collected Tune output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread

import analysis
from analysis import figures, tables

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output"
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    dest = tmp_path_factory.mktemp("real") / "results"
    analysis.collect(str(FIXTURE), str(dest))
    return analysis.load(str(dest))


def rendered(fig, path: Path) -> object:
    figures.save(fig, str(path))
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    return image


@pytest.mark.parametrize(
    "name, experiment",
    [
        ("fig1", "wgangp"),
        ("fig2a", "wgangp"),
        ("fig2bc", "wgangp"),
        ("fig2bc", "bimodal"),
        ("fig3", "bimodal"),
        ("fig4", "wgangp"),
    ],
)
def test_each_figure_renders_from_real_collected_data(real, tmp_path, name, experiment):
    data = real[real["experiment"] == experiment]
    fig = figures.FIGURES[name](data)
    rendered(fig, tmp_path / f"{name}.png")


def test_figures_draw_what_the_data_holds(real):
    image = real[real["experiment"] == "wgangp"]
    fig = figures.fig4(image)
    bars = fig.axes[0].patches
    table = tables.main_table(image, "fid")
    assert [b.get_height() for b in bars] == pytest.approx(list(table["mean"]))
    dots = fig.axes[0].collections
    assert sum(len(c.get_offsets()) for c in dots) == int(table["n"].sum())
    fig = figures.fig2bc(image, cell="adam")
    layers = [c for c in image.columns if c.startswith("mag/G/") and image[c].notna().any()]
    assert len(fig.axes[0].lines) == len(layers) > 1
    fig = figures.fig3(real[real["experiment"] == "bimodal"])
    assert len(fig.axes) == 3 * real.loc[real["experiment"] == "bimodal", "cell"].nunique()


def test_figures_say_what_is_missing(real):
    bimodal = real[real["experiment"] == "bimodal"]
    with pytest.raises(figures.NoData, match="fid"):
        figures.fig4(bimodal)
    with pytest.raises(figures.NoData, match="corr"):
        figures.fig3(real[real["experiment"] == "wgangp"])


def test_figures_refuse_mixed_protocols(real):
    image = real[real["experiment"] == "wgangp"].copy()
    first = image["trial_id"] == image["trial_id"].iloc[0]
    image.loc[first, "fid_extractor"] = "inception-v3"
    with pytest.raises(tables.ProtocolError):
        figures.fig4(image)
    with pytest.raises(tables.ProtocolError):
        figures.fig2a(image)


def test_report_command_collects_with_progress_and_writes_tables_and_figures(tmp_path):
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "analysis", "report", str(FIXTURE), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    n = len([p for p in FIXTURE.glob("*/*") if (p / "result.json").exists()])
    assert f"collecting {n}/{n} trials" in proc.stderr
    report = (out / "report.md").read_text()
    for exp in ("bimodal", "mog", "wgangp"):
        assert f"### {exp}:" in report
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{exp}.{ext}").stat().st_size > 0
    images = re.findall(r"\]\((figures/[^)]+)\)", report)
    expected = {"fig1", "fig2a", "fig4", "fig3", "wgangp_fig2bc_adam", "bimodal_fig2bc_adam"}
    expected |= {
        f"{s}_{f}" for s in ("bimodal", "mog", "wgangp") for f in ("sensitivity", "curves")
    }
    assert {f"figures/{name}.png" for name in expected} <= set(images)
    for rel in images:
        assert imread(out / rel).shape[0] > 200
    csv = pd.read_csv(out / "tables" / "wgangp.csv")
    assert set(csv["cell"]) == {"adam", "nsgda", "ada-nsgda"}
    # a second report collects nothing new
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "(0 new or changed)" in again.stderr


def test_report_on_a_directory_without_trials_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    cmd = [
        sys.executable,
        "-m",
        "analysis",
        "report",
        str(tmp_path / "empty"),
        "--out",
        str(tmp_path / "o"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no trials" in proc.stderr
