"""What a sweep declares: cells (optimizer x dataset x variant), step-size search, seeds, budget.

Seeds come in two stages: the tuning ``seeds`` every step size of a cell runs on (its Optuna
study is told their mean), and the ``confirm_seeds``, disjoint from them, on which the cell's
chosen step size alone is run again once its search is done. A table's numbers come from the
confirmation seeds, so the winner is not measured on the seeds that chose it.

A ``Sweep`` is plain data; ``validate`` checks all of it (and every cell's trainer config)
before anything starts, raising ``SweepError`` with the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainers import experiments, optim
from trainers.config import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class SweepError(ValueError):
    """A sweep declaration or command-line value is not allowed (exit code 2)."""


def log_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` values evenly spaced in log space from ``low`` to ``high`` inclusive."""
    if not (low > 0 and high >= low and points >= 1):
        raise SweepError(f"log_grid({low}, {high}, {points}): need 0 < low <= high and points >= 1")
    if points == 1:
        return [float(low)]
    return [float(v) for v in np.logspace(math.log10(low), math.log10(high), points)]


TPE_STARTUP = 10  # Optuna's TPESampler default n_startup_trials


@dataclass(frozen=True)
class StepSizes:
    """The step-size search of one cell: a grid (the paper's protocol) or a log-uniform range.

    ``ratios`` is the optional lr_D / lr_G axis (a grid); lr_d = lr * ratio, lr_g = lr.
    """

    grid: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    trials: int = 0  # tpe: how many step sizes to try
    ratios: tuple[float, ...] = (1.0,)
    startup: int | None = None  # tpe: trials drawn at random before TPE models; None: Optuna's

    def __post_init__(self) -> None:
        if isinstance(self.startup, np.integer):  # integer-like, e.g. from numpy arithmetic
            object.__setattr__(self, "startup", int(self.startup))

    def startup_trials(self) -> int:
        """How many of a TPE search's trials are drawn at random (Optuna's ``n_startup_trials``;
        its default 10 unless ``startup`` says otherwise). With ``trials`` <= this, TPE is a
        random log-uniform search."""
        return TPE_STARTUP if self.startup is None else self.startup

    @property
    def searcher(self) -> str:
        return "grid" if self.grid else "tpe"

    def size(self) -> int:
        """Number of suggested configs (before seeds)."""
        return len(self.grid) * len(self.ratios) if self.grid else self.trials

    def check(self, where: str) -> None:
        for name in ("grid", "ratios"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
                raise SweepError(
                    f"{where}: {name}={value!r} must be a list of numbers, e.g. {name}=[{value!r}]"
                )
        values = list(self.grid) + [v for v in (self.low, self.high) if v is not None]
        values += list(self.ratios)
        bad = [
            v for v in values if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)
        ]
        if bad:
            raise SweepError(
                f"{where}: step sizes and ratios must be finite and > 0, got {bad[0]!r}"
            )
        if self.grid:
            if self.low is not None or self.high is not None:
                raise SweepError(f"{where}: give either a grid or a range (low, high), not both")
            if self.startup is not None:
                raise SweepError(
                    f"{where}: startup={self.startup!r} is for a TPE range search; a grid "
                    "tries every step size"
                )
            return
        if self.low is None or self.high is None:
            raise SweepError(f"{where}: no step sizes: give grid=[...] or low, high and trials")
        if self.low >= self.high:
            raise SweepError(f"{where}: lr range low={self.low} must be below high={self.high}")
        if self.trials < 1:
            raise SweepError(f"{where}: a range search needs trials >= 1, got {self.trials}")
        if self.startup is not None and (
            isinstance(self.startup, bool)
            or not isinstance(self.startup, int | np.integer)
            or self.startup < 0
        ):
            raise SweepError(
                f"{where}: startup={self.startup!r} must be an integer >= 0 (the TPE trials "
                "drawn at random first), or None for Optuna's 10"
            )


@dataclass(frozen=True)
class Cell:
    """One (optimizer, dataset, variant) cell: its own Optuna study over the step size."""

    optimizer: str
    lrs: StepSizes
    dataset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed trainer-config keys
    label: str | None = None  # shown in tables; default "optimizer[/dataset]"

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return self.optimizer + (f"/{self.dataset}" if self.dataset else "")


@dataclass(frozen=True)
class Resources:
    """What one trial needs: CPUs and a GPU share (0.25 packs four trials on one GPU).

    With ``workers`` > 1 a trial is data-parallel over that many Ray Train workers, each with
    ``cpu`` and ``gpu`` (sweeps.engine.distributed); its global batch_size is split over them.
    """

    cpu: float = 1.0
    gpu: float = 0.0
    workers: int = 1

    def check(self) -> None:
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise SweepError(f"resources: workers={self.workers!r} must be an integer >= 1")
        if not (self.cpu > 0 and math.isfinite(self.cpu)):
            raise SweepError(f"resources: cpu={self.cpu!r} must be > 0")
        if not (self.gpu >= 0 and math.isfinite(self.gpu)):
            raise SweepError(f"resources: gpu={self.gpu!r} must be >= 0")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise SweepError(f"resources: gpu={self.gpu!r}: a share above 1 must be whole GPUs")


EARLY_STOPPING = ("none", "halving", "hyperband", "median")


@dataclass(frozen=True)
class EarlyStopping:
    """Stopping a step size early (all its seeds at once), decided by Optuna's pruners.

    ``kind``: "none" (the paper's protocol: every step size trains to the end), "halving"
    (``optuna.pruners.SuccessiveHalvingPruner``: with a grid, successive halving over the
    grid), "hyperband" (``HyperbandPruner``) or "median" (``MedianPruner``). The resource is the
    trainer's ``step`` (generator steps) at which the seeds report; rungs are evaluation points.

    - halving / hyperband: ``min_resource`` (the first rung, in steps), ``reduction_factor``
      (keep the best 1/reduction_factor at each rung); hyperband also ``max_resource`` (steps;
      0: the sweep's ``steps`` where it fixes them, else Optuna's "auto").
    - median: ``startup_trials`` (step sizes that are never pruned, the first ones),
      ``warmup_steps`` (no pruning before this step) and ``interval_steps``.
    - ``synchronous`` (halving only): a rung is decided once every step size of the cell has
      reached it, its seeds paused there meanwhile (``sweeps.engine.searcher``); off, Optuna's
      asynchronous rule decides each step size as its seeds arrive.
    """

    kind: str = "none"
    min_resource: int = 1
    reduction_factor: int = 3
    max_resource: int = 0
    startup_trials: int = 1
    warmup_steps: int = 0
    interval_steps: int = 1
    synchronous: bool = False

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def rungs(self, steps: int, every: int) -> tuple[int, ...]:
        """The evaluation points synchronous halving decides at: each rung
        (``min_resource * reduction_factor**k``) rounded up to an evaluation (a multiple of
        ``every``), below the last step (which is never a rung)."""
        out: list[int] = []
        rung = self.min_resource
        while rung < steps:
            point = -(-rung // every) * every
            if point < steps and point not in out:
                out.append(point)
            rung *= self.reduction_factor
        return tuple(out)

    def check(self) -> None:
        if self.kind not in EARLY_STOPPING:
            raise SweepError(
                f"early_stopping kind {self.kind!r} is unknown; allowed: "
                + ", ".join(EARLY_STOPPING)
            )
        lows = {
            "min_resource": 1,
            "reduction_factor": 2,
            "max_resource": 0,
            "startup_trials": 0,
            "warmup_steps": 0,
            "interval_steps": 1,
        }
        for name, low in lows.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SweepError(f"early_stopping {name}={value!r}: must be an integer >= {low}")
        if not isinstance(self.synchronous, bool):
            raise SweepError(
                f"early_stopping synchronous={self.synchronous!r}: must be True or False"
            )
        if self.synchronous and self.kind != "halving":
            raise SweepError(
                f"early_stopping synchronous=True with kind {self.kind!r}: only kind 'halving' "
                "has a synchronous form"
            )
        if self.kind == "hyperband" and self.max_resource and self.max_resource < self.min_resource:
            raise SweepError(
                f"early_stopping max_resource={self.max_resource} must be >= min_resource="
                f"{self.min_resource} (or 0 for the sweep's steps)"
            )

    def pruner(self, steps: int | None) -> Any:
        """The Optuna pruner of this declaration (``steps``: the trainer's steps, if fixed)."""
        import optuna

        if self.kind == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.min_resource, reduction_factor=self.reduction_factor
            )
        if self.kind == "hyperband":
            top = self.max_resource or steps or "auto"
            return optuna.pruners.HyperbandPruner(
                min_resource=self.min_resource,
                max_resource=top,
                reduction_factor=self.reduction_factor,
            )
        if self.kind == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.startup_trials,
                n_warmup_steps=self.warmup_steps,
                interval_steps=self.interval_steps,
            )
        return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class Sweep:
    """A whole study: one Tune experiment, one Optuna study per cell, every config x seeds."""

    name: str
    experiment: str
    cells: Sequence[Cell]
    seeds: Sequence[int]
    metric: str  # an objective name from sweeps.engine.objectives
    fixed: dict[str, Any] = field(default_factory=dict)  # trainer-config keys for every cell
    resources: Resources = Resources()
    penalty: float | None = None  # objective of a diverged/failed seed; None: the objective's
    max_failures: int = 2
    sampler_seed: int = 0
    # fresh seeds for each cell's chosen step size: a count (the integers after the largest
    # tuning seed) or an explicit list, disjoint from ``seeds``; 0 or () for no confirmation
    confirm_seeds: int | Sequence[int] = ()
    # stop a step size (all its seeds) early: EarlyStopping(kind="halving", ...); default none
    early_stopping: EarlyStopping = EarlyStopping()

    def __post_init__(self) -> None:
        # integer-like seeds (numpy integers, a range) as plain ints; others are left for
        # ``validate`` to name
        object.__setattr__(self, "seeds", as_ints(self.seeds))
        confirm = self.confirm_seeds
        if isinstance(confirm, np.integer):
            object.__setattr__(self, "confirm_seeds", int(confirm))
        elif not isinstance(confirm, (int, str)):
            object.__setattr__(self, "confirm_seeds", as_ints(confirm))

    def confirmation_seeds(self) -> list[int]:
        """The confirmation seeds as a list: ``confirm_seeds`` itself, or for a count n the n
        integers after the largest tuning seed (tuning seeds 0-4 and n = 5: seeds 5-9)."""
        if isinstance(self.confirm_seeds, int) and not isinstance(self.confirm_seeds, bool):
            start = max(self.seeds) + 1 if len(self.seeds) else 0
            return list(range(start, start + self.confirm_seeds))
        return list(self.confirm_seeds)

    def validate(self) -> None:
        """Raise SweepError for anything that would fail later; touches no file."""
        from sweeps.engine.objectives import OBJECTIVES

        if not NAME_RE.match(self.name):
            raise SweepError(f"sweep name {self.name!r}: use letters, digits, '_', '-', '.'")
        if self.experiment not in experiments.EXPERIMENTS:
            raise SweepError(
                f"experiment {self.experiment!r} is unknown; allowed: "
                + ", ".join(experiments.EXPERIMENTS)
            )
        if self.metric not in OBJECTIVES:
            raise SweepError(f"metric {self.metric!r} is unknown; allowed: {', '.join(OBJECTIVES)}")
        reports = experiments.EXPERIMENTS[self.experiment].reports
        if not set(OBJECTIVES[self.metric].needs) <= set(reports):
            scored = [o.name for o in OBJECTIVES.values() if set(o.needs) <= set(reports)]
            raise SweepError(
                f"metric {self.metric!r}: the {self.experiment!r} experiment never reports "
                f"{', '.join(OBJECTIVES[self.metric].needs)}; its metrics: {', '.join(scored)}"
            )
        if not self.cells:
            raise SweepError("a sweep needs at least one cell (optimizer)")
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Sequence):
            raise SweepError(f"seeds {self.seeds!r}: give a list of distinct integers >= 0")
        if len(self.seeds) == 0:
            raise SweepError("seeds is empty: a sweep needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds
        ):
            raise SweepError(f"seeds {list(self.seeds)!r} must be distinct integers >= 0")
        self._check_confirm_seeds()
        if not isinstance(self.early_stopping, EarlyStopping):
            raise SweepError(
                f"early_stopping {self.early_stopping!r}: give an EarlyStopping(kind=...); "
                "kinds allowed: " + ", ".join(EARLY_STOPPING)
            )
        self.early_stopping.check()
        names = [c.name for c in self.cells]
        if len(set(names)) != len(names):
            raise SweepError(f"cell names must be distinct (set label=...): {names}")
        self.resources.check()
        for cell in self.cells:
            if cell.optimizer not in optim.NAMES:
                raise SweepError(
                    f"cell {cell.name!r}: unknown optimizer {cell.optimizer!r}; "
                    f"allowed: {', '.join(optim.NAMES)}"
                )
            cell.lrs.check(f"cell {cell.name!r}")
            lr = cell.lrs.grid[0] if cell.lrs.grid else cell.lrs.low
            try:
                experiments.resolve_config(self.trial_config(cell, lr, cell.lrs.ratios[0], 0))
            except ConfigError as e:
                raise SweepError(f"cell {cell.name!r}: {e}") from None

    def _check_confirm_seeds(self) -> None:
        value = self.confirm_seeds
        if isinstance(value, bool) or (
            not isinstance(value, int) and not isinstance(value, Sequence)
        ):
            raise SweepError(
                f"confirm_seeds {value!r}: give a count (an integer >= 0) or a list of seeds"
            )
        if isinstance(value, int) and value < 0:
            raise SweepError(f"confirm_seeds {value!r}: a count must be >= 0")
        seeds = self.confirmation_seeds()
        if len(set(seeds)) != len(seeds) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds
        ):
            raise SweepError(f"confirm_seeds {seeds!r} must be distinct integers >= 0")
        overlap = sorted(set(seeds) & set(self.seeds))
        if overlap:
            raise SweepError(
                f"confirm_seeds {seeds!r} overlap the tuning seeds {list(self.seeds)!r} in "
                f"{overlap}: confirmation seeds must be fresh (disjoint from the tuning seeds)"
            )

    def trial_config(self, cell: Cell, lr: float, ratio: float, seed: int) -> dict[str, Any]:
        """The trainer config of one trial (before defaults are filled in)."""
        config = {"experiment": self.experiment, "threads": max(1, int(self.resources.cpu))}
        config.update(**self.fixed, **cell.overrides)
        config.update(optimizer=cell.optimizer, seed=seed, lr_d=lr * ratio, lr_g=lr)
        if cell.dataset is not None:
            config["dataset"] = cell.dataset
        return config

    def data_configs(self) -> dict[str, dict[str, Any]]:
        """One resolved trial config per cell (call after ``validate``): what each cell's trials
        read their data from, for ``trainers.experiments.check_data``."""
        out = {}
        for cell in self.cells:
            lr = cell.lrs.grid[0] if cell.lrs.grid else cell.lrs.low
            config = self.trial_config(cell, lr, cell.lrs.ratios[0], self.seeds[0])
            out[cell.name] = experiments.resolve_config(config)
        return out

    def total_trials(self) -> int:
        """Tuning trials of every cell and, per cell, its chosen step size on each
        confirmation seed."""
        tuning = sum(c.lrs.size() for c in self.cells) * len(self.seeds)
        return tuning + len(self.cells) * len(self.confirmation_seeds())


def as_ints(values: Any) -> Any:
    """``values`` as a list of plain ints when every one is integer-like (``operator.index``:
    ints, numpy integers; not bools or floats), else unchanged."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        return values
    try:
        if any(isinstance(v, (bool, np.bool_)) for v in values):
            return values
        return [operator.index(v) for v in values]
    except TypeError:
        return values


# What a resume compares: everything that decides which trials run and what they compute.
# Resources, max_failures and the name may change between runs (another cluster, more retries).
RECORDED = (
    "experiment",
    "metric",
    "cells",
    "seeds",
    "confirm_seeds",
    "fixed",
    "penalty",
    "sampler_seed",
    "early_stopping",
)
# what a record written before a key existed means by its absence
ABSENT = {"confirm_seeds": [], "early_stopping": dataclasses.asdict(EarlyStopping())}
LRS_ABSENT = {"startup": None}


def record(sweep: Sweep) -> dict[str, Any]:
    """The declaration as plain JSON data (``sweep.json`` in the experiment directory)."""
    import json

    data = dataclasses.asdict(sweep)
    data["cells"] = [{"name": c.name, **dataclasses.asdict(c)} for c in sweep.cells]
    data["confirm_seeds"] = sweep.confirmation_seeds()
    out = {k: data[k] for k in RECORDED}
    out["objective"] = objective_record(sweep)  # for readers (analysis.report); not compared
    return json.loads(json.dumps(out, default=list))


def objective_record(sweep: Sweep) -> dict[str, Any]:
    """What a reader of the results needs to rank by the sweep's objective: its name, that it
    is minimised, the penalty a failed seed counts as, and whether it is 0/1 per seed."""
    from sweeps.engine.objectives import OBJECTIVES, penalty_of

    o = OBJECTIVES[sweep.metric]
    return {
        "name": o.name,
        "meaning": o.meaning,
        "higher_is_better": False,
        "penalty": penalty_of(sweep.metric, sweep.penalty),
        "binary": o.binary,
    }


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a stored ``record`` and the current one, in words."""
    out = []
    for key in RECORDED:
        old, new = stored.get(key, ABSENT.get(key)), current.get(key, ABSENT.get(key))
        if key == "early_stopping" and isinstance(old, dict):
            old = {**ABSENT[key], **old}  # a field added since the record was written
        if old == new:
            continue
        if key == "cells":
            before = {c["name"]: c for c in old or []}
            after = {c["name"]: c for c in new or []}
            for name in sorted(set(after) - set(before)):
                out.append(f"cell {name!r} added")
            for name in sorted(set(before) - set(after)):
                out.append(f"cell {name!r} removed")
            for name in sorted(set(before) & set(after)):
                for field_name in after[name]:
                    a, b = before[name].get(field_name), after[name][field_name]
                    if field_name == "lrs" and isinstance(a, dict):
                        a = {**LRS_ABSENT, **a}  # a key added since the record was written
                    if a != b:
                        out.append(f"cell {name!r} {field_name}: {a!r} -> {b!r}")
            if not out and [c["name"] for c in old] != [c["name"] for c in new]:
                out.append("the cells' order")
        else:
            out.append(f"{key}: {old!r} -> {new!r}")
    return out


def report_bad_declarations() -> None:
    """Make a ``SweepError`` that escapes while a script is loaded (``log_grid(-1e-4, ...)``
    at module level, before ``main`` runs) print its message and exit with code 2 rather
    than a traceback. Other exceptions keep Python's own report."""
    previous = sys.excepthook
    if getattr(previous, "gansweep", False):
        return

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if issubclass(kind, SweepError):
            print(f"gansweep: {error}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)  # tuner.EXIT_BAD_INPUT
        previous(kind, error, tb)

    hook.gansweep = True  # type: ignore[attr-defined]
    sys.excepthook = hook
