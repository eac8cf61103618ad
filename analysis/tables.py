"""The paper's comparison tables from a loaded results frame.

For each (experiment, dataset, model), sweep and optimizer cell: the step
size (lr_d, lr_g) chosen on the tuning seeds by the final metric (ties: smaller lr_d, then
lr_g), the mean, std and n of that metric at that step size over the tuning seeds or, where the
sweep re-ran the chosen step size on fresh seeds (rows with ``stage`` "confirm"), over those;
how many seeds diverged, errored or are still running there, and the ratio of the mean to
Adam's. ``grid_table`` shows every step size instead; a choice at the edge of its grid is
flagged. FID-like metrics are only compared under one evaluation protocol (``ProtocolError``
otherwise). Statistics over the seeds (``analysis.stats``): a confidence interval of the mean,
the difference to Adam with its interval, P(a seed beats an Adam seed), a permutation test, the
interquartile mean; ``caption(table)`` says what they are over and how they were made.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import stats
from analysis.schema import PROTOCOL

GROUP = ("experiment", "dataset", "model")
STEP_SIZE = ("lr_d", "lr_g")
TRIAL = ("sweep", "trial_id")
FAILED = ("diverged", "errored")
# what a row's statistics are over: the seeds the step size was searched on, or fresh ones
STAGES = ("tune", "confirm")
# never pooled across, unless asked (main_table(by=..., pool=True)): two sweeps are two
# questions (another budget, other fixed settings); the cells of one sweep are compared even
# where their settings differ (e.g. sgda's own default number of steps)
SPLIT = ("sweep",)


class ProtocolError(ValueError):
    """FID values of different evaluation protocols would be compared in one column."""


@dataclass(frozen=True)
class Metric:
    """A final-row metric: how to read it, which direction is better, what it means."""

    name: str
    value: Callable[[pd.DataFrame], pd.Series]
    higher_is_better: bool
    label: str
    needs_protocol: bool = False
    # a 0/1 value per seed (a share over seeds): its interval is Wilson's, not a bootstrap
    binary: bool = False


def _col(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    def get(d: pd.DataFrame) -> pd.Series:
        if name not in d.columns:
            return pd.Series(np.nan, index=d.index)
        return pd.to_numeric(d[name], errors="coerce").astype(float)

    return get


def _both(d: pd.DataFrame) -> pd.Series:
    verdict = d["verdict"] if "verdict" in d.columns else pd.Series(None, index=d.index)
    return verdict.eq("both").astype(float).where(verdict.notna())


def _modes_share(d: pd.DataFrame) -> pd.Series:
    return _col("modes_covered")(d) / _col("modes_total")(d)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("fid", _col("fid"), False, "final FID", needs_protocol=True),
        Metric("fid_best", _col("fid_best"), False, "best FID", needs_protocol=True),
        Metric("kid", _col("kid"), False, "final KID", needs_protocol=True),
        Metric("both", _both, True, "share of seeds learning both modes", binary=True),
        Metric("modes_covered", _col("modes_covered"), True, "modes covered"),
        Metric("modes_share", _modes_share, True, "share of modes covered"),
        Metric("hq_fraction", _col("hq_fraction"), True, "high-quality samples"),
        Metric("mode_kl", _col("mode_kl"), False, "KL(mode histogram, uniform)"),
        Metric("objective", _col("objective"), False, "sweep objective"),
    )
}

# the default metric of each experiment's table
EXPERIMENT_METRIC = {"bimodal": "both", "mog": "modes_covered"}


def get_metric(name: str) -> Metric:
    """The metric ``name`` (ValueError naming the known ones otherwise)."""
    if name not in METRICS:
        raise ValueError(f"metric {name!r} is unknown; known: {', '.join(METRICS)}")
    return METRICS[name]


def numeric_columns(df: pd.DataFrame) -> list[str]:
    """The numeric (not boolean) columns of ``df``: what ``resolve_metric`` accepts by name."""
    return [
        c
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]


# numeric columns that identify or configure a trial: accepted as metrics, not suggested
NOT_SUGGESTED = {"iteration", "seed", "lr_d", "lr_g", "steps", "study_trial", "step", "kimg"}
NOT_SUGGESTED |= {"time_s", "time_total_s", "fid_num_gen"}


def _suggested(df: pd.DataFrame, with_values: bool = False) -> list[str]:
    """The numeric columns worth naming in a message: not ids, step sizes or ``config/``."""
    return [
        c
        for c in numeric_columns(df)
        if c not in NOT_SUGGESTED
        and not c.startswith("config/")
        and (not with_values or df[c].notna().any())
    ]


def _names(names: Sequence[str], most: int = 30) -> str:
    shown = ", ".join(names[:most]) or "none"
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def resolve_metric(
    df: pd.DataFrame,
    name: str,
    higher_is_better: bool | None = None,
    binary: bool | None = None,
) -> Metric:
    """The metric ``name``: a known one (``METRICS``), else any numeric column of ``df``, whose
    direction must then be given (``higher_is_better``). ``higher_is_better``/``binary`` given
    for a known metric override what it declares. ValueError otherwise, listing the known
    metrics and the numeric columns of ``df``."""
    if name in METRICS:
        m = METRICS[name]
        if higher_is_better is not None:
            m = dataclasses.replace(m, higher_is_better=higher_is_better)
    elif name in numeric_columns(df):
        if higher_is_better is None:
            raise ValueError(
                f"metric {name!r} is a numeric column but not a known metric, so its direction "
                f"is unknown: pass higher_is_better=True or False (known: {', '.join(METRICS)})"
            )
        m = Metric(name, _col(name), higher_is_better, name)
    else:
        raise ValueError(
            f"metric {name!r} is unknown; known: {', '.join(METRICS)}; or any numeric column "
            f"with higher_is_better=: {_names([c for c in _suggested(df) if c not in METRICS])}"
        )
    return m if binary is None else dataclasses.replace(m, binary=binary)


def metric_for(experiment: str) -> str:
    """The metric the paper's table uses for ``experiment`` (FID for the image GANs)."""
    return EXPERIMENT_METRIC.get(experiment, "fid")


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each trial's last row (its final report when it finished)."""
    if df.empty:
        return df
    last = df.sort_values([*TRIAL, "iteration"], kind="stable")
    return last.groupby(list(TRIAL), sort=False).tail(1).reset_index(drop=True)


def stage_of(d: pd.DataFrame) -> pd.Series:
    """Each row's stage (``STAGES``): its ``stage`` column, absent or null meaning "tune"."""
    if "stage" not in d.columns:
        return pd.Series("tune", index=d.index, dtype=object)
    s = d["stage"].astype(object).where(d["stage"].notna(), "tune")
    bad = sorted(set(s) - set(STAGES))
    if bad:
        raise ValueError(f"column 'stage' holds {bad}; allowed: tune, confirm (null = tune)")
    return s


def _check_stage(stage: str | None) -> None:
    if stage not in (None, *STAGES):
        raise ValueError(
            f"stage={stage!r}; allowed: None (confirm where there is one), tune, confirm"
        )


def protocol_label(row: pd.Series) -> str:
    """The FID protocol of a row as text (empty when the row has no FID)."""
    vals = [row.get(c) for c in PROTOCOL]
    if all(v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA for v in vals):
        return ""
    n, ref, mode, ext = vals
    return f"n={n} ref={ref} mode={mode} extractor={ext}"


def check_protocol(final: pd.DataFrame, by: list[str], metric: str) -> pd.Series:
    """The protocol label of each row; raises ``ProtocolError`` if a group mixes protocols."""
    labels = final.apply(protocol_label, axis=1) if len(final) else pd.Series(dtype=str)
    has = final.assign(_protocol=labels)[labels != ""]
    for key, group in has.groupby(by, dropna=False):
        seen = sorted(group["_protocol"].unique())
        if len(seen) > 1:
            where = ", ".join(f"{k}={v}" for k, v in zip(by, np.atleast_1d(key), strict=False))
            raise ProtocolError(
                f"{metric}: {where} mixes FID protocols, which are not comparable: "
                + "; ".join(seen)
                + ". Keep the rows of one protocol (columns fid_num_gen, fid_ref, fid_mode, "
                "fid_extractor), or pass by_protocol=True for one table per protocol."
            )
    return labels


def _groups(df: pd.DataFrame) -> list[str]:
    return [c for c in GROUP if c in df.columns]


def split_keys(df: pd.DataFrame, by: Sequence[str] | None = None, pool: bool = False) -> list[str]:
    """The columns besides the group and cell that rows are never pooled across: ``by``
    (default ``SPLIT``: the sweep), none with ``pool``; those ``df`` has."""
    if pool and by:
        raise ValueError("pass pool=True or by=..., not both")
    keys = () if pool else (SPLIT if by is None else tuple(by))
    missing = [c for c in keys if c not in df.columns and c not in SPLIT]
    if missing:
        raise ValueError(f"by={list(keys)}: no column {', '.join(missing)} in the frame")
    return [c for c in keys if c in df.columns]


def cell_keys(df: pd.DataFrame, split: Sequence[str], by_protocol: bool = False) -> list[str]:
    """The columns that make one cell of a table: group, split, (protocol), cell."""
    return [*_groups(df), *split, *(["protocol"] if by_protocol else []), "cell"]


def _mean(x: Sequence[float]) -> float:
    return math.fsum(x) / len(x) if len(x) else np.nan


def _step_rows(
    df: pd.DataFrame, m: Metric, by_protocol: bool, split: Sequence[str], values: bool
) -> pd.DataFrame:
    """One row per (cell, stage, lr_d, lr_g): ``step_size_table`` of the metric ``m``."""
    final = final_rows(df)
    if final.empty:
        return pd.DataFrame()
    cell = cell_keys(final, split, by_protocol)
    protocol: pd.Series | str = ""
    if m.needs_protocol:
        if by_protocol:
            protocol = final.apply(protocol_label, axis=1)
        else:
            protocol = check_protocol(final, _groups(final), m.name)
    final = final.assign(
        _value=m.value(final).astype(float),
        protocol=protocol,
        stage=stage_of(final),
        _settled=final["status"].isin(["finished", *FAILED]),
    )
    # only settled seeds carry a value; a running trial's last row is not final
    final.loc[~final["_settled"] | final["status"].isin(FAILED), "_value"] = np.nan
    keys = [*cell, "stage", *STEP_SIZE]
    pooled = "sweep" in final.columns and "sweep" not in keys
    rows = []
    for key, g in final.groupby(keys, dropna=False, sort=True):
        if "seed" in g.columns:
            g = g.sort_values("seed", kind="stable")
        got = [float(v) for v in g["_value"].dropna()]
        settled = int(g["_settled"].sum())
        failed = int(g["status"].isin(FAILED).sum())
        labels = [p for p in g["protocol"] if p]
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                **({"sweep": ", ".join(sorted(set(map(str, g["sweep"]))))} if pooled else {}),
                "optimizer": g["optimizer"].iloc[0],
                "mean": _mean(got),
                "std": float(np.std(got, ddof=1)) if len(got) > 1 else np.nan,
                "n": len(got),
                "seeds": len(g),
                "diverged": int((g["status"] == "diverged").sum()),
                "errored": int((g["status"] == "errored").sum()),
                "running": int((g["status"] == "running").sum()),
                "pruned": int((g["status"] == "pruned").sum()),
                "failed_share": failed / settled if settled else np.nan,
                "protocol": labels[0] if labels else "",
                **({"values": tuple(got)} if values else {}),
            }
        )
    return pd.DataFrame(rows)


def step_size_table(
    df: pd.DataFrame,
    metric: str = "fid",
    by_protocol: bool = False,
    values: bool = False,
    *,
    higher_is_better: bool | None = None,
    by: Sequence[str] | None = None,
    pool: bool = False,
) -> pd.DataFrame:
    """Statistics of the final metric for every (group, sweep, steps, cell, stage, lr_d, lr_g)
    over seeds.

    FID-like metrics: a group mixing evaluation protocols raises ``ProtocolError``, unless
    ``by_protocol``, which makes each protocol its own group. ``metric``, ``higher_is_better``:
    see ``resolve_metric``; ``by``/``pool``: see ``split_keys`` (never pooled across sweeps by
    default).

    Columns: the group columns, ``sweep`` and ``steps`` (the split; pooled: ``sweep`` lists the
    sweeps), ``cell``, ``stage`` ("tune" or "confirm"), ``lr_d``, ``lr_g``, ``optimizer``,
    ``mean`` (``math.fsum``), ``std``, ``n`` (seeds with a value), ``seeds`` (trials),
    ``diverged``, ``errored``, ``running``, ``pruned`` (seeds of a step size the sweep's early
    stopping stopped: no value), ``protocol`` and ``failed_share`` (diverged or
    errored among the settled seeds). With ``values``, also ``values``: a tuple of the per-seed
    values (the ``n`` seeds with a value, in seed order; failed and running seeds left out).
    """
    m = resolve_metric(df, metric, higher_is_better)
    return _step_rows(df, m, by_protocol, split_keys(df, by, pool), values)


def penalised_mean(values: Sequence[float | None], penalty: float) -> float:
    """How a step size is scored over its seeds: the mean, each failed seed (None or NaN: it
    diverged or errored) counted as ``penalty``. A sweep's searcher tells each Optuna study this
    value and its table ranks step sizes by it, so both choose the same step size. The sum is
    ``math.fsum``: exact, so the score does not depend on the order of the seeds."""
    vals = [penalty if v is None or math.isnan(v) else float(v) for v in values]
    return math.fsum(vals) / len(vals) if vals else math.nan


def _scored(steps: pd.DataFrame, m: Metric, penalty: float | None) -> pd.DataFrame:
    """``steps`` with ``score`` (with a penalty) and the ranking columns ``_nan``, ``_rank0``,
    ``_rank1`` (ascending is better)."""
    sign = -1.0 if m.higher_is_better else 1.0
    if penalty is None:
        return steps.assign(
            _rank0=steps["failed_share"].fillna(1.0),
            _rank1=sign * steps["mean"],
            _nan=steps["mean"].isna(),
        )
    failed = steps["diverged"] + steps["errored"]
    score = pd.Series(
        [
            penalised_mean([*v, *([None] * f)], penalty)
            for v, f in zip(steps["values"], failed, strict=True)
        ],
        index=steps.index,
        dtype=float,
    )
    return steps.assign(score=score, _rank0=0.0, _rank1=sign * score, _nan=score.isna())


RANKING = ["_nan", "_rank0", "_rank1", *STEP_SIZE]


def _best(tune: pd.DataFrame) -> pd.Series | None:
    """The chosen step size among a cell's tune rows: the best score (mean without a penalty,
    fewer failed seeds first), ties to the smaller lr_d, then the smaller lr_g. A step size the
    sweep's early stopping pruned (any ``pruned`` seed) is never chosen."""
    if "pruned" in tune.columns:
        tune = tune[tune["pruned"] == 0]
    if tune.empty:
        return None
    return tune.sort_values(RANKING, kind="stable", na_position="last").iloc[0]


def _same(a: float, b: float) -> bool:
    return a == b or (pd.isna(a) and pd.isna(b))


def _same_step(a: pd.Series, b: pd.Series) -> bool:
    return all(_same(a[c], b[c]) for c in STEP_SIZE)


def _at(rows: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    """The ``rows`` at the step size of ``row``."""
    return rows[[_same_step(r, row) for _, r in rows.iterrows()]]


def _where(keys: Sequence[str], key: object) -> str:
    vals = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, vals, strict=True) if pd.notna(v))


def _lr(row: pd.Series) -> str:
    return f"lr_d={row['lr_d']:g}, lr_g={row['lr_g']:g}"


def edge_of(tried: pd.DataFrame, row: pd.Series) -> tuple[str, str]:
    """("low" or "high", "lr_g" or "lr_d") when the row's lr_g (else lr_d) is the smallest or
    largest of the cell's ``tried`` step sizes, counted only for a step size with 3+ values;
    ("", "") otherwise."""
    for col in ("lr_g", "lr_d"):
        vals = sorted(set(tried[col].dropna()))
        if len(vals) >= 3 and row[col] in (vals[0], vals[-1]):
            return ("low" if row[col] == vals[0] else "high"), col
    return "", ""


def _edge_warning(where: str, tried: pd.DataFrame, row: pd.Series, edge: str, col: str) -> str:
    vals = sorted(set(tried[col].dropna()))
    side = "smallest" if edge == "low" else "largest"
    return (
        f"{where}: the chosen {col} = {row[col]:g} is the {side} of the {len(vals)} tried "
        f"({vals[0]:g} ... {vals[-1]:g}): the best step size may lie outside the grid; "
        "widen the search range"
    )


def _confirmed(confirm: pd.DataFrame, where: str) -> pd.Series:
    if len(confirm) > 1:
        sizes = "; ".join(_lr(r) for _, r in confirm.iterrows())
        raise ValueError(
            f"{where}: the confirm rows ran at more than one step size ({sizes}); a "
            "confirmation re-runs the one step size the sweep chose"
        )
    return confirm.iloc[0]


def _with_tune(row: pd.Series, tune: pd.DataFrame, edge: str) -> dict:
    """The row with ``tune_mean``, ``tune_n``, ``tune_score`` of the tune stage at its step
    size and its grid ``edge``."""
    at = _at(tune, row)
    out = {**row.to_dict(), "edge": edge}
    out["tune_mean"] = float(at["mean"].iloc[0]) if len(at) else np.nan
    out["tune_n"] = int(at["n"].iloc[0]) if len(at) else 0
    if "score" in row.index:
        out["tune_score"] = float(at["score"].iloc[0]) if len(at) else np.nan
    return out


def _pick(
    steps: pd.DataFrame, cell: list[str], stage: str | None, metric: str
) -> tuple[pd.DataFrame, list[str]]:
    """One row per cell: its tune-stage choice, or (``stage`` "confirm", or None where the
    cell has confirm rows) its confirm rows; and the warnings about them."""
    rows, notes = [], []
    for key, g in steps.groupby(cell, dropna=False, sort=True):
        where = _where(cell, key)
        tune, confirm = g[g["stage"] == "tune"], g[g["stage"] == "confirm"]
        best = _best(tune)
        if stage == "confirm" or (stage is None and len(confirm)):
            if confirm.empty:
                notes.append(f"{where}: no confirm rows; left out (stage=None shows its tune rows)")
                continue
            row = _confirmed(confirm, where)
            if best is None:
                notes.append(f"{where}: confirm rows without tune rows")
            elif not _same_step(best, row):
                notes.append(
                    f"{where}: confirmed at {_lr(row)} (the sweep's choice), but the tune "
                    f"stage's best for {metric} is {_lr(best)}; the table keeps the confirmed one"
                )
        elif best is None:
            if len(tune) and (tune["pruned"] > 0).all():
                notes.append(f"{where}: every step size was pruned (early stopping); none chosen")
            continue
        else:
            row = best
        edge, col = edge_of(tune, row)
        if edge:
            notes.append(_edge_warning(where, tune, row, edge, col))
        rows.append(_with_tune(row, tune, edge))
    return pd.DataFrame(rows), notes


def _group_ids(table: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """A number per row naming its comparison group (the cell keys but ``cell``)."""
    keys = [k for k in keys if k in table.columns]
    if not keys:
        return pd.Series(0, index=table.index)
    return table.groupby(keys, dropna=False, sort=False).ngroup()


def _reference_rows(table: pd.DataFrame, groups: pd.Series, reference: str) -> dict[int, object]:
    """group id -> index of its reference row (the ``reference`` cell, else the one cell whose
    optimizer is ``reference``); groups without exactly one have none."""
    out = {}
    for gid, idx in table.groupby(groups).groups.items():
        group = table.loc[idx]
        ref = group[group["cell"] == reference]
        if ref.empty:
            ref = group[group["optimizer"] == reference]
        if len(ref) == 1:
            out[gid] = ref.index[0]
    return out


def _no_values(df: pd.DataFrame, m: Metric) -> str | None:
    """A message when no row of ``df`` has a value of ``m`` (None when one has)."""
    if df.empty or m.value(df).notna().any():
        return None
    known = [k for k, v in METRICS.items() if v.value(df).notna().any()]
    other = [c for c in _suggested(df, with_values=True) if c not in METRICS]
    return (
        f"no row has a value of metric {m.name!r}; metrics with values here: "
        f"{_names(known)}; other numeric columns with values: {_names(other)}"
    )


def _empty(message: str) -> pd.DataFrame:
    warnings.warn(message, stacklevel=3)
    out = pd.DataFrame()
    out.attrs["warnings"] = [message]
    return out


def main_table(
    df: pd.DataFrame,
    metric: str = "fid",
    reference: str = "adam",
    penalty: float | None = None,
    by_protocol: bool = False,
    level: float = 0.95,
    seed: int = 0,
    n_resamples: int = stats.N_RESAMPLES,
    binary: bool | None = None,
    *,
    higher_is_better: bool | None = None,
    stage: str | None = None,
    by: Sequence[str] | None = None,
    pool: bool = False,
    grid: bool = False,
) -> pd.DataFrame:
    """Per (group, sweep, steps, cell): the step size with the best score of the tune stage.

    ``metric``: a known one (``METRICS``) or any numeric column with ``higher_is_better``
    (``resolve_metric``); when no row has a value of it, a ``warnings.warn`` naming the columns
    that do, and an empty table (``attrs["warnings"]`` holds the message).
    ``binary``: the metric is a 0/1 outcome per seed (its interval is then Wilson's); default:
    what the metric declares (a sweep's ``objective`` is 0/1 for ``miss_both``).

    Cells: rows are never pooled across sweeps (each its own budget and fixed settings): ``by``
    names the columns besides group and cell to keep apart (default ``SPLIT``), ``pool=True`` pools them (the
    ``sweep`` column then lists the sweeps pooled). ``grid=True``: ``grid_table`` instead.

    Choice (on the tune rows only, whatever ``stage``): a diverged or errored seed has no value;
    with ``penalty`` it counts as that value (``penalised_mean``, column ``score``), without one
    a step size with fewer failed seeds always ranks first; then the best mean in the metric's
    direction; ties go to the smaller lr_d, then the smaller lr_g (the searcher's rule). A step
    size the sweep's early stopping pruned (column ``pruned``: its seeds stopped early, status
    "pruned") is never chosen.

    Stages (column ``stage`` of the rows: "tune", the seeds the step size was searched on, or
    "confirm", fresh seeds re-run at the chosen step size; absent or null is "tune"):
    ``stage=None`` reports each cell's confirm rows where it has some, else its tune rows;
    ``"confirm"`` only confirm rows (cells without are left out, with a warning), at the step
    size they ran at (ValueError when a cell's confirm rows span several), with a warning where
    that differs from this metric's tune-stage choice; ``"tune"`` the tune rows only.
    Columns ``stage`` (what the row's statistics are over), ``tune_mean``, ``tune_n`` and, with
    a penalty, ``tune_score``: the tune stage at the row's step size. ``edge``: "low"/"high"
    when the row's lr_g (else lr_d) is the smallest/largest of the 3+ the cell tried (with a
    warning), else "". ``table.attrs["warnings"]``: these warnings (``to_markdown`` prints them).

    ``ratio`` is the mean divided by the ``reference`` cell's mean in the same group (NaN where
    that is 0; the display says so and gives the difference).
    FID-like metrics need one protocol per group (see ``step_size_table``).

    Statistics over the seeds of each row's stage (``analysis.stats``; ``caption(table)`` says
    how they were made). Their sample: the seeds with a value, and with ``penalty`` each
    diverged or errored seed at the penalty (the values ``score`` averages); without a penalty
    the failed seeds are left out (they are counted in ``diverged``/``errored``). Running seeds
    never count.

    - ``ci_low``, ``ci_high``: the ``level`` interval of the mean: BCa bootstrap with
      ``n_resamples`` resamples drawn from ``seed`` (a 0/1 metric: Wilson score interval of the
      share); NaN for one seed, [v, v] when every seed has the value v.
    - against the ``reference`` cell of the group (NaN on the reference row and where the group
      has none): ``diff`` (mean minus the reference's mean), ``diff_low``, ``diff_high`` (its
      bootstrap interval, the two samples resampled independently), ``p_improve`` (P(a seed
      beats a reference seed), ties 1/2, "beats" in the metric's direction) and ``p_value``
      (two-sided permutation test of the difference of means; exact up to ``n_resamples``
      distinct permutations).
    - ``iqm``: interquartile mean, from 8 seeds on (NaN below).
    - ``is_reference``: the row is its group's reference (the one the others are compared to).

    ``table.attrs``: ``metric``, ``higher_is_better``, ``reference``, ``penalty``, ``stage``,
    ``groups`` (the comparison group's columns), ``warnings`` and ``stats`` (level, method,
    n_resamples, seed, failed: "penalised" or "excluded").
    """
    _check_stage(stage)
    m = resolve_metric(df, metric, higher_is_better, binary)
    if grid:
        return grid_table(
            df,
            metric,
            penalty,
            by_protocol,
            level,
            seed,
            n_resamples,
            m.binary,
            higher_is_better=m.higher_is_better,
            stage=stage,
            by=by,
            pool=pool,
        )
    none = _no_values(df, m)
    if none:
        return _empty(f"main_table: {none}")
    split = split_keys(df, by, pool)
    steps = _step_rows(df, m, by_protocol, split, values=True)
    if steps.empty:
        return steps
    cell = cell_keys(steps, split, by_protocol)
    best, notes = _pick(_scored(steps, m, penalty), cell, stage, metric)
    if best.empty:
        return _empty(f"main_table: no {stage} rows; " + "; ".join(notes))
    groups = _group_ids(best, cell[:-1])
    refs = _reference_rows(best, groups, reference)
    best["ratio"] = np.nan
    for gid, r in refs.items():
        ref_mean = best.loc[r, "mean"]
        if pd.notna(ref_mean) and ref_mean != 0.0:
            idx = groups.index[groups == gid]
            best.loc[idx, "ratio"] = best.loc[idx, "mean"] / ref_mean
    settings = stats.Settings(level=level, n_resamples=n_resamples, seed=seed)
    best = _add_stats(best, groups, refs, m, penalty, settings)
    best = best.drop(columns=[c for c in [*RANKING[:3], "values"] if c in best.columns])
    best = best.reset_index(drop=True)
    best.attrs.update(_attrs(metric, m, penalty, stage, cell, notes, settings), reference=reference)
    return best


def _attrs(
    metric: str,
    m: Metric,
    penalty: float | None,
    stage: str | None,
    cell: list[str],
    notes: list[str],
    settings: stats.Settings,
) -> dict:
    """What a table says about itself (``attrs``): the metric, the stage, the warnings and how
    its statistics were made."""
    return {
        "metric": metric,
        "higher_is_better": m.higher_is_better,
        "penalty": penalty,
        "stage": stage,
        "groups": cell[:-1],
        "warnings": notes,
        "stats": {
            "level": settings.level,
            "method": settings.method,
            "n_resamples": settings.n_resamples,
            "seed": settings.seed,
            "failed": "excluded" if penalty is None else "penalised",
            "binary": m.binary,
        },
    }


def grid_table(
    df: pd.DataFrame,
    metric: str = "fid",
    penalty: float | None = None,
    by_protocol: bool = False,
    level: float = 0.95,
    seed: int = 0,
    n_resamples: int = stats.N_RESAMPLES,
    binary: bool | None = None,
    *,
    higher_is_better: bool | None = None,
    stage: str | None = None,
    by: Sequence[str] | None = None,
    pool: bool = False,
) -> pd.DataFrame:
    """Every step size of every cell: one row per (group, sweep, steps, cell, stage, lr_d,
    lr_g), e.g. one row per lr_d/lr_g ratio of a ratio sweep (``sweeps/dcgan_cifar10_ratio.py``,
    whose point is the whole curve, not its best).

    Columns: those of ``step_size_table`` (without ``values``), ``lr_ratio`` (lr_d / lr_g),
    ``score`` (with ``penalty``), ``ci_low``, ``ci_high``, ``iqm`` (over the row's seeds, as in
    ``main_table``), ``chosen`` (the tune row ``main_table`` chooses for the cell; a confirm
    row: the step size that was confirmed) and ``edge`` (on chosen rows, as in ``main_table``).
    ``stage``: None shows both stages' rows, "tune" or "confirm" one. Arguments as
    ``main_table``; ``attrs["warnings"]`` holds the edge warnings."""
    _check_stage(stage)
    m = resolve_metric(df, metric, higher_is_better, binary)
    none = _no_values(df, m)
    if none:
        return _empty(f"grid_table: {none}")
    split = split_keys(df, by, pool)
    steps = _step_rows(df, m, by_protocol, split, values=True)
    if steps.empty:
        return steps
    steps = _scored(steps, m, penalty)
    if stage is not None:
        steps = steps[steps["stage"] == stage]
    cell = cell_keys(steps, split, by_protocol)
    steps = steps.assign(
        chosen=steps["stage"] == "confirm", edge="", lr_ratio=steps["lr_d"] / steps["lr_g"]
    )
    notes = []
    for key, g in steps.groupby(cell, dropna=False, sort=False):
        tune = g[g["stage"] == "tune"]
        best = _best(tune)
        if best is None:
            continue
        steps.loc[best.name, "chosen"] = True
        edge, col = edge_of(tune, best)
        steps.loc[best.name, "edge"] = edge
        if edge:
            notes.append(_edge_warning(_where(cell, key), tune, best, edge, col))
    settings = stats.Settings(level=level, n_resamples=n_resamples, seed=seed)
    ci = [stats.mean_ci(seed_values(r, penalty), settings, m.binary) for _, r in steps.iterrows()]
    steps = steps.assign(
        ci_low=[c[0] for c in ci],
        ci_high=[c[1] for c in ci],
        iqm=[stats.iqm(seed_values(r, penalty)) for _, r in steps.iterrows()],
    )
    steps = steps.drop(columns=[*RANKING[:3], "values"]).reset_index(drop=True)
    steps.attrs.update(_attrs(metric, m, penalty, stage, cell, notes, settings), kind="grid")
    return steps


STATS_COLUMNS = (
    "ci_low",
    "ci_high",
    "diff",
    "diff_low",
    "diff_high",
    "p_improve",
    "p_value",
    "iqm",
)


def seed_values(row: pd.Series, penalty: float | None) -> list[float]:
    """The per-seed sample of a ``step_size_table(values=True)`` row the statistics use: the
    seeds with a value, and with ``penalty`` each diverged or errored seed at the penalty."""
    vals = list(row["values"])
    if penalty is not None:
        vals += [float(penalty)] * int(row["diverged"] + row["errored"])
    return vals


def _add_stats(
    best: pd.DataFrame,
    groups: pd.Series,
    refs: dict[int, object],
    m: Metric,
    penalty: float | None,
    s: stats.Settings,
) -> pd.DataFrame:
    """``best`` with ``STATS_COLUMNS`` and ``is_reference``: each row's statistics over its
    stage's seeds, compared with its group's reference row (``refs``)."""
    out = {c: pd.Series(np.nan, index=best.index, dtype=float) for c in STATS_COLUMNS}
    is_ref = pd.Series(False, index=best.index, dtype=bool)
    samples = {i: seed_values(r, penalty) for i, r in best.iterrows()}
    for i, x in samples.items():
        out["ci_low"][i], out["ci_high"][i] = stats.mean_ci(x, s, binary=m.binary)
        out["iqm"][i] = stats.iqm(x)
    for i, x in samples.items():
        r = refs.get(groups[i])
        if r is None:
            continue
        is_ref[r] = True
        y = samples[r]
        if i == r or not x or not y:
            continue
        out["diff"][i] = float(np.mean(x) - np.mean(y))
        out["diff_low"][i], out["diff_high"][i] = stats.diff_ci(x, y, s)
        out["p_improve"][i] = stats.p_improve(x, y, m.higher_is_better)
        out["p_value"][i] = stats.p_value(x, y, s)
    return best.assign(**out, is_reference=is_ref)


def _num(v: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


STAGE_LABEL = {"tune": "tuning", "confirm": "confirmation"}


def _shown(table: pd.DataFrame, column: str) -> bool:
    """A split column is shown when its rows differ in it (``sweep``: or a row pools several)."""
    if column not in table.columns:
        return False
    pooled = column == "sweep" and table[column].astype(str).str.contains(", ").any()
    return pooled or table[column].nunique(dropna=False) > 1


def display(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The table (``main_table`` or ``grid_table``) as text cells, the way the paper shows it.

    ``sweep`` and ``steps`` are shown when rows differ in them, ``seeds`` says which seeds the
    row's statistics are over ("tuning" or "confirmation"), ``grid edge`` appears when a chosen
    step size is at the edge of its grid, ``chosen`` on a grid table."""
    metric = table.attrs.get("metric", "value")
    label = METRICS[metric].label if metric in METRICS else metric
    ref = table.attrs.get("reference", "adam")
    out = pd.DataFrame(index=table.index)
    out["setting"] = table.apply(
        lambda r: "/".join(dict.fromkeys(str(r[c]) for c in _groups(table) if pd.notna(r[c]))),
        axis=1,
    )
    for c in SPLIT:
        if _shown(table, c):
            out[c] = table[c].astype(str)
    out["optimizer"] = table["cell"].astype(str)
    out["lr_D"] = table["lr_d"].map(lambda v: _num(v, 3))
    out["lr_G"] = table["lr_g"].map(lambda v: _num(v, 3))
    if "lr_ratio" in table.columns:
        out["lr_D/lr_G"] = table["lr_ratio"].map(lambda v: _num(v, 3))
    out[f"{label} (mean ± std)"] = [
        f"{_num(m, digits)} ± {_num(s, 2)}" if not math.isnan(s) else _num(m, digits)
        for m, s in zip(table["mean"], table["std"], strict=True)
    ]
    out["n"] = table["n"].astype(int).astype(str)
    if "stage" in table.columns:
        out["seeds"] = table["stage"].map(STAGE_LABEL)
        confirmed = table["stage"] == "confirm"
        if confirmed.any() and "tune_mean" in table.columns:  # what the choice was made on
            out["on the tuning seeds (n)"] = [
                f"{_num(m, digits)} ({int(n)})" if c else "(these)"
                for m, n, c in zip(table["tune_mean"], table["tune_n"], confirmed, strict=True)
            ]
    out["diverged"] = [
        f"{d}/{s}" + (f" (+{e} errored)" if e else "")
        for d, e, s in zip(table["diverged"], table["errored"], table["seeds"], strict=True)
    ]
    out["running"] = table["running"].astype(int).astype(str)
    if "ratio" in table.columns:
        out[f"ratio to {_name(ref)}"] = _ratio_texts(table, ref)
    if "ci_low" in table.columns:
        level = table.attrs.get("stats", {}).get("level", 0.95)
        out[f"{level:.0%} CI"] = [
            f"[{_num(lo, 3)}, {_num(hi, 3)}]" if not math.isnan(lo) else "-"
            for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
        ]
    if "diff" in table.columns:
        out[f"vs {_name(ref)}: diff [CI], p_improve, p"] = [
            _versus(r, ref) for _, r in table.iterrows()
        ]
    if "chosen" in table.columns:
        out["chosen"] = table["chosen"].map(lambda v: "chosen" if v else "")
    if "edge" in table.columns and table["edge"].astype(bool).any():
        out["grid edge"] = table["edge"]
    if table["protocol"].astype(bool).any():
        out["FID protocol"] = table["protocol"]
    return out.reset_index(drop=True)


def _ratio_texts(table: pd.DataFrame, reference: str) -> list[str]:
    """The ratio where it is defined, else why not: the reference's mean is 0 (then the
    difference), or there is no reference ("-")."""
    groups = _group_ids(table, table.attrs.get("groups", _groups(table)))
    is_ref = table.get("is_reference", pd.Series(False, index=table.index)).astype(bool)
    ref_mean = {g: m for g, m, r in zip(groups, table["mean"], is_ref, strict=True) if r}
    texts = []
    for i, r in table.iterrows():
        if pd.notna(r["ratio"]):
            texts.append(_num(r["ratio"], 3))
        elif ref_mean.get(groups[i]) == 0.0:
            diff = r.get("diff", np.nan)
            note = f"; diff {_num(diff, 3)}" if pd.notna(diff) else ""
            texts.append(f"undefined ({_name(reference)} = 0){note}")
        else:
            texts.append("-")
    return texts


def _name(cell: str) -> str:
    return "Adam" if cell == "adam" else cell


def _versus(r: pd.Series, reference: str) -> str:
    if r.get("is_reference", r["cell"] == reference):
        return "reference"
    if math.isnan(r["diff"]):
        return "-"
    ci = f" [{_num(r['diff_low'], 3)}, {_num(r['diff_high'], 3)}]"
    return (
        f"{_num(r['diff'], 3)}{ci if not math.isnan(r['diff_low']) else ''}, "
        f"{_num(r['p_improve'], 2)}, p={_num(r['p_value'], 2)}"
    )


CONFIRM_TEXT = (
    "statistics over confirmation seeds, disjoint from the tuning seeds the step size was chosen on"
)
TUNE_TEXT = (
    "statistics over the tuning seeds the step size was chosen on (the winner's mean is optimistic)"
)


def stage_text(table: pd.DataFrame) -> str:
    """What the rows' statistics are over, for the caption."""
    present = set(table["stage"]) if "stage" in table.columns else {"tune"}
    if present == {"confirm"}:
        return CONFIRM_TEXT[0].upper() + CONFIRM_TEXT[1:]
    if present == {"tune"}:
        return TUNE_TEXT[0].upper() + TUNE_TEXT[1:]
    return f"Rows with seeds 'confirmation': {CONFIRM_TEXT}; rows with seeds 'tuning': {TUNE_TEXT}"


def caption(table: pd.DataFrame) -> str:
    """One line saying what the statistics are over (the stage) and how they were made
    (empty without them)."""
    s = table.attrs.get("stats")
    if table.empty or not s:
        return ""
    m = METRICS.get(table.attrs.get("metric", ""))
    ref = _name(table.attrs.get("reference", "adam"))
    n = sorted(set(int(v) for v in table["n"]))
    seeds = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]}-{n[-1]}"
    per = "step size" if table.attrs.get("kind") == "grid" else "cell"
    if s["failed"] == "penalised":
        failed = (
            f"diverged/errored seeds count as {table.attrs.get('penalty'):g} in the statistics "
            "(not in n or mean ± std)"
        )
    else:
        failed = "diverged/errored seeds are left out (counted in 'diverged')"
    ci = f"{s['level']:.0%} CI of the mean: "
    if s.get("binary", m is not None and m.binary):
        ci += "Wilson score interval of the share"
    else:
        ci += f"{s['method']} bootstrap, {s['n_resamples']} resamples, seed {s['seed']}"
    parts = [f"{stage_text(table)}.", f"{seeds} seeds per {per}; {failed}; {ci}"]
    if table.attrs.get("kind") == "grid":
        parts[-1] += (
            "; chosen: the step size the table chooses for the cell (ties: smaller lr_d, then lr_g)."
        )
    else:
        parts[-1] += (
            f"; vs {ref}: difference of means with its bootstrap CI, p_improve = P(a seed "
            f"beats a seed of {ref}, ties 1/2), p = two-sided permutation test of the "
            "difference of means."
        )
    return " ".join(parts)


def notes(table: pd.DataFrame) -> list[str]:
    """The table's warnings (``attrs["warnings"]``), one line each."""
    return [f"Warning: {w}" for w in table.attrs.get("warnings", [])]


def to_markdown(table: pd.DataFrame, digits: int = 4, with_caption: bool = True) -> str:
    """A Markdown table (empty tables say so), followed by its ``caption`` unless not
    ``with_caption``, then its warnings (``notes``)."""
    if table.empty:
        return "\n\n".join(["(no trials)" if not notes(table) else "(no table)", *notes(table)])
    d = display(table, digits)
    lines = ["| " + " | ".join(d.columns) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in d.itertuples(index=False)]
    text = caption(table) if with_caption else ""
    if text:
        lines += ["", text]
    if notes(table):
        lines += ["", *notes(table)]
    return "\n".join(lines)


def to_latex(table: pd.DataFrame, digits: int = 4) -> str:
    """A LaTeX tabular (booktabs), followed by its ``caption`` and warnings as comments."""
    if table.empty:
        return "\n".join(["% (no trials)", *(f"% {w}" for w in notes(table))])
    d = display(table, digits)

    def esc(s: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&")):
            s = s.replace(a, b)
        return s.replace("±", r"$\pm$")

    lines = [r"\begin{tabular}{" + "l" * len(d.columns) + "}", r"\toprule"]
    lines.append(" & ".join(esc(c) for c in d.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(esc(str(v)) for v in r) + r" \\" for r in d.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    text = caption(table)
    if text:
        lines.append("% " + esc(text))
    lines += ["% " + esc(w) for w in notes(table)]
    return "\n".join(lines)


def to_csv(table: pd.DataFrame, path: str | None = None) -> str:
    """The numeric table as CSV, every column of ``main_table`` (the statistics too), written
    to ``path`` when given."""
    text = table.to_csv(index=False)
    if path is not None:
        with open(path, "w") as f:
            f.write(text)
    return text
