"""The rung replay (benchmarks/rung_placement.py) on hand-built rows whose answer is worked out
here: each seed counted as the searcher counts it, the compute and choice of synchronous
halving by hand, and the ranking of each point against the final scores."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rung_placement.py"
PENALTY = 5.0  # mode_kl's
STEPS, EVERY = 400, 100


def _bench():
    sys.path.insert(0, str(SCRIPT.parent))  # it imports search_cost beside it
    spec = importlib.util.spec_from_file_location("rung_placement", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()


def rows(
    curves: dict[float, list[list[float | None]]], ends: dict | None = None, errored=()
) -> pd.DataFrame:
    """Rows of one mog grid cell: ``curves[lr][seed]`` its objective at 100, 200, ... (None:
    diverged there, the run's last row); ``ends[(lr, seed)]`` a step where a stop rule ended it;
    the (lr, seed) in ``errored`` errored after their last row."""
    ends = ends or {}
    out = []
    for lr, seeds in curves.items():
        for seed, values in enumerate(seeds):
            for k, v in enumerate(values):
                step = EVERY * (k + 1)
                last = (lr, seed) in ends and step >= ends[(lr, seed)]
                out.append(
                    dict(
                        sweep="s_nostop",
                        cell="adam",
                        experiment="mog",
                        stage="tune",
                        lr_d=lr,
                        lr_g=lr,
                        seed=seed,
                        step=min(step, ends.get((lr, seed), step)),
                        steps=STEPS,
                        objective=v,
                        diverged=v is None,
                        status="errored" if (lr, seed) in errored else "finished",
                        **{"config/eval_every": EVERY},
                    )
                )
                if v is None or last:
                    break
    return pd.DataFrame(out)


def test_seeds_count_as_the_searcher_counts_them():
    # lr 0.1: seed 1 diverges at 200 (the penalty from there); lr 0.01: seed 1 ended by a stop
    # rule at 250 with 0.5 (that value from there on)
    # rule at 250 with 0.5 (that value from there on); lr 0.001: seed 1 errored after its report
    # at 200 (that report at 200, the penalty after)
    df = rows(
        {
            0.1: [[1, 2, 3, 4], [1, None]],
            0.01: [[2, 2, 2, 2], [1, 1, 0.5]],
            0.001: [[1, 1, 1, 1], [2, 2]],
        },
        ends={(0.01, 1): 250},
        errored={(0.001, 1)},
    )
    [c] = bench.curves(df, "_nostop", "~tpe", {"mog": "mode_kl"})
    assert c.points == [100, 200, 300]
    assert c.mean[(0.1, 0.1)] == {100: 1.0, 200: (2 + PENALTY) / 2, 300: (3 + PENALTY) / 2}
    assert c.mean[(0.01, 0.01)] == {100: 1.5, 200: 1.5, 300: (2 + 0.5) / 2}
    assert c.mean[(0.001, 0.001)] == {100: 1.5, 200: 1.5, 300: (1 + PENALTY) / 2}
    assert c.final == {
        (0.1, 0.1): (4 + PENALTY) / 2,
        (0.01, 0.01): (2 + 0.5) / 2,
        (0.001, 0.001): (1 + PENALTY) / 2,
    }
    assert c.choice() == (0.01, 0.01)


def test_synchronous_halving_by_hand():
    # three step sizes, two seeds; at 100 lr 1e-3 ranks best though lr 1e-2 ends best
    curves = {
        1e-3: [[1, 1, 1, 1], [1, 1, 1, 1]],
        1e-2: [[3, 2, 0.5, 0.2], [3, 2, 0.5, 0.2]],
        1e-1: [[4, 4, 4, 4], [4, 4, 4, 4]],
    }
    [c] = bench.curves(rows(curves), "_nostop", "~tpe", {"mog": "mode_kl"})
    assert c.choice() == (1e-2, 1e-2)
    # rung at 100, factor 3: keep 1 of 3 (lr 1e-3), which trains to the end and is chosen
    share, lr = bench.replay(c, 100, 3)
    assert lr == (1e-3, 1e-3) and not c.same(lr)
    assert share == pytest.approx((3 * 2 * 100 + 2 * 300) / (3 * 2 * 400))
    # rung at 300, factor 2: lr 1e-2 leads there (0.5), keep 1 of 3
    share, lr = bench.replay(c, 300, 2)
    assert lr == (1e-2, 1e-2) and c.same(lr)
    assert share == pytest.approx((3 * 2 * 300 + 2 * 100) / (3 * 2 * 400))
    # factor 2 from 100: rungs 100 (keep 1 of 3: lr 1e-3) and 200 (one left: no decision)
    assert bench.replay(c, 100, 2)[1] == (1e-3, 1e-3)
    # rho and the choice's rank at each point
    ranked = bench.rankings(c)
    assert [f for f, _, _ in ranked] == [0.25, 0.5, 0.75]
    assert [rank for _, _, rank in ranked] == [2, 2, 1]
    # at 100 the ranks (1, 2, 3) against the final (2, 1, 3): 1 - 6 * 2 / (3 * 8)
    assert ranked[0][1] == pytest.approx(0.5) and ranked[2][1] == pytest.approx(1.0)


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "analysis" / "tune_output"


def test_the_command_line_refuses_bad_input_before_any_work(tmp_path, monkeypatch, capsys):
    import analysis

    assert bench.main([str(tmp_path / "missing")]) == 3
    assert "no such dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        bench.main([str(tmp_path), "--metric", "mog=kl"])
    assert bad.value.code == 2 and "mog=kl" in capsys.readouterr().err
    dest = tmp_path / "dataset"
    analysis.collect(str(FIXTURE), str(dest))  # bimodal, mog and wgangp sweeps
    monkeypatch.setattr(bench, "metrics", lambda: {"bimodal": "miss_both", "mog": "mode_kl"})
    with pytest.raises(SystemExit) as unknown:
        bench.main([str(dest), "--sweep-suffix", ""])
    err = capsys.readouterr().err
    assert unknown.value.code == 2 and "experiment wgangp" in err and "--metric wgangp=" in err
    assert bench.main([str(dest), "--sweep-suffix", "", "--metric", "wgangp=fid"]) == 0
    assert "| 0.2 | " in capsys.readouterr().out
