"""Per-cell statistics of a comparison table, over the seeds of the chosen step size.

``main_table`` calls these on each cell's per-seed values (``tables.step_size_table(values=
True)``): a confidence interval of the mean, the difference of means to the reference cell with
its interval, the probability that a seed beats a reference seed, a permutation test, and the
interquartile mean. Every random draw comes from ``numpy.random.default_rng(seed)``, drawn
afresh for each computation, so a table is the same every time it is computed.

Interval of the mean: bias-corrected and accelerated bootstrap (BCa, ``scipy.stats.bootstrap``).
Degenerate samples: no value -> NaN; one value -> NaN (no spread to resample); all values equal
-> [v, v]; where BCa still gives no finite bound (a bootstrap distribution that is nearly
degenerate, e.g. n = 2), the percentile bootstrap is used instead. With few seeds the bootstrap
under-covers (about 89% for a nominal 95% at n = 10 on normal data, 88% on exponential data;
93-94% at n = 30: tests/test_analysis_stats.py): it resamples the plug-in distribution, whose
spread is smaller than the population's by sqrt((n-1)/n), and uses normal, not t, quantiles.
A 0/1 metric (``Metric.binary``: the share of bimodal seeds learning both modes) gets the Wilson
score interval of the share instead (``scipy.stats.binomtest(k, n).proportion_ci``), which is
defined from n = 1 on.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHOD = "BCa"
N_RESAMPLES = 10_000
# an iqm only from this many seeds on (a quarter trimmed at each end leaves half of them)
IQM_MIN_N = 8


@dataclass(frozen=True)
class Settings:
    """How a table's statistics were computed (kept in ``table.attrs["stats"]``)."""

    level: float = 0.95
    n_resamples: int = N_RESAMPLES
    seed: int = 0
    method: str = METHOD


def _scipy():
    """``scipy.stats``, imported when a statistic is first computed: a trial's process
    imports this module (through ``analysis.tables``) but never computes one."""
    from scipy import stats

    return stats


def _rng_kw(func, seed: int) -> dict:
    """The generator keyword of a scipy function: ``rng`` (scipy >= 1.15), else
    ``random_state``."""
    gen = np.random.default_rng(seed)
    return {"rng": gen} if "rng" in inspect.signature(func).parameters else {"random_state": gen}


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _bootstrap(samples: tuple[np.ndarray, ...], statistic, s: Settings) -> tuple[float, float]:
    for method in dict.fromkeys((s.method, "percentile")):
        with warnings.catch_warnings():
            # BCa warns (DegenerateDataWarning, RuntimeWarning) where it cannot be computed;
            # that case is handled below by the percentile method
            warnings.simplefilter("ignore")
            res = _scipy().bootstrap(
                samples,
                statistic,
                confidence_level=s.level,
                n_resamples=s.n_resamples,
                method=method,
                vectorized=True,
                **_rng_kw(_scipy().bootstrap, s.seed),
            )
        lo, hi = (float(v) for v in res.confidence_interval)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return math.nan, math.nan


def mean_ci(values: Sequence[float], s: Settings, binary: bool = False) -> tuple[float, float]:
    """The ``s.level`` interval of the mean of ``values`` (Wilson's for a 0/1 share)."""
    x = np.asarray(values, dtype=float)
    if binary and len(x) and np.isin(x, (0.0, 1.0)).all():
        ci = _scipy().binomtest(int(x.sum()), len(x)).proportion_ci(s.level, method="wilson")
        return float(ci.low), float(ci.high)
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    return _bootstrap((x,), _mean, s)


def diff_ci(values: Sequence[float], ref: Sequence[float], s: Settings) -> tuple[float, float]:
    """The ``s.level`` bootstrap interval of mean(values) - mean(ref), the two samples
    resampled independently (NaN unless each has two values or more)."""
    x, y = np.asarray(values, dtype=float), np.asarray(ref, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]) and np.all(y == y[0]):
        d = float(x[0] - y[0])
        return d, d
    return _bootstrap((x, y), _diff, s)


def p_improve(values: Sequence[float], ref: Sequence[float], higher_is_better: bool) -> float:
    """P(a seed of ``values`` beats a seed of ``ref``): the Mann-Whitney U / (n m), a tie
    counting 1/2; "beats" is "is lower" unless ``higher_is_better``."""
    x, y = np.asarray(values, dtype=float), np.asarray(ref, dtype=float)
    if not len(x) or not len(y):
        return math.nan
    d = x[:, None] - y[None, :]
    if not higher_is_better:
        d = -d
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def p_value(values: Sequence[float], ref: Sequence[float], s: Settings) -> float:
    """Two-sided permutation test of the difference of means (``scipy.stats.
    permutation_test``; two-sided is twice the smaller one-sided p, at most 1): exact when there are at most ``s.n_resamples`` distinct
    permutations, else ``s.n_resamples`` seeded random ones. NaN unless each sample has two
    values or more (scipy's requirement)."""
    x, y = np.asarray(values, dtype=float), np.asarray(ref, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return math.nan
    res = _scipy().permutation_test(
        (x, y),
        _diff,
        permutation_type="independent",
        alternative="two-sided",
        n_resamples=s.n_resamples,
        vectorized=True,
        **_rng_kw(_scipy().permutation_test, s.seed),
    )
    return float(res.pvalue)


def iqm(values: Sequence[float]) -> float:
    """The interquartile mean (a quarter trimmed at each end) from ``IQM_MIN_N`` values on."""
    x = np.asarray(values, dtype=float)
    return float(_scipy().trim_mean(x, 0.25)) if len(x) >= IQM_MIN_N else math.nan
