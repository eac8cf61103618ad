"""analysis.tables: hand-made frames for the edge cases, the real fixture for the main table."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import tables

FIXTURE = Path(__file__).parent / "fixtures" / "analysis" / "tune_output"
PROTOCOL = {
    "fid_num_gen": 50000,
    "fid_ref": "cifar10_32px_train",
    "fid_mode": "clean",
    "fid_extractor": "inception-v3",
}


def trial(cell, lr, seed, fids, status="finished", dataset="cifar10", **protocol):
    """Rows of one hand-made trial: one report per FID value, final on the last one."""
    rows = []
    for i, fid in enumerate(fids, start=1):
        rows.append(
            {
                "sweep": f"wgangp_{dataset}",
                "trial_id": f"{cell}-{dataset}-{lr}-{seed}",
                "iteration": i,
                "experiment": "wgangp",
                "dataset": dataset,
                "model": "wgangp_resnet",
                "cell": cell,
                "optimizer": cell,
                "lr_d": lr,
                "lr_g": lr,
                "seed": seed,
                "step": 1000 * i,
                "status": status,
                "fid": fid,
                **{**PROTOCOL, **protocol},
            }
        )
    return rows


def frame(*trials):
    return pd.DataFrame([r for t in trials for r in t])


def test_best_step_size_mean_std_n_and_ratio_to_adam():
    df = frame(
        trial("adam", 1e-4, 0, [80, 20.0]),
        trial("adam", 1e-4, 1, [80, 22.0]),
        trial("adam", 1e-3, 0, [80, 30.0]),
        trial("adam", 1e-3, 1, [80, 34.0]),
        trial("nsgda", 1e-2, 0, [60, 10.0]),
        trial("nsgda", 1e-2, 1, [60, 12.0]),
        trial("nsgda", 1e-2, 2, [60, 14.0]),
    )
    t = tables.main_table(df, "fid").set_index("cell")
    assert t.loc["adam", "lr_g"] == 1e-4 and t.loc["adam", "mean"] == 21.0
    assert t.loc["adam", "std"] == pytest.approx(np.std([20, 22], ddof=1))
    assert t.loc["nsgda", "n"] == 3 and t.loc["nsgda", "mean"] == 12.0
    assert t.loc["nsgda", "ratio"] == pytest.approx(12 / 21) and t.loc["adam", "ratio"] == 1.0
    assert "n=50000 ref=cifar10_32px_train" in t.loc["adam", "protocol"]


def test_missing_seeds_are_shown_in_n_and_a_single_seed_has_no_std():
    df = frame(
        trial("adam", 1e-4, 0, [25.0]),
        trial("adam", 1e-4, 1, [27.0]),
        trial("adam", 1e-4, 2, [29.0]),
        trial("sgda", 1e-2, 0, [40.0]),  # seeds 1 and 2 never ran
    )
    t = tables.main_table(df, "fid").set_index("cell")
    assert (
        t.loc["sgda", "n"] == 1 and t.loc["sgda", "seeds"] == 1 and math.isnan(t.loc["sgda", "std"])
    )
    assert t.loc["adam", "n"] == 3
    md = tables.to_markdown(tables.main_table(df, "fid"))
    assert "| sgda | 0.01 | 0.01 | 40 | 1 | tuning | 0/1 |" in md


def test_diverged_seeds_are_counted_and_rank_a_step_size_down():
    diverging = [
        trial("adam", 1e-3, 0, [30.0, 10.0]),
        trial("adam", 1e-3, 1, [30.0, 12.0]),
        trial("adam", 1e-3, 2, [30.0, np.nan], status="diverged"),
    ]
    stable = [trial("adam", 1e-4, s, [30.0, 14.0]) for s in range(3)]
    df = frame(*diverging, *stable)
    steps = tables.step_size_table(df, "fid").set_index("lr_g")
    assert steps.loc[1e-3, "diverged"] == 1 and steps.loc[1e-3, "n"] == 2
    assert steps.loc[1e-3, "mean"] == 11.0  # the diverged seed has no FID, it is not a zero
    best = tables.main_table(df, "fid")
    assert best["lr_g"].item() == 1e-4  # fewer diverged seeds first
    # with a penalty, 1e-3 scores (10 + 12 + 13) / 3 < 14 and wins
    best = tables.main_table(df, "fid", penalty=13.0)
    assert best["lr_g"].item() == 1e-3 and best["diverged"].item() == 1
    assert "| 1/3 |" in tables.to_markdown(best)


def test_a_running_trial_is_counted_but_not_averaged():
    df = frame(
        trial("adam", 1e-4, 0, [20.0]),
        trial("adam", 1e-4, 1, [22.0]),
        trial("adam", 1e-4, 2, [90.0], status="running"),
    )
    t = tables.main_table(df, "fid")
    assert t["mean"].item() == 21.0 and t["n"].item() == 2 and t["running"].item() == 1


def test_mixed_fid_protocols_are_refused_and_can_be_split():
    df = frame(
        trial("adam", 1e-4, 0, [20.0]),
        trial("nsgda", 1e-4, 0, [18.0], fid_num_gen=5000),
        trial("adam", 1e-4, 0, [40.0], dataset="stl10", fid_ref="stl10_48px_unlabeled"),
    )
    with pytest.raises(tables.ProtocolError, match="dataset=cifar10.*n=5000.*n=50000"):
        tables.main_table(df, "fid")
    split = tables.main_table(df, "fid", by_protocol=True)
    assert len(split) == 3 and split["protocol"].nunique() == 3
    # ratio only within one protocol: nsgda has no Adam under its protocol
    assert (
        split.set_index("cell").loc["nsgda", "ratio"]
        != split.set_index("cell").loc["nsgda", "ratio"]
    )
    # one protocol per dataset is fine: different datasets are never compared
    ok = tables.main_table(df[df["fid_num_gen"] == 50000], "fid")
    assert sorted(ok["dataset"]) == ["cifar10", "stl10"]
    # task metrics carry no protocol
    assert tables.step_size_table(df, "modes_covered")["protocol"].eq("").all()


def test_task_metrics_share_of_both_verdicts():
    rows = []
    for cell, verdicts in (("sgda", ["u1", "none", "both"]), ("nsgda", ["both", "both", "both"])):
        for seed, v in enumerate(verdicts):
            rows.append(
                {
                    "sweep": "bimodal",
                    "trial_id": f"{cell}{seed}",
                    "iteration": 1,
                    "experiment": "bimodal",
                    "dataset": "bimodal",
                    "model": "bimodal",
                    "cell": cell,
                    "optimizer": cell,
                    "lr_d": 0.1,
                    "lr_g": 0.1,
                    "seed": seed,
                    "status": "finished",
                    "verdict": v,
                }
            )
    t = tables.main_table(pd.DataFrame(rows), "both", reference="sgda").set_index("cell")
    assert t.loc["sgda", "mean"] == pytest.approx(1 / 3) and t.loc["nsgda", "mean"] == 1.0
    assert t.loc["nsgda", "ratio"] == pytest.approx(3.0)


def test_output_formats():
    df = frame(trial("adam", 1e-4, 0, [20.0]), trial("adam", 1e-4, 1, [22.0]))
    t = tables.main_table(df, "fid")
    md = tables.to_markdown(t)
    assert md.splitlines()[0].startswith("| setting | optimizer | lr_D | lr_G | final FID")
    assert "21 ± 1.4" in md
    tex = tables.to_latex(t)
    assert r"21 $\pm$ 1.4" in tex and tex.startswith(r"\begin{tabular}") and "lr\\_D" in tex
    back = pd.read_csv(io.StringIO(tables.to_csv(t)))
    assert back.loc[0, "mean"] == 21.0 and back.loc[0, "n"] == 2


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    dest = tmp_path_factory.mktemp("real") / "results"
    analysis.collect(str(FIXTURE), str(dest))
    return analysis.load(str(dest))


def test_main_table_on_real_fid_output_matches_a_hand_computation(real):
    image = real[real["experiment"] == "wgangp"]
    final = image.sort_values("iteration").groupby("trial_id").tail(1)
    means = final.groupby(["cell", "lr_d", "lr_g"])["fid"].mean()
    t = tables.main_table(image, "fid").set_index("cell")
    for cell in t.index:
        best = means.loc[cell].idxmin()
        assert (t.loc[cell, "lr_d"], t.loc[cell, "lr_g"]) == best
        assert t.loc[cell, "mean"] == pytest.approx(means.loc[cell].min())
        assert t.loc[cell, "n"] == 2 and t.loc[cell, "diverged"] == 0
    assert t.loc["adam", "ratio"] == 1.0


def test_task_tables_on_real_output(real):
    for exp in ("bimodal", "mog"):
        sub = real[real["experiment"] == exp]
        t = tables.main_table(sub, tables.metric_for(exp))
        assert set(t["cell"]) == set(sub["cell"]) and (t["n"] == 2).all()
        assert t["mean"].between(0, 8).all()


def test_objective_table_is_what_the_sweep_engine_computes(real):
    """The engine's end-of-sweep table: per cell, lowest mean objective over seeds."""
    sub = real[real["sweep"] == "mog"]
    t = tables.main_table(sub, "objective", penalty=1.0).set_index("cell")
    final = tables.final_rows(sub)
    means = final.groupby(["cell", "lr_d", "lr_g"])["objective"].mean()
    for cell in t.index:
        assert t.loc[cell, "mean"] == pytest.approx(means.loc[cell].min())
        assert (t.loc[cell, "lr_d"], t.loc[cell, "lr_g"]) == means.loc[cell].idxmin()


def test_an_unknown_metric_is_named_with_the_known_ones():
    import pandas as pd

    from analysis import tables

    with pytest.raises(ValueError, match=r"metric 'modekl' is unknown; known: fid, .*mode_kl"):
        tables.main_table(pd.DataFrame({"x": [1]}), "modekl")
