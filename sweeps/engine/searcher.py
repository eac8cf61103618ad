"""A Tune searcher with one Optuna study per cell, each suggestion run once per seed.

Every cell (optimizer x dataset x variant) has its own study over ``lr`` (and the lr_D/lr_G
``ratio`` axis): Optuna's GridSampler over the log grid (the paper's protocol) or TPESampler over
a log-uniform range. A study's trial is dispatched to Tune as one trial per seed; when all its
seeds have ended the study is told the mean objective over seeds (a diverged or failed seed
counts as the objective's penalty). Cells are served round-robin, so all run concurrently in the
one Tune experiment.
"""

from __future__ import annotations

import pickle
from collections import deque
from typing import Any

import optuna
from ray.tune.search import Searcher

from sweeps.engine.objectives import OBJECTIVES
from sweeps.engine.spec import Cell, Sweep
from trainers import experiments

CELL_KEY = "sweep_cell"
TRIAL_KEY = "sweep_trial"
OBJECTIVE = "objective"


class CellSearcher(Searcher):
    """One Optuna study per cell; the study sees the mean objective over seeds."""

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(metric=OBJECTIVE, mode="min")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep = sweep
        self.objective = OBJECTIVES[sweep.metric]
        self.studies: dict[str, optuna.Study] = {c.name: self._study(c) for c in sweep.cells}
        self._asked = {c.name: 0 for c in sweep.cells}
        self._queue: deque[tuple[str, int, dict[str, float], int]] = deque()
        self._open: dict[tuple[str, int], dict[str, Any]] = {}
        self._live: dict[str, tuple[str, int, int]] = {}
        self._next_cell = 0
        self.completed: list[dict[str, Any]] = []  # one row per study trial told

    def _study(self, cell: Cell) -> optuna.Study:
        seed = self.sweep.sampler_seed
        if cell.lrs.searcher == "grid":
            space = {"lr": list(cell.lrs.grid), "ratio": list(cell.lrs.ratios)}
            sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(space, seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed)
        return optuna.create_study(direction="minimize", sampler=sampler, study_name=cell.name)

    # -- Tune's Searcher interface -------------------------------------------------------------

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec
    ) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._queue:
            self._ask_next()
        if not self._queue:
            return Searcher.FINISHED if self._exhausted() else None
        cell_name, number, params, seed = self._queue.popleft()
        cell = next(c for c in self.sweep.cells if c.name == cell_name)
        raw = self.sweep.trial_config(cell, params["lr"], params["ratio"], seed)
        config = experiments.resolve_config(raw)
        config[CELL_KEY] = cell_name
        config[TRIAL_KEY] = number
        self._live[trial_id] = (cell_name, number, seed)
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self._live:
            return
        cell_name, number, seed = self._live.pop(trial_id)
        value = self.objective.of(None if error else result, self.sweep.penalty)
        entry = self._open[(cell_name, number)]
        entry["values"][seed] = value
        entry["diverged"][seed] = bool(error or not result or result.get("diverged"))
        if len(entry["values"]) < len(self.sweep.seeds):
            return
        values = [entry["values"][s] for s in self.sweep.seeds]
        mean = sum(values) / len(values)
        try:
            self.studies[cell_name].tell(number, mean)
        except RuntimeError as e:  # GridSampler calls study.stop() once the grid is done;
            if "Study.stop" not in str(e):  # under ask/tell that raises after the value is stored
                raise
        del self._open[(cell_name, number)]
        self.completed.append(
            {
                "cell": cell_name,
                "study_trial": number,
                **entry["params"],
                "objective_mean": mean,
                "objective_by_seed": dict(zip(self.sweep.seeds, values)),
                "diverged_seeds": sum(entry["diverged"].values()),
            }
        )

    # -- internals ---------------------------------------------------------------------------

    def _ask_next(self) -> None:
        """Ask the next cell (round-robin) that has step sizes left for one more study trial."""
        cells = self.sweep.cells
        for k in range(len(cells)):
            cell = cells[(self._next_cell + k) % len(cells)]
            if self._asked[cell.name] >= cell.lrs.size():
                continue
            self._next_cell = (self._next_cell + k + 1) % len(cells)
            trial = self.studies[cell.name].ask()
            params = self._params(cell, trial)
            self._asked[cell.name] += 1
            self._open[(cell.name, trial.number)] = {"params": params, "values": {}, "diverged": {}}
            for seed in self.sweep.seeds:
                self._queue.append((cell.name, trial.number, params, seed))
            return

    @staticmethod
    def _params(cell: Cell, trial: optuna.Trial) -> dict[str, float]:
        lrs = cell.lrs
        if lrs.searcher == "grid":
            lr = trial.suggest_float("lr", min(lrs.grid), max(lrs.grid), log=True)
            ratio = trial.suggest_float("ratio", min(lrs.ratios), max(lrs.ratios), log=True)
        else:
            lr = trial.suggest_float("lr", lrs.low, lrs.high, log=True)
            ratio = float(trial.suggest_categorical("ratio", list(lrs.ratios)))
        return {"lr": lr, "ratio": ratio}

    def _exhausted(self) -> bool:
        return all(self._asked[c.name] >= c.lrs.size() for c in self.sweep.cells)

    # -- state for Tuner.restore -------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("studies", "_asked", "_queue", "_open", "_live", "_next_cell", "completed")
        }

    def set_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
