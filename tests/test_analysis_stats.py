"""analysis.stats through main_table: intervals cover, tests match hand computations.

Frames are built like tests/test_analysis_tables.py builds them: one final row per seed, seeds
and step sizes with different values, so that a statistic computed on the wrong sample fails.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis import stats, tables


def seeds(cell, lr, values, metric="objective", status=None, model="m", **extra):
    """Final rows of one (cell, step size): a seed per value; NaN is a diverged seed."""
    rows = []
    for seed, v in enumerate(values):
        failed = isinstance(v, float) and math.isnan(v)
        rows.append(
            {
                "sweep": "s",
                "trial_id": f"{cell}-{model}-{lr}-{seed}",
                "iteration": 1,
                "experiment": "mog",
                "dataset": "d",
                "model": model,
                "cell": cell,
                "optimizer": cell,
                "lr_d": lr,
                "lr_g": lr,
                "seed": seed,
                "status": status or ("diverged" if failed else "finished"),
                metric: v,
                **extra,
            }
        )
    return rows


def frame(*groups):
    return pd.DataFrame([r for g in groups for r in g])


def sigma3(n_sets: int, p: float = 0.95) -> float:
    """3 standard deviations of a coverage rate over n_sets independent data sets."""
    return 3 * math.sqrt(p * (1 - p) / n_sets)


def coverage(draw, truth, n, n_sets, metric="objective", column=None, rng_seed=1):
    """Share of n_sets simulated data sets (n seeds each) whose main_table interval covers
    ``truth``; one group (model) per data set, so one main_table call computes them all."""
    rng = np.random.default_rng(rng_seed)
    column = column or metric
    rows = [r for i in range(n_sets) for r in seeds("nsgda", 0.1, draw(rng, n), column, model=i)]
    t = tables.main_table(pd.DataFrame(rows), metric, n_resamples=2000)
    assert len(t) == n_sets
    return float(((t["ci_low"] <= truth) & (truth <= t["ci_high"])).mean())


N_SETS = 400
NORMAL = (lambda rng, n: list(rng.normal(5.0, 2.0, n)), 5.0)
EXPONENTIAL = (lambda rng, n: list(rng.exponential(1.0, n)), 1.0)


@pytest.mark.parametrize("dist", [NORMAL, EXPONENTIAL], ids=["normal", "exponential"])
def test_bootstrap_interval_covers_the_true_mean_at_the_nominal_rate(dist):
    # n = 30: the BCa interval is close to nominal (measured 0.935 normal, 0.94 exponential)
    rate = coverage(*dist, n=30, n_sets=N_SETS)
    assert abs(rate - 0.95) <= sigma3(N_SETS), rate


@pytest.mark.parametrize("dist", [NORMAL, EXPONENTIAL], ids=["normal", "exponential"])
def test_bootstrap_interval_under_covers_a_little_at_ten_seeds(dist):
    # At n = 10 (a sweep's seeds) the bootstrap under-covers: measured 0.89 (normal) and 0.88
    # (exponential) for a nominal 0.95, because it resamples the plug-in distribution (spread
    # smaller by sqrt(9/10)) with normal quantiles. This is a known property of the bootstrap,
    # documented in analysis.stats; the lower bound allows it explicitly (0.07 below nominal),
    # the upper bound is the plain binomial one, so an interval that is too wide (mean ± std,
    # which covers ~100%) fails.
    rate = coverage(*dist, n=10, n_sets=N_SETS)
    assert 0.95 - 0.07 - sigma3(N_SETS) <= rate <= 0.95 + sigma3(N_SETS), rate


def test_wilson_interval_of_a_share_covers_at_the_nominal_rate():
    # Bernoulli(0.3) verdicts, 12 seeds: Wilson's exact coverage at (12, 0.3) is 0.9476
    p, n = 0.3, 12

    def draw(rng, n):
        return list(np.where(rng.random(n) < p, "both", "u1"))

    rate = coverage(draw, p, n, N_SETS, metric="both", column="verdict")
    assert abs(rate - 0.95) <= sigma3(N_SETS), rate


def both_table(verdicts):
    rows = seeds("nsgda", 0.1, verdicts, metric="verdict")
    return tables.main_table(pd.DataFrame(rows).assign(experiment="bimodal"), "both")


def test_wilson_interval_is_the_hand_formula():
    t = both_table(["both", "both", "both"])  # 3/3: a bootstrap would say [1, 1]
    z, n, p = 1.959963984540054, 3, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert t["ci_low"].item() == pytest.approx(centre - half)
    assert t["ci_high"].item() == pytest.approx(min(1.0, centre + half))
    assert "Wilson" in tables.caption(t)
    t = both_table(["both", "u1", "none", "u2"])
    n, p = 4, 0.25
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (t["ci_low"].item(), t["ci_high"].item()) == pytest.approx(
        (centre - half, centre + half)
    )


def two_cells(x, y, lower=True, other_step=True):
    """adam (the reference) with seeds y, nsgda with seeds x, each also at a worse step size."""
    metric = "objective" if lower else "modes_covered"
    worse = (lambda v: [a + 100 for a in v]) if lower else (lambda v: [a - 100 for a in v])
    groups = [seeds("adam", 1e-3, y, metric), seeds("nsgda", 1e-2, x, metric)]
    if other_step:
        groups += [seeds("adam", 1e-4, worse(y), metric), seeds("nsgda", 1e-1, worse(x), metric)]
    return tables.main_table(frame(*groups), metric).set_index("cell"), metric


def exact_two_sided_p(x, y):
    """Hand-made permutation test over every split of the pooled seeds: twice the smaller
    one-sided p (scipy's two-sided; for equal sizes the share of splits with |diff| >=
    |observed|), at most 1."""
    pooled, n = list(x) + list(y), len(x)
    obs = np.mean(x) - np.mean(y)
    null = []
    for idx in itertools.combinations(range(len(pooled)), n):
        a = [pooled[i] for i in idx]
        b = [pooled[i] for i in range(len(pooled)) if i not in idx]
        null.append(np.mean(a) - np.mean(b))
    null = np.array(null)
    less, greater = np.mean(null <= obs + 1e-12), np.mean(null >= obs - 1e-12)
    return min(1.0, 2 * min(less, greater))


def test_p_value_and_p_improve_match_hand_computations():
    t, _ = two_cells([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    r = t.loc["nsgda"]
    assert (r["lr_g"], t.loc["adam", "lr_g"]) == (1e-2, 1e-3)
    assert r["p_value"] == pytest.approx(2 / 20)  # exact: 2 of the 20 splits are as extreme
    assert r["p_value"] == pytest.approx(exact_two_sided_p([1, 2, 3], [4, 5, 6]))
    assert r["p_improve"] == 1.0  # lower is better: every nsgda seed beats every adam seed
    assert r["diff"] == -3.0 and r["diff_low"] <= r["diff_high"] < 0
    # higher is better: the same seeds never beat the reference
    t, _ = two_cells([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], lower=False)
    assert t.loc["nsgda", "p_improve"] == 0.0 and t.loc["nsgda", "diff"] == -3.0
    assert t.loc["nsgda", "diff_high"] < 0


def test_ties_count_one_half():
    x, y = [1.0, 2.0, 2.0], [2.0, 3.0, 3.0]
    # pairs: 1 beats 2,3,3 (3); each 2 ties 2 (1/2) and beats 3,3 (2): (3 + 2.5 + 2.5) / 9
    t, _ = two_cells(x, y)
    assert t.loc["nsgda", "p_improve"] == pytest.approx(8 / 9)
    t, _ = two_cells(x, y, lower=False)
    assert t.loc["nsgda", "p_improve"] == pytest.approx(1 / 9)
    assert t.loc["nsgda", "p_value"] == pytest.approx(exact_two_sided_p(x, y))


def test_the_reference_row_has_no_comparison():
    t, _ = two_cells([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    for c in ("diff", "diff_low", "diff_high", "p_improve", "p_value"):
        assert math.isnan(t.loc["adam", c]), c
    assert 4.0 <= t.loc["adam", "ci_low"] < 5.0 < t.loc["adam", "ci_high"] <= 6.0
    assert t["is_reference"].to_dict() == {"adam": True, "nsgda": False}
    md = tables.to_markdown(t.reset_index())
    assert "| reference |" in md


def test_diff_and_its_interval_on_a_larger_sample():
    rng = np.random.default_rng(5)  # two samples of about the same spread
    x, y = list(rng.normal(10, 1, 10)), list(rng.normal(20, 1, 10))
    t, _ = two_cells(x, y)
    r = t.loc["nsgda"]
    assert r["diff"] == pytest.approx(np.mean(x) - np.mean(y))
    assert r["diff_low"] < r["diff"] < r["diff_high"] < 0
    # both samples are resampled: the interval of the difference is about as wide as the two
    # intervals of the means added in quadrature (one alone would be ~0.7 of it here)
    width = r["diff_high"] - r["diff_low"]
    ref = t.loc["adam"]
    both = math.hypot(r["ci_high"] - r["ci_low"], ref["ci_high"] - ref["ci_low"])
    assert 0.9 < width / both < 1.1
    # 184756 distinct splits: a seeded random permutation test; p is tiny, and reproducible
    assert r["p_value"] < 1e-3 and r["p_improve"] == 1.0
    again, _ = two_cells(x, y)
    cols = ["ci_low", "ci_high", "diff_low", "diff_high", "p_value"]
    assert list(again.loc["nsgda", cols]) == list(r[cols])
    # the interval follows the level
    narrow = tables.main_table(
        frame(seeds("adam", 1e-3, y), seeds("nsgda", 1e-2, x)), "objective", level=0.5
    ).set_index("cell")
    assert (
        r["ci_low"]
        < narrow.loc["nsgda", "ci_low"]
        < narrow.loc["nsgda", "ci_high"]
        < (r["ci_high"])
    )
    assert "50% CI" in tables.to_markdown(narrow.reset_index())


def test_iqm_only_from_eight_seeds_and_equal_to_a_hand_computation():
    eight = [7.0, 1.0, 100.0, 3.0, 5.0, 2.0, 6.0, 4.0]
    t = tables.main_table(frame(seeds("adam", 1e-3, eight)), "objective")
    # sorted 1..7, 100: a quarter (2) off each end leaves 3, 4, 5, 6
    assert t["iqm"].item() == 4.5
    t = tables.main_table(frame(seeds("adam", 1e-3, eight[:7])), "objective")
    assert math.isnan(t["iqm"].item())


def test_degenerate_samples():
    t = tables.main_table(
        frame(
            seeds("adam", 1e-3, [5.0, 5.0, 5.0]),
            seeds("nsgda", 1e-3, [2.0]),
            seeds("sgda", 1e-3, [3.0, 3.0]),
        ),
        "objective",
    ).set_index("cell")
    assert (t.loc["adam", "ci_low"], t.loc["adam", "ci_high"]) == (5.0, 5.0)
    assert math.isnan(t.loc["nsgda", "ci_low"]) and math.isnan(t.loc["nsgda", "ci_high"])
    # one seed: a difference and p_improve, no interval and no permutation test
    assert t.loc["nsgda", "diff"] == -3.0 and t.loc["nsgda", "p_improve"] == 1.0
    assert math.isnan(t.loc["nsgda", "diff_low"]) and math.isnan(t.loc["nsgda", "p_value"])
    # two constant samples: the difference is known exactly
    assert (t.loc["sgda", "diff_low"], t.loc["sgda", "diff_high"]) == (-2.0, -2.0)
    # 1 of the 10 splits puts both 3s in sgda; unequal sizes: twice the one-sided 1/10
    assert t.loc["sgda", "p_value"] == pytest.approx(0.2)
    assert t.loc["sgda", "p_value"] == pytest.approx(exact_two_sided_p([3, 3], [5, 5, 5]))
    # two distinct seeds: a finite interval (BCa, else percentile)
    t = tables.main_table(frame(seeds("adam", 1e-3, [1.0, 2.0])), "objective")
    assert 1.0 <= t["ci_low"].item() < t["ci_high"].item() <= 2.0


NAN = float("nan")


def test_failed_seeds_are_penalised_or_left_out():
    ref = [20.0, 22.0, 23.0]
    groups = [
        seeds("adam", 1e-3, ref),
        seeds("nsgda", 1e-2, [10.0, 12.0, NAN]),  # one seed diverged
        seeds("nsgda", 1e-1, [30.0, 31.0, 32.0]),
    ]
    left_out = tables.main_table(frame(*groups), "objective").set_index("cell")
    r = left_out.loc["nsgda"]
    assert r["lr_g"] == 1e-1  # no penalty: fewer failed seeds first
    groups[2] = seeds("nsgda", 1e-1, [90.0, 91.0, 92.0])
    left_out = tables.main_table(frame(*groups[:2]), "objective").set_index("cell")
    r = left_out.loc["nsgda"]
    assert r["diverged"] == 1 and r["n"] == 2
    assert r["diff"] == pytest.approx(11 - np.mean(ref)) and r["p_improve"] == 1.0
    assert 10.0 <= r["ci_low"] < r["ci_high"] <= 12.0
    assert left_out.attrs["stats"]["failed"] == "excluded"
    assert "left out" in tables.caption(left_out)

    pen = tables.main_table(frame(*groups), "objective", penalty=50.0).set_index("cell")
    r = pen.loc["nsgda"]
    assert r["lr_g"] == 1e-2 and r["score"] == pytest.approx(24.0)  # (10 + 12 + 50) / 3
    assert r["mean"] == 11.0  # mean/std/n are of the seeds with a value, as before
    assert r["diff"] == pytest.approx(24.0 - np.mean(ref))
    # 10 and 12 beat every reference seed, the penalised one none: 6 of 9 pairs
    assert r["p_improve"] == pytest.approx(6 / 9)
    assert r["ci_high"] > 12.0  # the penalised seed is in the sample
    assert r["p_value"] == pytest.approx(exact_two_sided_p([10.0, 12.0, 50.0], ref))
    assert pen.attrs["stats"]["failed"] == "penalised" and pen.attrs["penalty"] == 50.0
    assert "count as 50" in tables.caption(pen)


def test_higher_is_better_chooses_the_highest_mean_step_size():
    # modes covered: 1e-3 covers most; a lower-is-better ranking would choose 1e-2
    t = tables.main_table(
        frame(
            seeds("adam", 1e-3, [7.0, 7.0, 8.0], "modes_covered"),
            seeds("adam", 1e-2, [2.0, 3.0, 2.0], "modes_covered"),
            seeds("nsgda", 1e-3, [4.0, 5.0, 4.0], "modes_covered"),
            seeds("nsgda", 1e-2, [8.0, 8.0, 7.0], "modes_covered"),
        ),
        "modes_covered",
    ).set_index("cell")
    assert t.loc["adam", "lr_g"] == 1e-3 and t.loc["adam", "mean"] == pytest.approx(22 / 3)
    assert t.loc["nsgda", "lr_g"] == 1e-2
    # nsgda 8, 8, 7 against adam 7, 7, 8: wins 2+2+1 = 5... ties (8,8), (7,7), (7,7): 1/2 each
    x, y = [8.0, 8.0, 7.0], [7.0, 7.0, 8.0]
    hand = sum((a > b) + 0.5 * (a == b) for a in x for b in y) / 9
    assert t.loc["nsgda", "p_improve"] == pytest.approx(hand) == pytest.approx(6 / 9)


def test_output_formats_show_and_save_the_statistics():
    t, _ = two_cells([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    t = t.reset_index()
    md = tables.to_markdown(t)
    head = md.splitlines()[0]
    assert "| 95% CI | vs Adam: diff [CI], p_improve, p |" in head
    assert "-3 [" in md and ", 1, p=0.1 |" in md
    assert md.splitlines()[-1] == tables.caption(t)
    assert "95% CI of the mean: BCa bootstrap, 10000 resamples, seed 0" in tables.caption(t)
    assert "permutation test" in tables.caption(t)
    assert tables.caption(t) not in tables.to_markdown(t, with_caption=False)
    tex = tables.to_latex(t)
    assert r"95\% CI" in tex and tex.splitlines()[-1].startswith("% ")
    back = pd.read_csv(io.StringIO(tables.to_csv(t)))
    for c in tables.STATS_COLUMNS:
        assert c in back.columns and pd.api.types.is_float_dtype(back[c]), c
    assert back.set_index("cell").loc["nsgda", "p_value"] == pytest.approx(0.1)
    assert "values" not in back.columns


def test_stats_helpers_directly():
    s = stats.Settings(n_resamples=999)
    assert stats.p_improve([1, 2], [2, 3], higher_is_better=False) == pytest.approx(3.5 / 4)
    assert stats.iqm(range(8)) == pytest.approx(3.5)
    assert math.isnan(stats.mean_ci([], s)[0]) and math.isnan(stats.p_value([1, 2], [], s))


def test_a_group_without_the_reference_has_no_comparison():
    t = tables.main_table(
        frame(seeds("nsgda", 1e-2, [1.0, 2.0, 3.0]), seeds("sgda", 1e-2, [4.0, 5.0, 6.0])),
        "objective",
    )
    assert not t["is_reference"].any() and t["diff"].isna().all() and t["p_value"].isna().all()
    assert t["ci_low"].notna().all()
    assert "| [1, 3] | - |" in tables.to_markdown(t)


def test_a_sweeps_0_1_objective_gets_the_wilson_interval():
    """miss_both is 0 or 1 per seed: its sweep table passes binary=True (objectives.binary)."""
    from sweeps.engine.objectives import OBJECTIVES

    df = frame(seeds("nsgda", 0.1, [0.0, 0.0, 0.0]))
    plain = tables.main_table(df, "objective")
    assert (plain["ci_low"].item(), plain["ci_high"].item()) == (0.0, 0.0)  # says nothing
    assert OBJECTIVES["miss_both"].binary and not OBJECTIVES["mode_kl"].binary
    t = tables.main_table(df, "objective", binary=OBJECTIVES["miss_both"].binary)
    z, n = 1.959963984540054, 3
    assert t["ci_low"].item() == pytest.approx(0.0, abs=1e-12)
    assert t["ci_high"].item() == pytest.approx((z * z / n) / (1 + z * z / n))  # Wilson at 0/3
    assert "Wilson" in tables.caption(t) and "Wilson" not in tables.caption(plain)
