"""Where a first rung can sit: synchronous successive halving replayed on a full grid's curves.

Reads the rows of full-grid sweeps (``search_cost.py --out DIR`` keeps them in ``DIR/dataset``;
any sweep collected with ``analysis.collect`` will do) and, per cell, the curve of each step size:
its penalised mean over seeds at every evaluation point, each seed counted as the searcher counts
it (a seed that diverged: the penalty from there on; one that ended earlier without diverging:
its final value). It then prints, per cell, how well each point of training ranks the step sizes
against their final scores (Spearman's rho, and the final choice's rank there), and replays
synchronous successive halving for a range of first rungs and reduction factors on those curves,
each rung decided by Optuna's ``SuccessiveHalvingPruner`` as the engine decides it
(``searcher.rung_prunes``, ties to the smaller step size): the compute it would have used (the
steps its seeds train, as ``search_cost.py`` counts them) and whether it keeps the grid's choice
or one within 5% of its score.

A replay, not a run: every step size's whole curve is known, so this answers "what would this
schedule have chosen on these sweeps" in seconds, for picking a schedule before a real sweep
(``search_cost.py --synchronous --first-rung F --reduction-factor R`` runs one for real).

    python benchmarks/rung_placement.py DATASET [--metric EXPERIMENT=OBJECTIVE ...]
                                        [--sweep-suffix _nostop] [--skip-cell '~tpe']

A diverged seed counts as its objective's penalty, so each experiment's objective must be known:
``search_cost.py``'s (bimodal miss_both, mog mode_kl, wgangp fid) unless ``--metric`` names it,
e.g. ``--metric stylegan2=fid``. For your own pilot grid pass ``--sweep-suffix ''`` (every
sweep of the dataset) or its sweep's name. Exit 2 for an unknown objective or an experiment
without one, 3 for a dataset that is not there.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import search_cost
from scipy import stats

import analysis
from analysis.tables import penalised_mean
from sweeps.engine import EarlyStopping
from sweeps.engine.objectives import OBJECTIVES, penalty_of
from sweeps.engine.searcher import rung_prunes

FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
FACTORS = (2, 3, 4, 6)


@dataclass
class Curves:
    """One cell of a full grid: per step size (lr_d, lr_g) its mean over seeds at each point,
    its final score, and the steps each of its seeds trained."""

    sweep: str
    cell: str
    steps: int  # the trainer's last step
    every: int  # evaluation interval
    points: list[int]
    mean: dict[tuple[float, float], dict[int, float]]
    final: dict[tuple[float, float], float]
    trained: dict[tuple[float, float], list[int]]  # per seed: its last step

    def choice(self, among: list[tuple[float, float]] | None = None) -> tuple[float, float]:
        """The best final score (ties to the smaller step size, as the tables break them)."""
        keys = among if among is not None else list(self.final)
        return min(keys, key=lambda k: (self.final[k], *k))

    def same(self, lr: tuple[float, float]) -> bool:
        """``lr`` is the grid's choice or scores within 5% of it (``search_cost.within``)."""
        best = self.choice()
        return lr == best or search_cost.within(self.final[lr], self.final[best])


def _seed_value(rows: pd.DataFrame, point: int) -> float | None:
    """One seed's objective at ``point`` (its rows sorted by step), as the searcher counts it:
    its report there or its last before; None (the penalty) once it diverged, or where it
    errored before ``point``."""
    at = rows[rows["step"] <= point]
    if at.empty or bool(at["diverged"].iloc[-1]):
        return None
    if int(rows["step"].iloc[-1]) < point and rows["status"].iloc[-1] == "errored":
        return None
    return float(at["objective"].iloc[-1])


def metrics() -> dict[str, str]:
    """Each experiment's objective, as ``search_cost.py``'s settings have it."""
    return {s.experiment: s.metric for s in search_cost.settings(quick=False)}


def curves(df: pd.DataFrame, suffix: str, skip: str, metric: dict[str, str]) -> list[Curves]:
    """The cells of the sweeps named ``*suffix`` (cells containing ``skip`` left out), each
    experiment's penalty that of its objective in ``metric``."""
    out = []
    for (sweep, cell), g in df.groupby(["sweep", "cell"], sort=True):
        if not str(sweep).endswith(suffix) or (skip and skip in str(cell)):
            continue
        g = g[g["stage"] == "tune"] if "stage" in g else g
        penalty = penalty_of(metric[str(g["experiment"].iloc[0])])
        steps = int(g["steps"].max()) if "steps" in g else int(g["step"].max())
        every = int(g["config/eval_every"].iloc[0])
        points = list(range(every, steps, every))  # evaluations (a run a stop rule ended
        # early has one more row, at its last step)
        mean, final, trained = {}, {}, {}
        for lr, h in g.groupby(["lr_d", "lr_g"], sort=True):
            seeds = [r.sort_values("step") for _, r in h.groupby("seed")]
            mean[lr] = {
                p: penalised_mean([_seed_value(r, p) for r in seeds], penalty) for p in points
            }
            final[lr] = penalised_mean([_seed_value(r, steps) for r in seeds], penalty)
            trained[lr] = [int(r["step"].iloc[-1]) for r in seeds]
        out.append(Curves(str(sweep), str(cell), steps, every, points, mean, final, trained))
    return out


def replay(c: Curves, first: int, factor: int) -> tuple[float, tuple[float, float]]:
    """Synchronous halving on ``c`` with its first rung at step ``first``: (compute as a share
    of the grid's, the step size chosen among those trained to the end)."""
    stopping = EarlyStopping("halving", min_resource=first, reduction_factor=factor)
    alive = list(c.final)
    stopped_at = dict.fromkeys(alive, c.steps)
    for rung in stopping.rungs(c.steps, c.every):
        if len(alive) <= 1:
            break
        order = sorted(alive, key=lambda k: (c.mean[k].get(rung, math.inf), *k))
        prunes = rung_prunes({k: order.index(k) for k in alive}, stopping)
        for k in alive:
            if prunes[k]:
                stopped_at[k] = rung
        alive = [k for k in alive if not prunes[k]]
    used = sum(min(stopped_at[k], s) for k in c.final for s in c.trained[k])
    grid = sum(s for k in c.final for s in c.trained[k])
    return used / grid, c.choice(alive)


def rankings(c: Curves) -> list[tuple[float, float, int]]:
    """Per point: (fraction of training, Spearman's rho of the means against the final scores,
    the final choice's rank there, 1 the best)."""
    keys = list(c.final)
    best = c.choice()
    out = []
    for p in c.points:
        at = [c.mean[k][p] for k in keys]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant input (every step size tied)
            rho = stats.spearmanr(at, [c.final[k] for k in keys]).statistic
        rank = 1 + sum((c.mean[k][p], *k) < (c.mean[best][p], *best) for k in keys if k != best)
        out.append((p / c.steps, float(rho), rank))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a collected dataset (analysis.collect's destination)")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="EXPERIMENT=OBJECTIVE",
        help="an experiment's objective (its penalty counts a diverged seed); repeatable",
    )
    parser.add_argument("--sweep-suffix", default="_nostop", help="full-grid sweeps end so")
    parser.add_argument("--skip-cell", default="~tpe", help="leave out cells containing this")
    args = parser.parse_args(argv)
    metric = metrics()
    for item in args.metric:
        experiment, _, name = item.partition("=")
        if not experiment or name not in OBJECTIVES:
            parser.error(
                f"--metric {item!r}: want EXPERIMENT=OBJECTIVE, the objective one of "
                + ", ".join(OBJECTIVES)
            )
        metric[experiment] = name
    if "://" not in args.dataset and not Path(args.dataset).exists():
        print(f"rung_placement: {args.dataset}: no such dataset", file=sys.stderr)
        return 3
    df = analysis.load(args.dataset)
    unknown = sorted(set(df["experiment"].astype(str)) - set(metric))
    if unknown:
        parser.error(
            f"experiment {', '.join(unknown)}: its objective is not known here; name it with "
            f"--metric {unknown[0]}=OBJECTIVE (one of {', '.join(OBJECTIVES)})"
        )
    cells = curves(df, args.sweep_suffix, args.skip_cell, metric)
    if not cells:
        parser.error(f"{args.dataset}: no sweep ending {args.sweep_suffix!r} with a grid cell")
    print("How each point of training ranks the step sizes (rho: Spearman against the final")
    print("scores; rank: of the grid's choice there, 1 the best):\n")
    for c in cells:
        line = ", ".join(f"{f:.2f}: {rho:+.2f}/{rank}" for f, rho, rank in rankings(c))
        print(f"{c.sweep} {c.cell} ({len(c.final)} step sizes): {line}")
    print("\nSynchronous halving replayed: compute (share of the grid's), cells keeping the choice")
    print("| first rung | " + " | ".join(f"factor {r}" for r in FACTORS) + " |")
    print("|---|" + "---|" * len(FACTORS))
    for f in FRACTIONS:
        row = []
        for r in FACTORS:
            results = []
            for c in cells:
                results.append(replay(c, search_cost.rung_at(f, c.steps, c.every), r))
            compute = 100 * sum(x for x, _ in results) / len(results)
            same = sum(c.same(lr) for c, (_, lr) in zip(cells, results))
            row.append(f"{compute:.0f}%, {same}/{len(cells)}")
        print(f"| {f:g} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
