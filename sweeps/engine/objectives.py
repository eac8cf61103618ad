"""The values a sweep minimises, computed from a trial's final report.

Every objective is minimised. A seed that diverged (or failed for good) counts as the
objective's ``penalty``, never as a missing value, so a step size that diverges for some seeds
is ranked by what it costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analysis.tables import penalised_mean


@dataclass(frozen=True)
class Objective:
    """A named function of the final report, its penalty and what it means."""

    name: str
    value: Callable[[dict[str, Any]], float]
    penalty: float
    meaning: str
    binary: bool = False  # 0 or 1 per seed (its table interval is Wilson's)
    needs: tuple[str, ...] = ()  # the report keys it is computed from

    def of(self, report: dict[str, Any] | None, penalty: float | None = None) -> float:
        """The objective of a final report; the penalty when it diverged, failed or is missing."""
        pen = self.penalty if penalty is None else penalty
        if not report or report.get("diverged"):
            return pen
        try:
            value = float(self.value(report))
        except (KeyError, TypeError, ValueError):
            return pen
        return value if math.isfinite(value) else pen


def _fid(r: dict[str, Any]) -> float:
    return r["fid"]


def _miss_both(r: dict[str, Any]) -> float:
    return 0.0 if r["verdict"] == "both" else 1.0


def _modes_missed(r: dict[str, Any]) -> float:
    return 1.0 - r["modes_covered"] / r["modes_total"]


def _mode_kl(r: dict[str, Any]) -> float:
    return r["mode_kl"]


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("fid", _fid, 500.0, "final FID", needs=("fid",)),
        Objective(
            "miss_both",
            _miss_both,
            1.0,
            "1 unless the generator learnt both modes separately",
            binary=True,
            needs=("verdict",),
        ),
        Objective(
            "modes_missed",
            _modes_missed,
            1.0,
            "share of the mixture's modes not covered at the end",
            needs=("modes_covered", "modes_total"),
        ),
        Objective(
            "mode_kl",
            _mode_kl,
            5.0,
            "KL(mode histogram || uniform) at the end: 0 balanced, log K collapsed",
            needs=("mode_kl",),
        ),
    )
}


def reported_by(experiment_reports: tuple[str, ...]) -> list[str]:
    """The objectives an experiment reporting ``experiment_reports`` can be scored by."""
    return [o.name for o in OBJECTIVES.values() if set(o.needs) <= set(experiment_reports)]


def penalty_of(metric: str, penalty: float | None = None) -> float:
    """A sweep's penalty: its own, else its objective's documented one."""
    return OBJECTIVES[metric].penalty if penalty is None else penalty


def score(values: list[float | None], metric: str, penalty: float | None = None) -> float:
    """A step size's score over its seeds (None for a failed seed): ``penalised_mean``."""
    return penalised_mean(values, penalty_of(metric, penalty))
