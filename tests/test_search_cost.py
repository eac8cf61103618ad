"""The cost benchmark's comparison (benchmarks/search_cost.py) at its smallest: what its numbers
rest on. The rules on plain values (within 5%, TPE's trials to get there, the values its study
was told), then one cell end to end on a real local Ray: the full grid's compute counted from
the collected rows is steps x trials, early stopping's is lower by exactly the pruned seeds'
untrained steps, the choice is the same and the summary line says so."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from grid_seeds import grid_seed_asking_first

from sweeps.engine import EarlyStopping

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_cost.py"
GOOD, BAD = 1e-3, 3.0  # adam on mog: lr 3 collapses every seed (mode_kl log 8) from step 100
STEPS, EVERY = 200, 100
LINE = re.compile(
    r"^search cost: early stopping (\d+)% of the grid's compute, same choice in (\d+)/(\d+) "
    r"cells; tpe (\d+)% of the grid's trials to within 5% of its best$"
)


def _bench():
    """benchmarks/ is scripts, not a package: load the benchmark from its file."""
    spec = importlib.util.spec_from_file_location("search_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _bench()


def test_within_five_percent_is_relative_to_the_best_and_exact_at_zero():
    assert bench.within(1.05, 1.0) and not bench.within(1.06, 1.0)
    assert bench.within(0.5, 1.0)  # better than the grid's best is within
    assert bench.within(0.0, 0.0) and not bench.within(1 / 3, 0.0)
    assert bench.within(-0.96, -1.0) and not bench.within(-0.9, -1.0)


def test_tpe_trials_to_within_count_from_one_and_skip_pruned_step_sizes():
    assert bench.trials_to_within([3.0, None, 1.04, 0.5], 1.0) == 3
    assert bench.trials_to_within([1.0], 1.0) == 1
    assert bench.trials_to_within([None, 2.0], 1.0) is None
    c = bench.CellCost("s", "adam", grid_size=4, to_within={"tpe": 1, "tpe+stop": None})
    assert c.tpe_share("tpe") == 0.25
    assert c.tpe_share("tpe+stop") == 1.0  # never: its whole budget
    assert c.needed("tpe+stop") == "never (4)"


def test_told_values_are_the_penalised_mean_of_final_objectives_in_study_order():
    rows = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "c", "d", "e"],
            "iteration": [1, 2, 1, 1, 1, 1],
            "study_trial": [1, 1, 1, 0, 0, 2],
            "objective": [9.0, 2.0, 4.0, 1.0, 0.5, 7.0],
            "diverged": [False, False, False, False, True, False],
            "status": ["finished"] * 4 + ["diverged", "pruned"],
        }
    )
    # trial 0: seeds 1.0 and a diverged one (the penalty 5, whatever its row says);
    # trial 1: its last rows, 2 and 4; trial 2 pruned
    assert bench.told_values(rows, penalty=5.0) == [3.0, 3.0, None]


def test_steps_trained_are_each_trials_last_reported_step():
    rows = pd.DataFrame(
        {
            "trial_id": ["a", "a", "a", "b", "b"],
            "iteration": [2, 1, 3, 1, 2],
            "step": [200, 100, 300, 100, 200],
        }
    )
    assert bench.steps_trained(rows) == 300 + 200


def test_the_summary_line_averages_over_cells():
    def cell(grid: int, stop: int, same: bool, needed: int | None) -> object:
        return bench.CellCost(
            "s",
            "c",
            grid_size=4,
            steps={"grid": grid, "grid+stop": stop},
            same={"grid+stop": same},
            to_within={"tpe": needed},
        )

    # compute 50% and 10% (mean 30%), one same choice of two, tpe 1/4 and never (4/4)
    line = bench.summary([cell(1000, 500, True, 1), cell(100, 10, False, None)])
    assert line == (
        "search cost: early stopping 30% of the grid's compute, same choice in 1/2 cells; "
        "tpe 62% of the grid's trials to within 5% of its best"
    )
    assert LINE.match(line)


def test_tpe_twins_start_modelling_after_a_third_of_their_budget_unless_told():
    setting = bench.Setting(
        "tiny",
        "mog",
        "mode_kl",
        (0, 1),
        {"steps": STEPS},
        (bench.Search("adam", "adam", (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)),),
    )
    stop = EarlyStopping("halving", min_resource=EVERY, reduction_factor=3)
    for startup, want in ((None, 2), (0, 0), (5, 5)):
        for sweep in bench.sweeps_of(setting, stop, 1.0, startup):
            grid, tpe = (c.lrs for c in sweep.cells)
            assert grid.startup is None and tpe.trials == 6 and tpe.startup_trials() == want
    assert bench.tpe_startup(2, None) == 1  # never 0 by default: the first trial is random


@pytest.mark.slow
def test_one_cell_end_to_end_counts_compute_from_rows_and_the_same_choice(tmp_path):
    grid = (GOOD, BAD)
    setting = bench.Setting(
        "tiny",
        "mog",
        "mode_kl",
        (0, 1),
        {"steps": STEPS, "eval_every": EVERY, "checkpoint_every": STEPS, "eval_samples": 1000},
        (bench.Search("adam", "adam", grid, overrides={"gd_reg": 0.0}),),
        sampler_seed=grid_seed_asking_first(GOOD, grid),
    )
    stop = EarlyStopping("halving", min_resource=bench.first_rung(setting, 0.2), reduction_factor=3)
    assert stop.min_resource == EVERY
    df, walls = bench.run_setting(setting, stop, 1.0, str(tmp_path), 2)
    assert set(walls) == {"tiny_nostop", "tiny_stop"}
    [c] = bench.costs(df, setting)
    # the full grid: every trial trained to the end, counted from its collected rows
    assert c.trials["grid"] == len(grid) * 2
    assert c.steps["grid"] == STEPS * len(grid) * 2
    assert c.pruned["grid"] == 0
    # early stopping: lr 3 pruned at the first rung: the seed whose report completed the rung
    # stopped there, the other one at its next report (or, when it ran before the last seed
    # started, at the end); the compute is the good step size's runs plus what the bad one trained
    rows = bench.method_rows(df, setting, "adam", "grid+stop")
    last = bench.last_rows(rows)
    bad = last[last["lr_g"] == BAD]
    assert c.pruned["grid+stop"] == 1 and set(bad["status"]) == {"pruned"}
    assert bad["step"].min() == EVERY and bad["step"].max() <= STEPS
    assert c.steps["grid+stop"] == STEPS * 2 + int(bad["step"].sum()) < c.steps["grid"]
    # the choice: main_table's, the same step size in both
    assert c.choice["grid"][0] == c.choice["grid+stop"][0] == GOOD
    assert c.same["grid+stop"]
    # TPE (2 trials over [1e-3, 3]) and its summary
    assert c.steps["tpe"] == STEPS * 2 * 2
    assert c.to_within["tpe"] in (1, 2, None)
    line = bench.summary([c])
    m = LINE.match(line)
    assert m, line
    assert int(m[1]) == round(100 * c.steps["grid+stop"] / c.steps["grid"])
    assert (int(m[2]), int(m[3])) == (1, 1)
    assert int(m[4]) == round(100 * c.tpe_share("tpe"))
