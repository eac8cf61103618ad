"""The comparison table a sweep prints at the end: best step size per cell, mean and spread of
the objective over seeds at that step size, diverged seeds counted."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sweeps.engine.objectives import OBJECTIVES
from sweeps.engine.searcher import CELL_KEY


def trial_rows(results: Any, metric: str, penalty: float | None) -> pd.DataFrame:
    """One row per trial of a Tune ResultGrid: cell, lr_d, lr_g, seed, objective, diverged."""
    objective = OBJECTIVES[metric]
    rows = []
    for r in results:
        cfg = r.config or {}
        last = r.metrics or {}
        failed = r.error is not None
        rows.append(
            {
                "cell": cfg.get(CELL_KEY),
                "optimizer": cfg.get("optimizer"),
                "lr_d": cfg.get("lr_d"),
                "lr_g": cfg.get("lr_g"),
                "seed": cfg.get("seed"),
                "objective": objective.of(None if failed else last, penalty),
                "diverged": bool(failed or last.get("diverged", False)),
                "failed": failed,
                "step": last.get("step"),
            }
        )
    return pd.DataFrame(rows)


def comparison(trials: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the step size with the lowest mean objective over seeds, and its statistics."""
    if trials.empty:
        return pd.DataFrame()
    by = ["cell", "lr_d", "lr_g"]
    agg = trials.groupby(by, dropna=False).agg(
        mean=("objective", "mean"),
        std=("objective", "std"),
        n=("objective", "size"),
        diverged=("diverged", "sum"),
    )
    agg = agg.reset_index()
    best = agg.loc[agg.groupby("cell")["mean"].idxmin()].sort_values("mean")
    best["std"] = best["std"].fillna(0.0)
    return best.reset_index(drop=True)


def markdown(table: pd.DataFrame, metric: str) -> str:
    """The comparison table as Markdown."""
    if table.empty:
        return "(no finished trials)"
    head = f"| cell | lr_D | lr_G | {metric} mean | std | seeds | diverged |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        std = "" if math.isnan(r["std"]) else f"{r['std']:.3g}"
        lines.append(
            f"| {r['cell']} | {r['lr_d']:.3g} | {r['lr_g']:.3g} | {r['mean']:.4g} | {std} "
            f"| {int(r['n'])} | {int(r['diverged'])} |"
        )
    return "\n".join(lines)
