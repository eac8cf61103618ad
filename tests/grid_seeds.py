"""A helper the real pruning sweeps of the tests share."""

from __future__ import annotations

import optuna


def grid_seed_asking_first(lr: float, grid: tuple[float, ...]) -> int:
    """A sampler seed whose GridSampler asks ``lr`` first (the study trial whose seeds run, and
    reach the first rung, first on 2 CPUs), so that successive halving prunes the other."""
    for seed in range(50):
        sampler = optuna.samplers.GridSampler({"lr": list(grid), "ratio": [1.0]}, seed=seed)
        trial = optuna.create_study(sampler=sampler).ask()
        if trial.suggest_float("lr", min(grid), max(grid), log=True) == lr:
            return seed
    raise AssertionError("no seed asks it first")
