"""Is a sweep done? Every declared (cell, step size, ratio, seed) ended exactly once.

A grid cell declares grid x ratios x seeds trials; a TPE cell ``trials`` step sizes x seeds;
with confirmation seeds, each cell also its one chosen step size x the confirmation seeds
(rows of ``stage`` "confirm"; rows without a stage are tuning rows). A trial has ended when it finished, diverged or errored after its retries (``status`` of
``analysis``), or was pruned (early stopping: every seed of a step size with a pruned row has
ended, dispatched or not, since a pruned step size's other seeds never run); a running or
absent one is missing. Checked on the collected rows, so what the
table rests on is what is checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sweeps.engine.spec import Sweep

ENDED = ("finished", "diverged", "errored", "pruned")


@dataclass
class Check:
    """What is missing or duplicated; ``ok`` when neither."""

    expected: int = 0
    ended: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated

    def describe(self, limit: int = 20) -> str:
        lines = [f"{self.ended} of {self.expected} declared trials ended"]
        for title, items in (("missing", self.missing), ("ran more than once", self.duplicated)):
            if items:
                shown = items[:limit] + (
                    [f"... and {len(items) - limit} more"] * (len(items) > limit)
                )
                lines.append(f"{title} ({len(items)}): " + "; ".join(shown))
        return "\n".join(lines)


def _num(x: float) -> str:
    return f"{float(x):.10g}"


def check(sweep: Sweep, final: Any) -> Check:
    """Compare each trial's last row (``analysis.final_rows`` of the sweep) with the
    declaration."""
    out = Check(expected=sweep.total_trials())
    if len(final):
        final = final[final["status"].isin(ENDED)]
    stage = final["stage"].fillna("tune") if "stage" in final.columns else None
    confirm = final[stage == "confirm"] if stage is not None else final.iloc[:0]
    final = final[stage != "confirm"] if stage is not None else final
    _check_confirmation(sweep, confirm, out)
    for cell in sweep.cells:
        rows = final[final["cell"] == cell.name] if len(final) else final
        got: Counter[tuple[str, str, int]] = Counter()
        pruned: set[tuple[str, str]] = set()
        statuses = rows.get("status", [None] * len(rows))
        for lr_g, lr_d, seed, status in zip(
            rows.get("lr_g", []), rows.get("lr_d", []), rows.get("seed", []), statuses
        ):
            got[(_num(lr_g), _num(lr_d / lr_g), int(seed))] += 1
            if status == "pruned":
                pruned.add((_num(lr_g), _num(lr_d / lr_g)))
        where = f"{cell.name}"
        for (lr, ratio, seed), n in sorted(got.items()):
            if n > 1:
                out.duplicated.append(f"{where} lr={lr} ratio={ratio} seed={seed} ({n} times)")
        if cell.lrs.searcher == "grid":
            for lr in cell.lrs.grid:
                for ratio in cell.lrs.ratios:
                    for seed in sweep.seeds:
                        key = (_num(lr), _num(lr * ratio / lr), int(seed))  # as the rows compute it
                        if got.get(key, 0) or key[:2] in pruned:
                            out.ended += 1
                        else:
                            out.missing.append(f"{where} lr={key[0]} ratio={key[1]} seed={seed}")
            continue
        by_lr: dict[tuple[str, str], set[int]] = {}
        for lr, ratio, seed in got:
            by_lr.setdefault((lr, ratio), set()).add(seed)
        out.ended += sum(
            len(sweep.seeds) if k in pruned else len(s & set(sweep.seeds)) for k, s in by_lr.items()
        )
        for (lr, ratio), seeds in sorted(by_lr.items()):
            if (lr, ratio) in pruned:
                continue
            for seed in sorted(set(sweep.seeds) - seeds):
                out.missing.append(f"{where} lr={lr} ratio={ratio} seed={seed}")
        untried = cell.lrs.trials - len(by_lr)
        if untried > 0:
            out.missing.append(
                f"{where}: {untried} of {cell.lrs.trials} step sizes never ran "
                f"({untried * len(sweep.seeds)} trials)"
            )
    return out


def _check_confirmation(sweep: Sweep, rows: Any, out: Check) -> None:
    """Each cell's confirmation: one step size, every confirmation seed ended once."""
    seeds = sweep.confirmation_seeds()
    if not seeds:
        return
    for cell in sweep.cells:
        mine = rows[rows["cell"] == cell.name] if len(rows) else rows
        got: Counter[int] = Counter(int(s) for s in mine.get("seed", []))
        steps = sorted(
            {(_num(g), _num(d / g)) for g, d in zip(mine.get("lr_g", []), mine.get("lr_d", []))}
        )
        where = f"{cell.name} (confirmation"
        where += f" at lr={steps[0][0]} ratio={steps[0][1]})" if len(steps) == 1 else ")"
        if len(steps) > 1:
            out.duplicated.append(
                f"{cell.name}: confirmation ran at {len(steps)} step sizes: "
                + ", ".join(f"lr={lr} ratio={r}" for lr, r in steps)
            )
        for seed, n in sorted(got.items()):
            if n > 1 and len(steps) == 1:
                out.duplicated.append(f"{where} seed={seed} ({n} times)")
        for seed in seeds:
            if got.get(seed, 0):
                out.ended += 1
            else:
                out.missing.append(f"{where} seed={seed}")
