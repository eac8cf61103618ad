"""The paper's comparison tables from a loaded results frame.

For each (experiment, dataset, model) and optimizer cell: the step size (lr_d, lr_g) chosen by
the mean final metric over seeds, the mean, std and n of that metric at that step size, how many
seeds diverged, errored or are still running there, and the ratio of the mean to Adam's. FID-like
metrics are only compared under one evaluation protocol (``ProtocolError`` otherwise).
Statistics over the seeds (``analysis.stats``): a confidence interval of the mean, the
difference to Adam with its interval, P(a seed beats an Adam seed), a permutation test, the
interquartile mean; ``caption(table)`` says how they were made.
"""

from __future__ import annotations

import dataclasses
import math
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


def metric_for(experiment: str) -> str:
    """The metric the paper's table uses for ``experiment`` (FID for the image GANs)."""
    return EXPERIMENT_METRIC.get(experiment, "fid")


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each trial's last row (its final report when it finished)."""
    if df.empty:
        return df
    last = df.sort_values([*TRIAL, "iteration"], kind="stable")
    return last.groupby(list(TRIAL), sort=False).tail(1).reset_index(drop=True)


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


def step_size_table(
    df: pd.DataFrame, metric: str = "fid", by_protocol: bool = False, values: bool = False
) -> pd.DataFrame:
    """Statistics of the final metric for every (group, cell, lr_d, lr_g) over seeds.

    FID-like metrics: a group mixing evaluation protocols raises ``ProtocolError``, unless
    ``by_protocol``, which makes each protocol its own group.

    Columns: the group columns, ``cell``, ``optimizer``, ``lr_d``, ``lr_g``, ``mean``, ``std``,
    ``n`` (seeds with a value), ``seeds`` (trials), ``diverged``, ``errored``, ``running``,
    ``protocol`` and ``failed_share`` (diverged or errored among the settled seeds).
    With ``values``, also ``values``: a tuple of the per-seed values (the ``n`` seeds with a
    value, in seed order; failed and running seeds are left out).
    """
    m = get_metric(metric)
    final = final_rows(df)
    if final.empty:
        return pd.DataFrame()
    by = [*_groups(final), "cell"]
    protocol: pd.Series | str = ""
    if m.needs_protocol:
        if by_protocol:
            protocol = final.apply(protocol_label, axis=1)
        else:
            protocol = check_protocol(final, by[:-1], metric)
    final = final.assign(
        _value=m.value(final).astype(float),
        _protocol=protocol,
        _settled=final["status"].isin(["finished", *FAILED]),
    )
    # only settled seeds carry a value; a running trial's last row is not final
    final.loc[~final["_settled"] | final["status"].isin(FAILED), "_value"] = np.nan
    rows = []
    keys = [*by, *STEP_SIZE, "_protocol"]
    for key, g in final.groupby(keys, dropna=False, sort=True):
        if "seed" in g.columns:
            g = g.sort_values("seed", kind="stable")
        got = g["_value"].dropna()
        settled = int(g["_settled"].sum())
        failed = int(g["status"].isin(FAILED).sum())
        rows.append(
            {
                **dict(zip(keys[:-1], key[:-1], strict=True)),
                "optimizer": g["optimizer"].iloc[0],
                "mean": float(got.mean()) if len(got) else np.nan,
                "std": float(got.std(ddof=1)) if len(got) > 1 else np.nan,
                "n": len(got),
                "seeds": len(g),
                "diverged": int((g["status"] == "diverged").sum()),
                "errored": int((g["status"] == "errored").sum()),
                "running": int((g["status"] == "running").sum()),
                "failed_share": failed / settled if settled else np.nan,
                "protocol": key[-1],
                **({"values": tuple(float(v) for v in got)} if values else {}),
            }
        )
    return pd.DataFrame(rows)


def penalised_mean(values: Sequence[float | None], penalty: float) -> float:
    """How a step size is scored over its seeds: the mean, each failed seed (None or NaN: it
    diverged or errored) counted as ``penalty``. A sweep's searcher tells each Optuna study this
    value and its table ranks step sizes by it, so both choose the same step size."""
    vals = [penalty if v is None or math.isnan(v) else float(v) for v in values]
    return sum(vals) / len(vals) if vals else math.nan


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
) -> pd.DataFrame:
    """Per (group, cell): the step size with the best mean final metric over seeds.

    ``binary``: the metric is a 0/1 outcome per seed (its interval is then Wilson's); default:
    what the metric declares (a sweep's ``objective`` is 0/1 for ``miss_both``).

    A diverged or errored seed has no value; with ``penalty`` it counts as that value when
    ranking step sizes (``penalised_mean``, in column ``score``), without one a step size with
    fewer failed seeds always ranks first.
    ``ratio`` is the mean divided by the ``reference`` cell's mean in the same group.
    FID-like metrics need one protocol per group (see ``step_size_table``).

    Statistics over the seeds of each row (``analysis.stats``; ``caption(table)`` says how they
    were made). Their sample: the seeds with a value, and with ``penalty`` each diverged or
    errored seed at the penalty (the values ``score`` averages); without a penalty the failed
    seeds are left out (they are counted in ``diverged``/``errored``). Running seeds never count.

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

    ``table.attrs``: ``metric``, ``reference``, ``penalty`` and ``stats`` (level, method,
    n_resamples, seed, failed: "penalised" or "excluded").
    """
    m = get_metric(metric)
    if binary is not None:
        m = dataclasses.replace(m, binary=binary)
    steps = step_size_table(df, metric, by_protocol, values=True)
    if steps.empty:
        return steps
    sign = -1.0 if m.higher_is_better else 1.0
    failed = steps["diverged"] + steps["errored"]
    if penalty is not None:
        score = pd.Series(
            [
                penalised_mean([m] * n + [None] * f, penalty)
                for m, n, f in zip(steps["mean"], steps["n"], failed, strict=True)
            ],
            index=steps.index,
            dtype=float,
        )
        steps = steps.assign(score=score, _rank0=0.0, _rank1=sign * score, _nan=score.isna())
    else:
        steps = steps.assign(
            _rank0=steps["failed_share"].fillna(1.0),
            _rank1=sign * steps["mean"],
            _nan=steps["mean"].isna(),
        )
    by = [*_groups(steps), *(["protocol"] if by_protocol else []), "cell"]
    order = steps.sort_values([*by, "_nan", "_rank0", "_rank1"], kind="stable", na_position="last")
    best = order.groupby(by, dropna=False, sort=False).head(1).copy()
    best["ratio"] = np.nan
    for _, idx in best.groupby(by[:-1], dropna=False).groups.items():
        group = best.loc[idx]
        ref = group[group["cell"] == reference]
        if ref.empty:
            ref = group[group["optimizer"] == reference]
        if len(ref) == 1 and ref["mean"].iloc[0] not in (0.0,) and pd.notna(ref["mean"].iloc[0]):
            best.loc[idx, "ratio"] = group["mean"] / ref["mean"].iloc[0]
    settings = stats.Settings(level=level, n_resamples=n_resamples, seed=seed)
    best = _add_stats(best, by, m, reference, penalty, settings)
    best = best.drop(columns=["_rank0", "_rank1", "_nan", "values"]).sort_values(by, kind="stable")
    best.attrs["metric"] = metric
    best.attrs["reference"] = reference
    best.attrs["penalty"] = penalty
    best.attrs["stats"] = {
        "level": level,
        "method": settings.method,
        "n_resamples": n_resamples,
        "seed": seed,
        "failed": "excluded" if penalty is None else "penalised",
        "binary": m.binary,
    }
    return best.reset_index(drop=True)


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
    by: list[str],
    m: Metric,
    reference: str,
    penalty: float | None,
    s: stats.Settings,
) -> pd.DataFrame:
    out = {c: pd.Series(np.nan, index=best.index, dtype=float) for c in STATS_COLUMNS}
    is_ref = pd.Series(False, index=best.index, dtype=bool)
    samples = {i: seed_values(r, penalty) for i, r in best.iterrows()}
    for i, x in samples.items():
        out["ci_low"][i], out["ci_high"][i] = stats.mean_ci(x, s, binary=m.binary)
        out["iqm"][i] = stats.iqm(x)
    for _, idx in best.groupby(by[:-1], dropna=False).groups.items():
        group = best.loc[idx]
        ref = group[group["cell"] == reference]
        if ref.empty:
            ref = group[group["optimizer"] == reference]
        if len(ref) != 1:
            continue
        y = samples[ref.index[0]]
        is_ref[ref.index[0]] = True
        for i in idx:
            x = samples[i]
            if i == ref.index[0] or not x or not y:
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


def display(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The table as text cells, the way the paper shows it."""
    metric = table.attrs.get("metric", "value")
    label = METRICS[metric].label if metric in METRICS else metric
    out = pd.DataFrame(
        {
            "setting": table.apply(
                lambda r: "/".join(
                    dict.fromkeys(str(r[c]) for c in _groups(table) if pd.notna(r[c]))
                ),
                axis=1,
            ),
            "optimizer": table["cell"].astype(str),
            "lr_D": table["lr_d"].map(lambda v: _num(v, 3)),
            "lr_G": table["lr_g"].map(lambda v: _num(v, 3)),
            f"{label} (mean ± std)": [
                f"{_num(m, digits)} ± {_num(s, 2)}" if not math.isnan(s) else _num(m, digits)
                for m, s in zip(table["mean"], table["std"], strict=True)
            ],
            "n": table["n"].astype(int).astype(str),
            "diverged": [
                f"{d}/{s}" + (f" (+{e} errored)" if e else "")
                for d, e, s in zip(table["diverged"], table["errored"], table["seeds"], strict=True)
            ],
            "running": table["running"].astype(int).astype(str),
            "ratio to Adam": table["ratio"].map(lambda v: _num(v, 3)),
        }
    )
    if "ci_low" in table.columns:
        level = table.attrs.get("stats", {}).get("level", 0.95)
        ref = table.attrs.get("reference", "adam")
        out[f"{level:.0%} CI"] = [
            f"[{_num(lo, 3)}, {_num(hi, 3)}]" if not math.isnan(lo) else "-"
            for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
        ]
        out[f"vs {_name(ref)}: diff [CI], p_improve, p"] = [
            _versus(r, ref) for _, r in table.iterrows()
        ]
    if table["protocol"].astype(bool).any():
        out["FID protocol"] = table["protocol"]
    return out


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


def caption(table: pd.DataFrame) -> str:
    """One line saying how the table's statistics were made (empty without them)."""
    s = table.attrs.get("stats")
    if table.empty or not s:
        return ""
    m = METRICS.get(table.attrs.get("metric", ""))
    ref = _name(table.attrs.get("reference", "adam"))
    n = sorted(set(int(v) for v in table["n"]))
    seeds = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]}-{n[-1]}"
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
    return (
        f"{seeds} seeds per cell; {failed}; {ci}; vs {ref}: difference of means with its "
        f"bootstrap CI, p_improve = P(a seed beats a seed of {ref}, ties 1/2), p = two-sided "
        "permutation test of the difference of means."
    )


def to_markdown(table: pd.DataFrame, digits: int = 4, with_caption: bool = True) -> str:
    """A Markdown table (empty tables say so), followed by its ``caption`` unless not
    ``with_caption``."""
    if table.empty:
        return "(no trials)"
    d = display(table, digits)
    lines = ["| " + " | ".join(d.columns) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in d.itertuples(index=False)]
    text = caption(table) if with_caption else ""
    if text:
        lines += ["", text]
    return "\n".join(lines)


def to_latex(table: pd.DataFrame, digits: int = 4) -> str:
    """A LaTeX tabular (booktabs), followed by its ``caption`` as a comment."""
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
    text = caption(table) if len(table) else ""
    if text:
        lines.append("% " + esc(text))
    return "\n".join(lines)


def to_csv(table: pd.DataFrame, path: str | None = None) -> str:
    """The numeric table as CSV, every column of ``main_table`` (the statistics too), written
    to ``path`` when given."""
    text = table.to_csv(index=False)
    if path is not None:
        with open(path, "w") as f:
            f.write(text)
    return text
