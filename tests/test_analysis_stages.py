"""main_table's choice and what it reports: tune vs confirm stages, the tie rule, sweeps kept
apart, any numeric column as a metric, the whole grid and its edges, an undefined ratio.

Frames are real final rows, one per seed, with seeds and step sizes whose values differ, so a
table computed on the wrong rows (stage, sweep, step size) shows a different number.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import tables

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output"
NAN = float("nan")


def seeds(cell, lr, values, metric="objective", stage=None, first_seed=0, sweep="s", **extra):
    """Final rows of one (cell, step size): a seed per value; NaN is a diverged seed. ``lr``
    is lr_g = lr_d, or a pair (lr_d, lr_g)."""
    lr_d, lr_g = lr if isinstance(lr, tuple) else (lr, lr)
    rows = []
    for i, v in enumerate(values):
        seed = first_seed + i
        failed = isinstance(v, float) and math.isnan(v)
        rows.append(
            {
                "sweep": sweep,
                "trial_id": f"{cell}-{lr_d}-{lr_g}-{seed}-{stage}",
                "iteration": 1,
                "experiment": "mog",
                "dataset": "d",
                "model": "m",
                "cell": cell,
                "optimizer": cell,
                "lr_d": lr_d,
                "lr_g": lr_g,
                "seed": seed,
                "status": "diverged" if failed else "finished",
                "stage": stage,
                metric: v,
                **extra,
            }
        )
    return rows


def frame(*groups):
    return pd.DataFrame([r for g in groups for r in g])


def staged():
    """adam: tuned on seeds 0-2 (1e-3 best), confirmed on seeds 3-5 at 1e-3; nsgda: tuned only."""
    return frame(
        seeds("adam", 1e-3, [10.0, 11.0, 12.0]),
        seeds("adam", 1e-4, [20.0, 21.0, 22.0]),
        seeds("adam", 1e-3, [14.0, 15.0, 19.0], stage="confirm", first_seed=3),
        seeds("nsgda", 1e-2, [8.0, 9.0, 10.0]),
        seeds("nsgda", 1e-1, [30.0, 31.0, 35.0]),
    )


def test_confirm_rows_are_reported_where_a_cell_has_them():
    t = tables.main_table(staged(), "objective").set_index("cell")
    adam, nsgda = t.loc["adam"], t.loc["nsgda"]
    assert adam["stage"] == "confirm" and adam["lr_g"] == 1e-3
    assert adam["mean"] == 16.0 and adam["n"] == 3 and adam["seeds"] == 3
    assert (adam["tune_mean"], adam["tune_n"]) == (11.0, 3)
    # the statistics are over the confirmation seeds 14, 15, 19, not the tuning ones
    assert 14.0 <= adam["ci_low"] < 16.0 < adam["ci_high"] <= 19.0
    assert nsgda["stage"] == "tune" and nsgda["mean"] == nsgda["tune_mean"] == 9.0
    assert nsgda["diff"] == -7.0  # 9 - 16: against Adam's confirmed mean
    x, y = [8.0, 9.0, 10.0], [14.0, 15.0, 19.0]
    hand = sum((a < b) + 0.5 * (a == b) for a in x for b in y) / 9
    assert nsgda["p_improve"] == hand == 1.0
    assert nsgda["p_value"] == pytest.approx(0.1)  # exact: 2 of the 20 splits
    md = tables.to_markdown(t.reset_index())
    assert "| 16 ± 2.6 | 3 | confirmation |" in md and "| 9 ± 1 | 3 | tuning |" in md
    assert "Rows with seeds 'confirmation': statistics over confirmation seeds, disjoint" in md
    assert "rows with seeds 'tuning': statistics over the tuning seeds" in md


def test_stage_tune_ignores_confirm_rows_and_stage_confirm_keeps_only_them():
    tune = tables.main_table(staged(), "objective", stage="tune").set_index("cell")
    assert set(tune["stage"]) == {"tune"} and tune.loc["adam", "mean"] == 11.0
    assert tune.loc["nsgda", "diff"] == -2.0
    assert "(the winner's mean is optimistic)" in tables.caption(tune)
    # as loaded: a pandas string column, <NA> where a trial has no stage
    conf = tables.main_table(staged().astype({"stage": "string"}), "objective", stage="confirm")
    assert list(conf["cell"]) == ["adam"] and conf["mean"].item() == 16.0
    assert any("cell=nsgda: no confirm rows" in w for w in conf.attrs["warnings"])
    assert tables.caption(conf).startswith("Statistics over confirmation seeds, disjoint")
    with pytest.raises(ValueError, match="stage='final'; allowed: None .*tune, confirm"):
        tables.main_table(staged(), "objective", stage="final")
    bad = staged().assign(stage="final")
    with pytest.raises(ValueError, match="'stage' holds \\['final'\\]"):
        tables.main_table(bad, "objective")


def test_the_step_size_is_chosen_on_tune_rows_and_a_confirmed_one_is_kept():
    """The sweep confirmed 1e-4 (its objective's choice); for this table's metric the tune
    stage prefers 1e-3. The confirm rows are better than any tune row: a choice made on them
    (or on all rows) would pick them for stage="tune" too."""
    df = frame(
        seeds("adam", 1e-3, [10.0, 11.0, 12.0], "mode_kl"),
        seeds("adam", 1e-4, [20.0, 21.0, 22.0], "mode_kl"),
        seeds("adam", 1e-4, [5.0, 6.0, 4.0], "mode_kl", stage="confirm", first_seed=3),
    )
    tune = tables.main_table(df, "mode_kl", stage="tune")
    assert (tune["lr_g"].item(), tune["mean"].item(), tune["stage"].item()) == (1e-3, 11.0, "tune")
    t = tables.main_table(df, "mode_kl")
    assert (t["lr_g"].item(), t["mean"].item(), t["stage"].item()) == (1e-4, 5.0, "confirm")
    assert (t["tune_mean"].item(), t["tune_n"].item()) == (21.0, 3)  # tune stage at 1e-4
    (warning,) = t.attrs["warnings"]
    assert "confirmed at lr_d=0.0001, lr_g=0.0001" in warning
    assert "tune stage's best for mode_kl is lr_d=0.001, lr_g=0.001" in warning
    assert "Warning: " + warning in tables.to_markdown(t)


def test_confirm_rows_at_two_step_sizes_are_refused():
    df = frame(
        seeds("adam", 1e-3, [10.0, 11.0]),
        seeds("adam", 1e-3, [12.0], stage="confirm", first_seed=2),
        seeds("adam", 1e-4, [13.0], stage="confirm", first_seed=3),
    )
    with pytest.raises(
        ValueError,
        match=r"cell=adam: the confirm rows ran at more than one.*"
        r"lr_g=0\.0001.*lr_g=0\.001",
    ):
        tables.main_table(df, "objective")


def test_ties_go_to_the_smaller_lr_d_then_the_smaller_lr_g():
    # three step sizes with the same mean 5.0 (listed largest lr_d first, seeds in other orders)
    df = frame(
        seeds("adam", (1e-2, 1e-4), [4.0, 6.0]),
        seeds("adam", (1e-3, 1e-2), [6.0, 4.0]),
        seeds("adam", (1e-3, 1e-3), [5.0, 5.0]),
        seeds("adam", (1e-4, 1e-1), [7.0, 9.0]),
    )
    t = tables.main_table(df, "objective")
    assert (t["lr_d"].item(), t["lr_g"].item()) == (1e-3, 1e-3)
    # higher is better: the same rule
    hi = tables.main_table(df.rename(columns={"objective": "modes_covered"}), "modes_covered")
    assert (hi["lr_d"].item(), hi["lr_g"].item()) == (1e-4, 1e-1)
    hi = tables.main_table(
        df[df["lr_d"] != 1e-4].rename(columns={"objective": "modes_covered"}), "modes_covered"
    )
    assert (hi["lr_d"].item(), hi["lr_g"].item()) == (1e-3, 1e-3)


def test_the_score_does_not_depend_on_seed_order():
    # summed in order, 0.3 + 0.2 + 0.1 = 0.6 but 0.1 + 0.2 + 0.3 = 0.6000000000000001: only an
    # exact sum ties them, and the tie goes to the smaller lr_d (1e-4)
    df = frame(
        seeds("adam", 1e-3, [0.3, 0.2, 0.1]),
        seeds("adam", 1e-4, [0.1, 0.2, 0.3]),
    )
    for penalty in (None, 1.0):
        t = tables.main_table(df, "objective", penalty=penalty)
        assert t["lr_g"].item() == 1e-4, penalty
    # the searcher's order (failures in place) and the table's (failures last) agree exactly
    assert tables.penalised_mean([0.1, None, 0.2, 0.3], 0.7) == tables.penalised_mean(
        [0.3, 0.2, 0.1, None], 0.7
    )


def test_higher_is_better_picks_the_step_size_where_both_modes_are_learnt():
    def verdicts(lr, vs, first_seed=0):
        rows = seeds("sgda", lr, vs, metric="verdict", first_seed=first_seed)
        return [r | {"experiment": "bimodal"} for r in rows]

    df = frame(verdicts(0.1, ["both", "both", "u1"]), verdicts(1.0, ["u1", "none", "u2"]))
    t = tables.main_table(df, "both", reference="sgda")
    assert t["lr_g"].item() == 0.1 and t["mean"].item() == pytest.approx(2 / 3)


def two_sweeps():
    """One experiment swept twice: 300 steps (sweep short) and 1500 (sweep long)."""
    return frame(
        seeds("adam", 1e-3, [10.0, 12.0], sweep="short", steps=300),
        seeds("nsgda", 1e-3, [8.0, 9.0], sweep="short", steps=300),
        seeds("adam", 1e-3, [4.0, 6.0], sweep="long", steps=1500),
        seeds("nsgda", 1e-3, [1.0, 2.0], sweep="long", steps=1500),
    )


def test_sweeps_and_budgets_are_never_pooled_unless_asked():
    t = tables.main_table(two_sweeps(), "objective")
    got = {(r.sweep, r.cell): (r.mean, r.n, r.diff) for r in t.itertuples()}
    assert got == {
        ("long", "adam"): (5.0, 2, pytest.approx(NAN, nan_ok=True)),
        ("long", "nsgda"): (1.5, 2, -3.5),
        ("short", "adam"): (11.0, 2, pytest.approx(NAN, nan_ok=True)),
        ("short", "nsgda"): (8.5, 2, -2.5),
    }
    head = tables.to_markdown(t).splitlines()[0]
    assert head.startswith("| setting | sweep | optimizer |")
    assert "| long | nsgda |" in tables.to_markdown(t)
    pooled = tables.main_table(two_sweeps(), "objective", pool=True).set_index("cell")
    assert pooled.loc["adam", "n"] == 4 and pooled.loc["adam", "mean"] == 8.0
    assert pooled.loc["adam", "sweep"] == "long, short"
    assert "| long, short | adam |" in tables.to_markdown(pooled.reset_index())
    by = tables.main_table(two_sweeps(), "objective", by=["steps"])  # apart by budget only
    assert len(by) == 4 and "sweep" not in tables.cell_keys(by, ["steps"])
    one = tables.main_table(two_sweeps()[lambda d: d["sweep"] == "long"], "objective")
    assert "| sweep |" not in tables.to_markdown(one)  # one sweep: no column for it


def test_any_numeric_column_is_a_metric_once_its_direction_is_given():
    df = frame(
        seeds("adam", 1e-3, [-1.0, -2.0], "loss_g"),
        seeds("adam", 1e-4, [3.0, 4.0], "loss_g"),
    )
    with pytest.raises(ValueError, match="'loss_g' is a numeric column.*pass higher_is_better"):
        tables.main_table(df, "loss_g")
    low = tables.main_table(df, "loss_g", higher_is_better=False)
    assert low["lr_g"].item() == 1e-3 and low["mean"].item() == -1.5
    high = tables.main_table(df, "loss_g", higher_is_better=True)
    assert high["lr_g"].item() == 1e-4 and "| loss_g (mean ± std) |" in tables.to_markdown(high)
    with pytest.raises(
        ValueError,
        match=r"'loss' is unknown; known: fid, .*objective; or any "
        r"numeric column with higher_is_better=: .*loss_g",
    ):
        tables.main_table(df, "loss")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    dest = tmp_path_factory.mktemp("real") / "results"
    analysis.collect(str(FIXTURE), str(dest))
    return analysis.load(str(dest))


def test_a_metric_no_row_has_warns_and_names_those_that_do(real):
    """The README's main_table(df, "fid") on task sweeps (bimodal, mog: the quickstart's)."""
    tasks = real[real["experiment"].isin(["bimodal", "mog"])]
    with pytest.warns(
        UserWarning,
        match=r"no row has a value of metric 'fid'; metrics with "
        r"values here: both, modes_covered.*objective; other numeric.*loss_d",
    ):
        t = tables.main_table(tasks, "fid")
    assert t.empty and "no row has a value of metric 'fid'" in t.attrs["warnings"][0]
    md = tables.to_markdown(t)
    assert md.startswith("(no table)") and "Warning: main_table: no row has" in md
    # a metric some rows have gives its table, without a warning
    t = tables.main_table(tasks, "objective")
    assert len(t) == tasks.groupby(["sweep", "cell"]).ngroups and t["n"].gt(0).all()


def ratio_sweep():
    """lr_d fixed, 4 lr_g (4 ratios) per cell: adam best at the largest lr_g, nsgda at the
    smallest; sgda tried only two step sizes (its best at one end says nothing)."""
    lrs = [1e-4, 3e-4, 1e-3, 3e-3]
    adam = [[9.0, 8.0], [7.0, 6.0], [5.0, 4.0], [3.0, 2.0]]
    nsgda = [[1.0, 2.0], [3.0, 4.0], [5.0, 7.0], [8.0, 9.0]]
    groups = [seeds("adam", (1e-3, g), v) for g, v in zip(lrs, adam, strict=True)]
    groups += [seeds("nsgda", (1e-3, g), v) for g, v in zip(lrs, nsgda, strict=True)]
    groups += [seeds("sgda", (1e-3, 1e-4), [6.0, 7.0]), seeds("sgda", (1e-3, 1e-3), [1.0, 3.0])]
    return frame(*groups)


def test_grid_table_has_a_row_per_step_size_and_marks_the_choice():
    g = tables.grid_table(ratio_sweep(), "objective")
    assert len(g) == 10 and list(g.groupby("cell").size()) == [4, 4, 2]
    adam = g[g["cell"] == "adam"].set_index("lr_g")
    assert list(adam["lr_ratio"]) == pytest.approx([10.0, 10 / 3, 1.0, 1 / 3])
    assert list(adam["mean"]) == [8.5, 6.5, 4.5, 2.5]
    assert adam["chosen"].tolist() == [False, False, False, True]
    assert (adam["ci_low"] <= adam["mean"]).all() and (adam["mean"] <= adam["ci_high"]).all()
    chosen = g[g["chosen"]].set_index("cell")
    best = tables.main_table(ratio_sweep(), "objective").set_index("cell")
    assert chosen["lr_g"].to_dict() == best["lr_g"].to_dict()
    same = tables.main_table(ratio_sweep(), "objective", grid=True)
    pd.testing.assert_frame_equal(same, g)
    md = tables.to_markdown(g)
    assert md.splitlines()[0].startswith("| setting | optimizer | lr_D | lr_G | lr_D/lr_G |")
    assert "| 0.001 | 0.003 | 0.333 | 2.5 ± 0.71 | 2 | tuning |" in md and "| chosen |" in md


def test_a_choice_at_the_edge_of_its_grid_is_flagged():
    t = tables.main_table(ratio_sweep(), "objective").set_index("cell")
    assert t["edge"].to_dict() == {"adam": "high", "nsgda": "low", "sgda": ""}
    warnings = t.attrs["warnings"]
    assert len(warnings) == 2
    assert "cell=adam: the chosen lr_g = 0.003 is the largest of the 4 tried" in warnings[0]
    assert "cell=nsgda: the chosen lr_g = 0.0001 is the smallest of the 4 tried" in warnings[1]
    md = tables.to_markdown(t.reset_index())
    assert "| grid edge |" in md.splitlines()[0]
    assert md.splitlines()[-2:] == [f"Warning: {w}" for w in warnings]
    assert tables.grid_table(ratio_sweep(), "objective").attrs["warnings"] == warnings
    # an inner best is no edge: drop adam's largest step size... still the edge of the rest
    inner = ratio_sweep()[lambda d: ~((d["cell"] == "adam") & (d["lr_g"] == 1e-4))]
    inner = pd.concat([inner, frame(seeds("adam", (1e-3, 1e-2), [30.0, 31.0]))])
    assert tables.main_table(inner, "objective").set_index("cell").loc["adam", "edge"] == ""


def test_the_ratio_to_a_zero_reference_says_why_it_is_undefined():
    df = frame(
        seeds("adam", 1e-3, [0.0, 0.0, 0.0]),
        seeds("nsgda", 1e-3, [0.2, 0.4, 0.3]),
        seeds("adam", 1e-3, [2.0, 2.0], model="other"),
        seeds("nsgda", 1e-3, [1.0, 1.0], model="other"),
        seeds("sgda", 1e-3, [1.0, 2.0], model="lonely"),
    )
    t = tables.main_table(df, "objective")
    shown = tables.display(t).set_index(["setting", "optimizer"])["ratio to Adam"]
    assert shown[("mog/d/m", "nsgda")] == "undefined (Adam = 0); diff 0.3"
    assert shown[("mog/d/m", "adam")] == "undefined (Adam = 0)"
    assert shown[("mog/d/other", "nsgda")] == "0.5"  # defined: 1 / 2
    assert shown[("mog/d/lonely", "sgda")] == "-"  # no reference in its group
    assert np.isnan(t.set_index(["model", "cell"]).loc[("m", "nsgda"), "ratio"])
