"""What early stopping and TPE save against the paper's full grid, measured on real sweeps.

Three settings of the project, each run through the sweep engine on a local Ray: the bimodal
theory setting (sgda, nsgda, ada-nsgda, adam; a log grid of 6 step sizes, 3 seeds), the mixture
of Gaussians (adam, adam + GD-regulariser, nsgda) and the WGAN-GP smoke sweep on generated
images. Each setting runs as two sweeps: one without early stopping holding, per cell, the grid
("grid") and a TPE search over the grid's range with as many trials as the grid has step sizes
("tpe"); one with early stopping (``--pruner``, default successive halving) holding the same
two ("grid+stop", "tpe+stop"). Confirmation seeds are left out (they cost the same whatever
the search). Definitions, per cell:

* compute: the generator steps each trial actually trained, the ``step`` of its last collected
  row, summed over the cell's trials (a pruned seed ends at the report that stopped it);
  trial time: the same sum of each trial's ``time_total_s``;
* choice: ``analysis.tables.main_table``'s step size for the cell (tuning seeds, the objective's
  penalty for a diverged seed, a pruned step size never chosen); "same choice": the full grid's
  choice, or a step size whose score (penalised mean over seeds) is within 5% of the full grid's
  chosen score: ``score <= best + 0.05 * |best|``;
* TPE trials to within 5%: the number of Optuna trials (step sizes, in the study's order) TPE
  needed until the best value told to its study (a step size's penalised mean over its seeds;
  a pruned one has none) was within 5% of the full grid's best (``<= best + 0.05 * |best|``),
  divided by the grid's number of step sizes; a cell where TPE never got there counts its whole
  budget (as many trials as the grid: 100%) and is flagged "never".

The last line averages over cells (every cell weighs the same, whatever its trials' length):

    search cost: early stopping <X>% of the grid's compute, same choice in <k>/<n> cells; tpe <Y>% of the grid's trials to within 5% of its best

X: the mean over cells of grid+stop's compute / the grid's; k/n: cells where grid+stop made the
same choice; Y: the mean over cells of TPE (without pruning) trials to within 5%.

    python benchmarks/search_cost.py [--quick] [--first-rung 0.2] [--reduction-factor 3]
                                     [--synchronous] [--tpe-startup N]

``--synchronous``: synchronous successive halving (``EarlyStopping(..., synchronous=True)``):
each rung waits for every step size of the cell, their seeds paused there, and keeps the best
``max(n // reduction_factor, 1)``; without it Optuna's asynchronous rule decides each step
size as its seeds arrive (and always promotes the first to arrive).

TPE draws ``--tpe-startup`` step sizes at random before it models (default a third of its
budget, at least 1: with Optuna's default of 10, a budget of 3-6 trials is a random search).

``--quick`` (minutes): nsgda on the bimodal setting (4 step sizes, 3 seeds), adam and
adam + GD-regulariser on the mixture of Gaussians (3 step sizes, 2 seeds, 400 steps), adam on
the WGAN-GP smoke (3 step sizes, 2 seeds). The full run: every cell named above, 6 step
sizes and 3 seeds each (mixture of Gaussians: 1000 steps). The pruner's first rung is a fraction of each setting's
steps (rounded to one of its evaluation points). Each trial gets ``--cpus / seeds`` CPUs so that
all seeds of a step size train at once: the decision at a rung waits for every seed, so with
fewer slots than seeds the first seeds would train to the end before the last one starts.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

import analysis
from analysis.tables import main_table, penalised_mean
from sweeps.engine import Cell, EarlyStopping, Resources, StepSizes, Sweep, log_grid, run
from sweeps.engine.objectives import penalty_of
from sweeps.engine.smoke import IMAGES

METHODS = ("grid", "grid+stop", "tpe", "tpe+stop")
TPE = "~tpe"  # suffix of a cell's TPE twin
WITHIN = 0.05


@dataclass(frozen=True)
class Search:
    """One cell of a setting: its label, optimizer, log grid, lr_D/lr_G ratio, fixed keys."""

    label: str
    optimizer: str
    grid: tuple[float, ...]
    ratio: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """A sweep of the project: its experiment, objective, seeds, fixed trainer keys, cells."""

    name: str
    experiment: str
    metric: str
    seeds: tuple[int, ...]
    fixed: dict[str, Any]
    searches: tuple[Search, ...]
    sampler_seed: int = 0  # the grid's order (GridSampler) and TPE's draws

    @property
    def steps(self) -> int:
        return int(self.fixed["steps"])

    @property
    def every(self) -> int:
        return int(self.fixed["eval_every"])


def settings(quick: bool) -> list[Setting]:
    """The three settings (``quick``: fewer cells, step sizes, seeds and steps)."""
    n = 3 if quick else 6

    def grid(low: float, high: float, points: int = n) -> tuple[float, ...]:
        return tuple(log_grid(low, high, points))

    bimodal = (
        Search("sgda", "sgda", grid(1e-2, 1.0, 6)),
        Search("nsgda", "nsgda", grid(1e-3, 3e-2, 4 if quick else 6), ratio=2.0),
        Search("ada-nsgda", "ada-nsgda", grid(5e-5, 5e-3, 6), ratio=2.0),
        Search("adam", "adam", grid(5e-5, 5e-3, 6), ratio=2.0),
    )
    mog = (
        Search("adam", "adam", grid(1e-5, 1e-2), overrides={"gd_reg": 0.0}),
        Search("adam+gd_reg", "adam", grid(1e-5, 1e-2), overrides={"gd_reg": 0.5}),
        Search("nsgda", "nsgda", grid(1e-4, 1e-1), overrides={"gd_reg": 0.0}),
    )
    wgangp = tuple(
        Search(o, o, grid(lo, hi))
        for o, lo, hi in (
            ("adam", 1e-5, 1e-2),
            ("nsgda", 1e-3, 1.0),
            ("sgda", 1e-4, 1e-1),
            ("ada-nsgda", 1e-5, 1e-2),
        )
    )
    if quick:
        bimodal, mog, wgangp = bimodal[1:2], mog[:2], wgangp[:1]
    mog_steps = 400 if quick else 1000
    return [
        Setting(
            "bimodal",
            "bimodal",
            "miss_both",
            (0, 1, 2),
            {"steps": 2000, "eval_every": 100, "checkpoint_every": 2000},
            bimodal,
        ),
        Setting(
            "mog",
            "mog",
            "mode_kl",
            (0, 1) if quick else (0, 1, 2),
            {
                "steps": mog_steps,
                "eval_every": 50 if quick else 100,
                "checkpoint_every": mog_steps,
                "eval_samples": 2000,
            },
            mog,
        ),
        Setting(
            "wgangp_smoke",
            "wgangp",
            "fid",
            (0, 1) if quick else (0, 1, 2),
            {**IMAGES, "steps": 12, "eval_every": 3, "checkpoint_every": 12},
            wgangp,
        ),
    ]


def first_rung(setting: Setting, fraction: float) -> int:
    """The pruner's first rung: ``fraction`` of the setting's steps at an evaluation point."""
    return rung_at(fraction, setting.steps, setting.every)


def rung_at(fraction: float, steps: int, every: int) -> int:
    """``fraction`` of ``steps`` rounded to an evaluation point (a multiple of ``every``, at
    least the first)."""
    return max(every, round(fraction * steps / every) * every)


def tpe_startup(trials: int, startup: int | None) -> int:
    """TPE's random start-up trials for a budget of ``trials``: ``startup``, else a third of
    the budget (at least 1). Optuna's default 10 would make a 6-trial TPE a random search."""
    return max(1, trials // 3) if startup is None else startup


def sweeps_of(
    setting: Setting, stop: EarlyStopping, cpu: float, startup: int | None = None
) -> tuple[Sweep, Sweep]:
    """The setting's two sweeps: every cell's grid and TPE twin (``tpe_startup`` random
    trials first) without early stopping, and the same with ``stop``."""
    cells = []
    for s in setting.searches:
        ratios = (s.ratio,)
        cells.append(
            Cell(s.optimizer, StepSizes(grid=s.grid, ratios=ratios), None, s.overrides, s.label)
        )
        tpe = StepSizes(
            low=min(s.grid),
            high=max(s.grid),
            trials=len(s.grid),
            ratios=ratios,
            startup=tpe_startup(len(s.grid), startup),
        )
        cells.append(Cell(s.optimizer, tpe, None, s.overrides, s.label + TPE))
    base = Sweep(
        name=f"{setting.name}_nostop",
        experiment=setting.experiment,
        metric=setting.metric,
        cells=cells,
        seeds=list(setting.seeds),
        fixed=dict(setting.fixed),
        resources=Resources(cpu=cpu),
        confirm_seeds=0,
        sampler_seed=setting.sampler_seed,
    )
    return base, replace(base, name=f"{setting.name}_stop", early_stopping=stop)


@dataclass
class CellCost:
    """What one cell's four searches cost and chose."""

    setting: str
    cell: str
    grid_size: int
    steps: dict[str, int] = field(default_factory=dict)  # method -> steps trained
    seconds: dict[str, float] = field(default_factory=dict)  # method -> summed trial time
    trials: dict[str, int] = field(default_factory=dict)  # method -> Tune trials
    pruned: dict[str, int] = field(default_factory=dict)  # method -> pruned step sizes
    choice: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # (lr_g, score)
    same: dict[str, bool] = field(default_factory=dict)
    to_within: dict[str, int | None] = field(default_factory=dict)  # tpe methods: trials needed

    def compute(self, method: str) -> float:
        """``method``'s compute as a share of the full grid's."""
        return self.steps[method] / self.steps["grid"]

    def needed(self, method: str) -> str:
        """TPE's trials to within 5% as text: "k/grid size" or "never"."""
        n = self.to_within[method]
        return f"never ({self.grid_size})" if n is None else f"{n}/{self.grid_size}"

    def tpe_share(self, method: str = "tpe") -> float:
        """Trials TPE needed to within 5% over the grid's size (its budget when never)."""
        n = self.to_within[method]
        return (self.grid_size if n is None else n) / self.grid_size


def within(value: float, best: float) -> bool:
    """``value`` (minimised) is within 5% of ``best``."""
    return value <= best + WITHIN * abs(best) + 1e-12


def method_rows(df: pd.DataFrame, setting: Setting, cell: str, method: str) -> pd.DataFrame:
    """The rows of one cell's ``method`` (its sweep and its grid or TPE cell)."""
    sweep = f"{setting.name}_{'stop' if method.endswith('+stop') else 'nostop'}"
    name = cell + (TPE if method.startswith("tpe") else "")
    return df[(df["sweep"] == sweep) & (df["cell"] == name)]


def last_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Each trial's last row."""
    return rows.sort_values("iteration").groupby("trial_id").tail(1)


def steps_trained(rows: pd.DataFrame) -> int:
    """Generator steps the trials of ``rows`` trained: each one's last reported ``step``."""
    return int(last_rows(rows)["step"].sum())


def told_values(rows: pd.DataFrame, penalty: float) -> list[float | None]:
    """Per study trial in the study's order, the value its study was told (the penalised mean
    of its seeds' final objective), None for a pruned step size."""
    out = []
    for _, g in last_rows(rows).groupby("study_trial", sort=True):
        if (g["status"] == "pruned").any():
            out.append(None)
            continue
        vals = [None if bool(d) else float(v) for v, d in zip(g["objective"], g["diverged"])]
        out.append(penalised_mean(vals, penalty))
    return out


def trials_to_within(told: list[float | None], best: float) -> int | None:
    """How many study trials until the best told value is within 5% of ``best`` (None: never)."""
    for k, value in enumerate(told, 1):
        if value is not None and within(value, best):
            return k
    return None


def choices(df: pd.DataFrame, penalty: float) -> dict[tuple[str, str], tuple[float, float]]:
    """(sweep, cell) -> (lr_g, score) of ``main_table``'s choice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # edge-of-grid notes: the choice is what counts here
        table = main_table(df, "objective", penalty=penalty, stage="tune", n_resamples=100)
    if table.empty:
        return {}
    return {
        (str(r["sweep"]), str(r["cell"])): (float(r["lr_g"]), float(r["score"]))
        for _, r in table.iterrows()
    }


def costs(df: pd.DataFrame, setting: Setting) -> list[CellCost]:
    """Each cell's four searches, from the collected rows of the setting's two sweeps."""
    penalty = penalty_of(setting.metric)
    chosen = choices(df, penalty)
    out = []
    for search in setting.searches:
        c = CellCost(setting.name, search.label, len(search.grid))
        for method in METHODS:
            rows = method_rows(df, setting, search.label, method)
            last = last_rows(rows)
            c.steps[method] = steps_trained(rows)
            c.seconds[method] = float(last["time_total_s"].sum())
            c.trials[method] = len(last)
            c.pruned[method] = int(last[last["status"] == "pruned"]["study_trial"].nunique())
            sweep = f"{setting.name}_{'stop' if method.endswith('+stop') else 'nostop'}"
            name = search.label + (TPE if method.startswith("tpe") else "")
            c.choice[method] = chosen.get((sweep, name))
        best = c.choice["grid"]
        for method in METHODS:
            mine = c.choice[method]
            c.same[method] = bool(
                best is not None
                and mine is not None
                and (math.isclose(mine[0], best[0], rel_tol=1e-9) or within(mine[1], best[1]))
            )
        for method in ("tpe", "tpe+stop"):
            rows = method_rows(df, setting, search.label, method)
            told = told_values(rows, penalty)
            c.to_within[method] = None if best is None else trials_to_within(told, best[1])
        out.append(c)
    return out


def run_setting(
    setting: Setting,
    stop: EarlyStopping,
    cpu: float,
    root: str,
    cpus: int,
    startup: int | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Run the setting's two sweeps; their collected rows and wall seconds."""
    walls = {}
    for sweep in sweeps_of(setting, stop, cpu, startup):
        t0 = time.perf_counter()
        outcome = run(sweep, storage=root, num_cpus=cpus)
        walls[sweep.name] = time.perf_counter() - t0
        if outcome.code != 0:
            raise SystemExit(f"search_cost: sweep {sweep.name} ended with code {outcome.code}")
        analysis.collect(f"{root}/{sweep.name}", f"{root}/dataset")
    return analysis.load(f"{root}/dataset"), walls


def _lr(choice: tuple[float, float] | None) -> str:
    return "none" if choice is None else f"{choice[0]:.3g} ({choice[1]:.3g})"


def table(results: list[CellCost]) -> str:
    """A Markdown table: per cell, each method's compute, time, choice and TPE's trials."""
    head = (
        "| setting | cell | grid steps | grid+stop steps (%) | pruned | grid choice "
        "(score) | grid+stop choice | same | tpe to 5% | tpe+stop steps (%) | tpe+stop to 5% "
        "| trial s: grid / +stop / tpe / tpe+stop |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in results:
        lines.append(
            f"| {c.setting} | {c.cell} | {c.steps['grid']} | {c.steps['grid+stop']} "
            f"({100 * c.compute('grid+stop'):.0f}%) | {c.pruned['grid+stop']}/{c.grid_size} | "
            f"{_lr(c.choice['grid'])} | {_lr(c.choice['grid+stop'])} | "
            f"{'yes' if c.same['grid+stop'] else 'no'} | {c.needed('tpe')} | "
            f"{c.steps['tpe+stop']} ({100 * c.compute('tpe+stop'):.0f}%) | {c.needed('tpe+stop')} | "
            + " / ".join(f"{c.seconds[m]:.0f}" for m in METHODS)
            + " |"
        )
    return "\n".join(lines)


def summary(results: list[CellCost]) -> str:
    """The last line: means over cells (see the module's docstring)."""
    n = len(results)
    x = 100 * sum(c.compute("grid+stop") for c in results) / n
    k = sum(c.same["grid+stop"] for c in results)
    y = 100 * sum(c.tpe_share("tpe") for c in results) / n
    return (
        f"search cost: early stopping {x:.0f}% of the grid's compute, same choice in {k}/{n} "
        f"cells; tpe {y:.0f}% of the grid's trials to within 5% of its best"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cells and step sizes")
    parser.add_argument("--pruner", default="halving", choices=("halving", "hyperband", "median"))
    parser.add_argument(
        "--first-rung", type=float, default=0.2, help="first rung, a fraction of the steps"
    )
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument(
        "--synchronous",
        action="store_true",
        help="synchronous halving: a rung waits for every step size (halving only)",
    )
    parser.add_argument(
        "--tpe-startup",
        type=int,
        help="TPE's random trials before it models (default: a third of its budget, >= 1)",
    )
    parser.add_argument("--cpus", type=int, default=2, help="the local Ray's CPUs")
    parser.add_argument("--only", nargs="+", help="run only these settings")
    parser.add_argument("--out", help="keep the sweeps here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if not 0 < args.first_rung <= 1:
        parser.error(f"--first-rung {args.first_rung}: must be a fraction in (0, 1]")
    if args.reduction_factor < 2:
        parser.error(f"--reduction-factor {args.reduction_factor}: must be an integer >= 2")
    if args.synchronous and args.pruner != "halving":
        parser.error(f"--synchronous with --pruner {args.pruner}: only halving has that form")
    if args.tpe_startup is not None and args.tpe_startup < 0:
        parser.error(f"--tpe-startup {args.tpe_startup}: must be an integer >= 0")
    chosen = settings(args.quick)
    names = [s.name for s in chosen]
    if args.only and set(args.only) - set(names):
        parser.error(f"--only {args.only}: allowed settings: {', '.join(names)}")
    chosen = [s for s in chosen if not args.only or s.name in args.only]
    t0 = time.perf_counter()
    results, walls = [], {}
    with tempfile.TemporaryDirectory(prefix="search_cost-") as tmp:
        root = args.out or tmp
        for setting in chosen:
            stop = EarlyStopping(
                args.pruner,
                min_resource=first_rung(setting, args.first_rung),
                reduction_factor=args.reduction_factor,
                startup_trials=1,
                synchronous=args.synchronous,
            )
            cpu = math.floor(100 * args.cpus / len(setting.seeds)) / 100
            print(f"{setting.name}: {stop}, {cpu} CPUs per trial", flush=True)
            df, wall = run_setting(setting, stop, cpu, root, args.cpus, args.tpe_startup)
            walls.update(wall)
            results += costs(df, setting)
    import ray

    ray.shutdown()  # its workers' log lines must not follow the summary
    print()
    print(table(results))
    print()
    print("sweep wall (s): " + ", ".join(f"{k} {v:.0f}" for k, v in walls.items()))
    print(f"total {time.perf_counter() - t0:.0f} s")
    print(summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
