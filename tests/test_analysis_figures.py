"""The step-size sensitivity, curve and sample figures, and the report's per-sweep objective,
rendered from real collected data: plain trainer runs at tiny sizes and the Tune fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread

import analysis
from analysis import figures, samples, tables
from analysis.report import (
    Objective,
    duration,
    objective_of,
    penalty_warning,
    protocol_words,
    report,
)
from sweeps.engine.objectives import OBJECTIVES
from sweeps.engine.spec import Cell, StepSizes, Sweep, record
from trainers.trial.run import run_trial

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output"
MOG = {
    "experiment": "mog",
    "batch_size": 64,
    "z_dim": 16,
    "hidden": 32,
    "eval_samples": 300,
    "steps": 20,
    "eval_every": 2,
    "checkpoint_every": 20,
    "threads": 1,
}
# sgda at 30 diverges for seeds 0 and 2 after a few finite reports
MOG_GRID = {"adam": (1e-4, 1e-3), "sgda": (3e-2, 30.0)}
IMAGE = {
    "experiment": "wgangp",
    "dataset": "generated",
    "generated_size": 64,
    "width": 0.0625,
    "batch_size": 4,
    "fid_extractor": "randconv",
    "fid_workers": 1,
    "fid_num_gen": 16,
    "fid_num_gen_final": 24,
    "n_dis": 1,
    "steps": 4,
    "eval_every": 2,
    "checkpoint_every": 4,
    "threads": 1,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Plain trainer runs: a mog sweep (2 cells x 2 step sizes x 3 seeds) and 2 image cells."""
    root = tmp_path_factory.mktemp("runs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for opt, lrs in MOG_GRID.items():
        for lr in lrs:
            for seed in (0, 1, 2):
                cfg = {**MOG, "optimizer": opt, "lr_d": lr, "lr_g": lr, "seed": seed}
                run_trial(cfg, root / "mogrun" / f"{opt}_lr{lr:g}_s{seed}", quiet=True)
    for opt in ("adam", "nsgda"):
        cfg = {**IMAGE, "optimizer": opt, "seed": 0, "fid_cache": str(root / "fid")}
        run_trial(cfg, root / "imgrun" / f"{opt}_s0", quiet=True)
    torch.set_num_threads(before)
    return root


@pytest.fixture(scope="module")
def plain(runs, tmp_path_factory):
    dest = tmp_path_factory.mktemp("plain") / "results"
    analysis.collect([str(runs / "mogrun"), str(runs / "imgrun")], str(dest))
    df = analysis.load(str(dest))
    return df, samples.read(str(dest), df)  # collect copied each trial's samples


@pytest.fixture(scope="module")
def tune(tmp_path_factory):
    dest = tmp_path_factory.mktemp("tune") / "results"
    analysis.collect(str(FIXTURE), str(dest))
    return analysis.load(str(dest))


def kl_sweep(dest: Path) -> Path:
    """The fixture's real mog trials as a ``mode_kl`` sweep's Tune output: each row's objective
    is what the trainable reports for that metric, and sweep.json is the engine's record."""
    sweep = Sweep(
        name="mogkl",
        experiment="mog",
        metric="mode_kl",
        seeds=[0, 1],
        cells=[Cell("adam", StepSizes(grid=(1e-4, 1e-3))), Cell("nsgda", StepSizes(grid=(1e-3,)))],
    )
    out, objective = dest / sweep.name, OBJECTIVES[sweep.metric]
    for trial in sorted((FIXTURE / "mog").iterdir()):
        (out / trial.name).mkdir(parents=True)
        shutil.copy2(trial / "params.json", out / trial.name / "params.json")
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        text = "".join(json.dumps({**r, "objective": objective.of(r)}) + "\n" for r in rows)
        (out / trial.name / "result.json").write_text(text)
    (out / "sweep.json").write_text(json.dumps(record(sweep)))
    return out


def looked_at(fig, path: Path) -> np.ndarray:
    figures.save(fig, str(path))
    image = imread(path)
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05
    return image


def gids(ax, prefix: str) -> dict[str, object]:
    found = [*ax.lines, *ax.collections]
    return {a.get_gid()[len(prefix) :]: a for a in found if (a.get_gid() or "").startswith(prefix)}


# -- sensitivity ---------------------------------------------------------------------------------


def test_sensitivity_marks_the_chosen_step_size_and_the_diverged_seeds(plain, tmp_path):
    df = plain[0][plain[0]["sweep"] == "mogrun"]
    fig = figures.sensitivity(df, "mode_kl")
    looked_at(fig, tmp_path / "sensitivity.png")
    ax = fig.axes[0]
    table = tables.main_table(df, "mode_kl")
    assert set(gids(ax, "cell:")) == set(table["cell"]) == {"adam", "sgda"}
    assert len(gids(ax, "ci:")) == 2
    for row in table.itertuples():
        star = gids(ax, "chosen:")[row.cell]
        assert star.get_xdata()[0] == row.lr_g and star.get_ydata()[0] == pytest.approx(row.mean)
    # the x marks: only sgda at 30, where 2 of 3 seeds diverged
    steps = tables.step_size_table(df, "mode_kl")
    failed = steps[steps["diverged"] > 0]
    assert list(failed["lr_g"]) == [30.0] and list(failed["diverged"]) == [2]
    marks = gids(ax, "failed:")
    assert list(marks) == ["sgda"] and list(marks["sgda"].get_xdata()) == [30.0]
    assert "2/3" in [t.get_text() for t in ax.texts]
    assert ax.get_xscale() == "log" and "step size" in ax.get_xlabel()
    assert "KL" in ax.get_ylabel() and "lower is better" in ax.get_ylabel()
    title = ax.get_title()
    assert "seeds 0-2" in title and "adam: lr 0.0001" in title and "sgda: lr 0.03" in title


def test_sensitivity_stacks_failed_marks_of_cells_at_one_step_size_and_logs_wide_ranges(
    plain, tmp_path
):
    df = plain[0][plain[0]["sweep"] == "mogrun"]
    twin = df[df["cell"] == "sgda"].assign(cell="sgda2", trial_id=lambda d: d["trial_id"] + "b")
    both = pd.concat([df, twin], ignore_index=True)
    fig = figures.sensitivity(both, "mode_kl")
    looked_at(fig, tmp_path / "stacked.png")
    ax = fig.axes[0]
    marks = gids(ax, "failed:")
    assert set(marks) == {"sgda", "sgda2"}  # both fail 2/3 at lr 30: one row each, not on top
    ys = sorted(float(m.get_ydata()[0]) for m in marks.values())
    assert ys[1] - ys[0] > 0.05 and [t.get_text() for t in ax.texts].count("2/3") == 2
    assert ax.get_yscale() == "linear"  # mode_kl spans 0 to ~2: linear
    # an objective over decades (as FIDs from 50 to 2,500): a log axis, said in its label
    wide = df.assign(objective=np.exp(4 * df["mode_kl"]))
    final = tables.final_rows(wide)["objective"].dropna()
    assert final.max() / final.min() > 30
    ax = figures.sensitivity(wide, "objective").axes[0]
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()


def test_sensitivity_draws_one_line_per_cell_and_ratio(tune, tmp_path):
    df = tune[tune["sweep"] == "wgangp"]
    fig = figures.sensitivity(df, "objective", label="objective fid")
    looked_at(fig, tmp_path / "s.png")
    lines = gids(fig.axes[0], "cell:")
    assert set(lines) == {"ada-nsgda", "nsgda", "adam, lr_D/lr_G = 1", "adam, lr_D/lr_G = 4"}
    table = tables.main_table(df, "objective")
    adam = table[table["cell"] == "adam"].iloc[0]
    assert gids(fig.axes[0], "chosen:")["adam"].get_xdata()[0] == adam["lr_g"]
    assert "objective fid" in fig.axes[0].get_ylabel()
    with pytest.raises(figures.NoData):
        figures.sensitivity(df, "mode_kl")
    # mog by mode_kl: adam's chosen step size is its larger one
    mog = tune[tune["sweep"] == "mog"]
    star = gids(figures.sensitivity(mog, "mode_kl").axes[0], "chosen:")["adam"]
    assert star.get_xdata()[0] == tables.main_table(mog, "mode_kl")["lr_g"].iloc[0] == 1e-3


# -- curves --------------------------------------------------------------------------------------


def test_curves_show_each_cell_at_its_chosen_step_size_with_a_band(plain, tmp_path):
    df = plain[0][plain[0]["sweep"] == "mogrun"]
    fig = figures.curves(df, "mode_kl")
    looked_at(fig, tmp_path / "curves.png")
    ax = fig.axes[0]
    table = tables.main_table(df, "mode_kl")
    lines = gids(ax, "cell:")
    assert set(lines) == set(table["cell"]) and len(gids(ax, "ci:")) == len(table)
    for row in table.itertuples():
        at = tables.final_rows(df[(df["cell"] == row.cell) & (df["lr_g"] == row.lr_g)])
        assert lines[row.cell].get_ydata()[-1] == pytest.approx(at["mode_kl"].mean())
    assert ax.get_xlabel() == "generator steps" and ax.get_xlim()[0] == 0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "adam: lr 0.0001, seeds 0-2" in legend or "adam: lr 0.001, seeds 0-2" in legend


def test_a_sweep_evaluated_once_is_drawn_as_one_point_per_cell_with_its_interval(plain, tmp_path):
    """Evaluated only at the end (as the digits study is), a 'curve' is one point: curves and
    Fig. 2a then draw one marker per cell at its chosen step size, with the CI (min-max)."""
    df = plain[0][plain[0]["sweep"] == "mogrun"]
    last = df.groupby("trial_id")["step"].transform("max")
    once = df[df["step"] == last]
    assert once.groupby("trial_id").size().eq(1).all() and df["step"].nunique() > 1
    table = tables.main_table(once, "mode_kl").set_index("cell")
    for fig in (figures.curves(once, "mode_kl"), figures.fig2a(once, "mode_kl")):
        looked_at(fig, tmp_path / "once.png")
        ax = fig.axes[0]
        assert "at the end of training" in fig.get_suptitle()
        assert [t.get_text() for t in ax.get_xticklabels()] == sorted(table.index)
        for i, cell in enumerate(sorted(table.index)):
            marker = ax.containers[i].lines[0]  # an errorbar: its data line
            assert marker.get_xdata()[0] == i
            assert marker.get_ydata()[0] == pytest.approx(table.loc[cell, "mean"])
        bars = [c for c in ax.containers if c.has_yerr]
        assert len(bars) == len(table)  # each with its interval
    many = figures.curves(df, "mode_kl")  # evaluated often: lines over the steps, as before
    assert "over training" in many.get_suptitle()
    assert many.axes[0].get_xlabel() == "generator steps"


def test_curves_prefer_the_confirm_seeds(tune):
    df = tune[tune["sweep"] == "mog"].copy()
    # seed 1 re-run at adam's chosen step size as the confirmation stage
    lr = tables.main_table(df[df["seed"] == 0], "objective").set_index("cell").loc["adam", "lr_g"]
    confirm = (df["cell"] == "adam") & (df["seed"] == 1) & (df["lr_g"] == lr)
    df["stage"] = np.where(confirm, "confirm", None)
    fig = figures.curves(df, "mode_kl")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"adam: lr {lr:.3g}, seed 1 [confirm]" in legend
    assert "nsgda: lr 0.001, seeds 0, 1 [tune]" in legend


# -- samples -------------------------------------------------------------------------------------


def test_mog_samples_scatter_each_cells_saved_points_over_the_modes(plain, tmp_path):
    df, saved = plain
    df = df[df["sweep"] == "mogrun"]
    fig = figures.mog_samples(df, saved, "mode_kl")
    looked_at(fig, tmp_path / "mog.png")
    table = tables.main_table(df, "mode_kl")
    assert len(fig.axes) == len(table) == 2
    for ax, row in zip(fig.axes, table.itertuples(), strict=True):
        trial = tables.final_rows(df[(df["cell"] == row.cell) & (df["lr_g"] == row.lr_g)])
        first = trial.sort_values("seed").iloc[0]
        got = saved[(first["sweep"], first["trial_id"])]
        points = [c for c in ax.collections if c.get_gid() == "generated"][0]
        np.testing.assert_allclose(points.get_offsets(), got["points"])
        assert len([p for p in ax.patches if p.get_gid() == "mode"]) == 8
        assert f"{row.cell}" in ax.get_title() and "seed 0" in ax.get_title()
        assert f"lr {row.lr_g:.3g}" in ax.get_title() and "step 20" in ax.get_title()
        assert "x1" in ax.get_xlabel() and "x2" in ax.get_ylabel()
    with pytest.raises(figures.NoData, match="samples"):
        figures.mog_samples(df, {}, "mode_kl")


def test_image_samples_show_each_cells_saved_grid(plain, tmp_path):
    df, saved = plain
    df = df[df["sweep"] == "imgrun"]
    fig = figures.image_samples(df, saved, "fid")
    looked_at(fig, tmp_path / "img.png")
    assert len(fig.axes) == 2
    for ax, cell in zip(fig.axes, ("adam", "nsgda"), strict=True):
        shown = ax.get_images()[0].get_array()
        assert shown.shape == (8 * 33 + 1, 8 * 33 + 1, 3)
        trial = df[df["cell"] == cell]["trial_id"].iloc[0]
        np.testing.assert_array_equal(shown[1:33, 1:33], saved[("imgrun", trial)]["images"][0])
        assert cell in ax.get_title() and "seed 0" in ax.get_title()


# -- the paper's figures say what they show ------------------------------------------------------


def test_paper_figures_name_cell_step_size_seeds_and_axes(tune):
    mog = tune[tune["sweep"] == "mog"]
    fig = figures.fig2bc(mog)
    title = fig.get_suptitle()
    assert "adam: lr 0.0001, seeds 0, 1" in title or "adam: lr 0.001, seeds 0, 1" in title
    assert "mean over these seeds" in title and fig.axes[0].get_xlabel() == "generator steps"
    fig = figures.fig3(tune[tune["sweep"] == "bimodal"])
    axes = fig.axes[::1]
    lefts = {ax.get_xlim() for ax in axes if ax.get_xlabel() or ax.get_ylabel()}
    assert len(lefts) == 1  # every row shares the x axis
    assert "adam: lr_D 0.002, lr_G 0.001, seeds 0, 1" in axes[0].get_title()
    labels = [
        t.get_text()
        for t in figures.fig4(tune[tune["sweep"] == "wgangp"]).axes[0].get_xticklabels()
    ]
    assert any(t == "adam\nlr_D 0.0004, lr_G 0.0001\nseeds 0, 1" for t in labels)


# -- the report ----------------------------------------------------------------------------------


def test_the_report_ranks_a_sweep_by_its_own_objective(tmp_path):
    sweep = kl_sweep(tmp_path / "runs")
    out = tmp_path / "report"
    path = report([str(sweep.parent)], str(out), quiet=True)
    text = Path(path).read_text()
    df = analysis.load(str(out / "results"))
    # the two metrics disagree here: every seed covers 0 modes, while mode_kl tells adam's
    # step sizes apart (the quickstart's 'modes covered 0 ± 0')
    by_modes = tables.main_table(df, "modes_covered").set_index("cell")
    by_kl = tables.main_table(df, "objective").set_index("cell")
    assert by_modes.loc["adam", "lr_g"] != by_kl.loc["adam", "lr_g"] == 1e-3
    assert "### mogkl: objective mode_kl (lower is better)" in text
    csv = pd.read_csv(out / "tables" / "mogkl.csv").set_index("cell")
    assert csv.loc["adam", "lr_g"] == 1e-3
    assert csv.loc["adam", "mean"] == pytest.approx(by_kl.loc["adam", "mean"])
    section = text.split("### mogkl: objective mode_kl")[1].split("Every step size tried")[0]
    assert "objective mode_kl (mean ± std)" in section and "modes covered" not in section
    assert "| mog/ring8 | adam | 0.001 | 0.001 | 0.6025 ± 0.8 |" in section
    # modes covered comes after, at the objective's step sizes
    after = text.split("Also modes covered at the same step sizes")[1]
    assert "| mog/ring8 | adam | 0.001 | 0.001 | 0 ± 0 |" in after
    for name in ("mogkl_sensitivity", "mogkl_curves", "mogkl_fig2bc_adam"):
        assert f"(figures/{name}.png)" in text and imread(out / "figures" / f"{name}.png").size


def test_a_report_section_reads_the_penalty_from_sweep_json_else_from_diverged_seeds(plain):
    df = plain[0][plain[0]["sweep"] == "mogrun"]
    df = df.assign(objective=df["mode_kl"].where(df["status"] != "diverged", 5.0))
    assert objective_of(df, {"metric": "mode_kl", "penalty": 3.0}).penalty == 3.0
    got = objective_of(df, {"metric": "mode_kl", "penalty": None})
    assert got.penalty == 5.0 and "diverged" in got.source and got.name == "mode_kl"


def test_a_penalty_below_finished_seeds_is_warned_of_in_the_report(plain, capsys):
    """A diverged seed must never rank better than a finished one: when finished seeds scored
    worse than the penalty, the report says so (and how many) on the page and on stderr."""
    df = plain[0][plain[0]["sweep"] == "mogrun"]
    df = df.assign(objective=df["mode_kl"].where(df["status"] != "diverged", 5.0))
    final = tables.final_rows(df)
    finished = final.loc[final["status"] == "finished", "objective"].dropna()
    assert finished.nunique() > 2  # the fixture's seeds differ
    cut = float(finished.median())
    lines = penalty_warning(df, Objective("mode_kl", cut, False, "sweep.json"), "mogrun")
    n = int((finished > cut).sum())
    assert n and lines[0].startswith(f"**Warning**: {n} of {len(finished)} finished seeds")
    assert f"up to {finished.max():.4g}" in lines[0] and "declare a higher `penalty`" in lines[0]
    assert "finished seeds of mogrun scored worse" in capsys.readouterr().err
    above = Objective("mode_kl", float(finished.max()), False, "sweep.json")
    assert penalty_warning(df, above, "mogrun") == []  # none scored worse: no warning
    assert penalty_warning(df, Objective("mode_kl", None, False, "?"), "mogrun") == []


def test_wall_time_and_fid_protocol_read_as_words(tune):
    assert [duration(s) for s in (95.4, 0.0265 * 3600, 7200, 3 * 86400)] == [
        "1.59 min",
        "1.59 min",
        "2 h",
        "3 d",
    ]
    words = protocol_words(tables.final_rows(tune[tune["sweep"] == "wgangp"]))
    assert words == [
        "FID protocol (12 final rows): 24 generated images; reference: 64 real images of the "
        "folder-blobs-64 all split at 32 px; extractor: randconv32-s0, a fixed random "
        "convolution (a test extractor: these FIDs are not comparable with Inception FIDs); "
        "resize: none."
    ]


def test_fig1_draws_a_trial_whose_gradient_ratio_blew_up(tune):
    """A diverging trial's gradient ratio can be inf; fig1 still draws (that point as 'bad')."""
    image = tune[tune["fid"].notna()].copy()
    first = image["trial_id"].iloc[0]
    image.loc[image["trial_id"] == first, "grad_ratio"] = np.inf
    fig = figures.fig1(image)
    fig.canvas.draw()  # the colour bars are computed here
    (points,) = fig.axes[0].collections
    assert len(points.get_offsets()) == tables.final_rows(image)["trial_id"].nunique()
