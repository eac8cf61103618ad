"""The paper's figures from a loaded results frame (matplotlib, no display needed).

Every function returns a ``matplotlib.figure.Figure`` (rendered with Agg by ``save``) and raises
``NoData`` when the frame lacks what the figure shows. Every title says which sweep, cells, step
sizes and seeds it shows, every axis what it measures; the x axis of curves is generator steps
(the tables' unit). Curves of a cell use the trials at the step size ``tables.main_table``
chooses for it on the tuning seeds (rows with ``stage`` "tune" or none); where the frame has
``stage`` "confirm" rows (fresh seeds at each cell's chosen step size), those are shown instead.

``sensitivity`` (metric vs step size per cell with its CI over the tuning seeds), ``curves``
(the metric over training with its CI over seeds), ``mog_samples`` and ``image_samples`` (the
trials' final samples, read by ``analysis.samples.read``) complete the paper's Fig. 1-4.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.transforms import blended_transform_factory

from analysis import stats, tables

CORR = re.compile(r"^corr/(?P<player>[DG])/(?P<neuron>[^/]+)/(?P<mode>[^/]+)$")


class NoData(ValueError):
    """The frame has nothing this figure shows."""


def save(fig: Figure, path: str, dpi: int = 120) -> str:
    """Render a figure to a PNG file with the Agg backend."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


X = "step"
X_LABEL = "generator steps"
SAMPLE_KEY = ("sweep", "trial_id")
Samples = Mapping[tuple[str, str], Mapping[str, np.ndarray]]


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and df[column].notna().any()


def _groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    by = [c for c in tables.GROUP if c in df.columns]
    out = []
    for key, g in df.groupby(by, dropna=False, sort=True):
        name = "/".join(dict.fromkeys(str(k) for k in np.atleast_1d(key) if pd.notna(k)))
        out.append((name, g))
    return out


def _sweeps(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(str(k), g) for k, g in df.groupby("sweep", sort=True)]


def stage(df: pd.DataFrame) -> pd.Series:
    """Each row's stage: "tune" (seeds the step size was searched on; also where absent) or
    "confirm" (fresh seeds at each cell's chosen step size): ``tables.stage_of``."""
    return tables.stage_of(df)


def tuning(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the tuning stage."""
    return df[stage(df) == "tune"]


def _lr(lr_d: float, lr_g: float) -> str:
    if np.isclose(lr_d, lr_g):
        return f"lr {lr_g:.3g}"
    return f"lr_D {lr_d:.3g}, lr_G {lr_g:.3g}"


def _seeds(data: pd.DataFrame) -> str:
    seeds = sorted(int(s) for s in data["seed"].dropna().unique())
    if not seeds:
        return "no seeds"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def describe(data: pd.DataFrame) -> str:
    """'cell: lr ..., seeds ...' for each cell of ``data`` (one step size per cell, else all)."""
    parts = []
    for cell, c in data.groupby("cell", sort=True):
        steps = c[list(tables.STEP_SIZE)].drop_duplicates()
        lr = _lr(*steps.iloc[0]) if len(steps) == 1 else f"{len(steps)} step sizes"
        parts.append(f"{cell}: {lr}, {_seeds(c)}")
    return "; ".join(parts)


def _label(metric: str) -> str:
    m = tables.METRICS.get(metric)
    return m.label if m else metric


def _direction(metric: str) -> str:
    m = tables.METRICS.get(metric)
    return "" if m is None else ("higher is better" if m.higher_is_better else "lower is better")


def chosen(df: pd.DataFrame, metric: str, penalty: float | None = None) -> pd.DataFrame:
    """The rows at each cell's chosen step size (``tables.main_table``: chosen on the tuning
    seeds): its confirmation seeds where the sweep ran them, else its tuning seeds at that step
    size; all rows if none is chosen."""
    table = tables.main_table(df, metric, penalty=penalty)
    if table.empty or table["mean"].isna().all():
        return df
    keys = [
        c
        for c in [*tables.GROUP, *tables.SPLIT, "cell", *tables.STEP_SIZE, "stage"]
        if c in table.columns and c in df.columns
    ]
    if "stage" in df.columns:
        df = df.assign(stage=stage(df))
    return df.merge(table[keys].drop_duplicates(), on=keys, how="inner")


def _band(ax, data: pd.DataFrame, x: str, y: str, label: str, color) -> None:
    data = data.dropna(subset=[x, y])
    stats = data.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
    if stats.empty:
        return
    ax.plot(stats.index, stats["mean"], "o-", ms=3, color=color, label=label)
    ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2)


def _evaluated_once(rows: pd.DataFrame, value: str) -> bool:
    """Whether every cell of ``rows`` has ``value`` at one step only (a sweep that evaluates
    once, at the end): a curve is then a point, so figures draw one marker per cell."""
    steps = rows.dropna(subset=[value]).groupby("cell")[X].nunique()
    return bool(len(steps)) and bool((steps <= 1).all())


def _final_points(ax, cells: list[tuple[str, dict[str, float], str]], ylabel: str) -> None:
    """One marker per cell (x: the cells) with its interval ``lo``-``hi`` as an error bar."""
    for i, (cell, p, text) in enumerate(cells):
        lo, hi = p.get("lo", math.nan), p.get("hi", math.nan)
        err = [[p["mean"] - lo], [hi - p["mean"]]] if math.isfinite(lo) else None
        color = colormaps["tab10"](i % 10)
        ax.errorbar(
            [i],
            [p["mean"]],
            yerr=err,
            fmt="o",
            ms=6,
            capsize=5,
            color=color,
            label=text,
            gid=f"cell:{cell}",
        )
    ax.set_xticks(range(len(cells)), [c for c, _, _ in cells])
    ax.set_xlim(-0.6, len(cells) - 0.4)
    ax.set_xlabel("cell (evaluated once, at the end of training)")
    ax.set_ylabel(ylabel)


def fig1(df: pd.DataFrame, metric: str = "fid") -> Figure:
    """Fig. 1: final metric against lr_D/lr_G, coloured by the mean gradient ratio of the trial;
    the gradient ratio over training, coloured by lr_D/lr_G (every step size and seed)."""
    if not (_has(df, metric) and _has(df, "grad_ratio")):
        raise NoData(f"fig1 needs {metric} and grad_ratio")
    df = df.assign(ratio=df["lr_d"] / df["lr_g"])
    final = tables.final_rows(df)
    final = final[final["status"] == "finished"]
    tables.check_protocol(final, [c for c in tables.GROUP if c in final.columns], metric)
    mean_gr = df.groupby(list(tables.TRIAL))["grad_ratio"].mean().rename("gr_mean")
    final = final.join(mean_gr, on=list(tables.TRIAL))
    # a gradient that blew up (inf ratio) has no colour on a log scale: drawn as "bad"
    final["gr_mean"] = final["gr_mean"].where(np.isfinite(final["gr_mean"]))
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    gr = final["gr_mean"].dropna()
    norm = LogNorm(gr.min(), gr.max()) if len(gr) and gr.min() > 0 else Normalize()
    sc = ax1.scatter(final["ratio"], final[metric], c=final["gr_mean"], cmap="viridis", norm=norm)
    fig.colorbar(sc, ax=ax1, label="mean gradient ratio over training")
    ax1.set_xscale("log")
    ax1.set_xlabel("lr_D / lr_G (log scale)")
    ax1.set_ylabel(f"final {_label(metric)}")
    ratios = df["ratio"].dropna()
    rnorm = LogNorm(ratios.min(), max(ratios.max(), ratios.min() * 1.0001))
    for _, trial in df.groupby(list(tables.TRIAL)):
        trial = trial.sort_values(X)
        color = colormaps["plasma"](rnorm(trial["ratio"].iloc[0]))
        ax2.plot(trial[X], trial["grad_ratio"], color=color, alpha=0.7)
    fig.colorbar(ScalarMappable(norm=rnorm, cmap="plasma"), ax=ax2, label="lr_D / lr_G")
    ax2.set_yscale("log")
    ax2.set_xlim(left=0)
    ax2.set_xlabel(X_LABEL)
    ax2.set_ylabel("gradient ratio |g(t)|/|g(0)|, G + D (log scale)")
    sweeps = ", ".join(sorted(df["sweep"].dropna().unique()))
    fig.suptitle(
        f"Fig. 1 ({sweeps}): every trial, cells {', '.join(sorted(df['cell'].unique()))}, "
        f"all step sizes, {_seeds(df)}\n"
        "left: final quality vs step-size ratio; right: gradient ratio over training"
    )
    return fig


def fig2a(df: pd.DataFrame, metric: str = "fid") -> Figure:
    """Fig. 2a: the metric over training per cell at its chosen step size, mean over seeds with
    a min-max band (a sweep that evaluated once: one marker per cell with its min-max)."""
    if not _has(df, metric):
        raise NoData(f"fig2a needs {metric}")
    groups = _groups(df[df[metric].notna()])
    fig = Figure(figsize=(6 * len(groups), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    once = []  # per panel: evaluated once (drawn as points per cell)
    for ax, (name, g) in zip(axes, groups, strict=True):
        by_step = [c for c in tables.GROUP if c in g.columns] + ["step"]
        if tables.METRICS.get(metric, tables.METRICS["fid"]).needs_protocol:
            tables.check_protocol(g[g[metric].notna()], by_step, metric)
        picked = chosen(g, metric)
        ax.set_title(name)
        once.append(_evaluated_once(picked, metric))
        if once[-1]:
            points = [
                (
                    cell,
                    {"mean": c[metric].mean(), "lo": c[metric].min(), "hi": c[metric].max()},
                    describe(c),
                )
                for cell, c in picked.dropna(subset=[metric]).groupby("cell", sort=True)
            ]
            _final_points(ax, points, f"{_label(metric)} (mean, min-max over the seeds)")
            ax.legend(fontsize=7)
            continue
        for i, (_, c) in enumerate(picked.groupby("cell", sort=True)):
            _band(ax, c, X, metric, describe(c), colormaps["tab10"](i % 10))
        ax.set_xlim(left=0)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(_label(metric))
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Fig. 2a: {_label(metric)} at the end of training at each cell's chosen step size "
        "(mean and min-max over the seeds)"
        if all(once)
        else f"Fig. 2a: {_label(metric)} over training at each cell's chosen step size "
        "(line: mean over the seeds; band: min-max)"
    )
    return fig


def _layers(df: pd.DataFrame, kind: str, player: str) -> list[str]:
    prefix = f"{kind}/{player}/"
    return [c for c in df.columns if c.startswith(prefix) and df[c].notna().any()]


def fig2bc(df: pd.DataFrame, cell: str | None = None, metric: str | None = None) -> Figure:
    """Fig. 2b,c and 5b: per-layer adaptive magnitude ratio over training, for G and D, of one
    cell at its chosen step size, mean over its seeds.

    ``cell`` defaults to adam (the paper's Fig. 2b,c), else ada-nsgda, else the first cell that
    reports magnitudes.
    """
    with_mag = [c for c in df["cell"].dropna().unique() if _layers(df[df["cell"] == c], "mag", "G")]
    if not with_mag:
        raise NoData("fig2bc needs mag/<player>/<layer> columns")
    if cell is None:
        cell = next((c for c in ("adam", "ada-nsgda") if c in with_mag), sorted(with_mag)[0])
    data = df[df["cell"] == cell]
    if data.empty:
        raise NoData(f"fig2bc: no trials of cell {cell!r}")
    metric = metric or tables.metric_for(str(data["experiment"].iloc[0]))
    data = chosen(data, metric) if _has(data, metric) else data
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    for ax, player in zip(fig.subplots(1, 2), ("G", "D"), strict=True):
        layers = _layers(data, "mag", player)
        for i, col in enumerate(layers):
            color = colormaps["viridis"](i / max(len(layers) - 1, 1))
            mean = data.groupby(X)[col].mean()
            ax.plot(mean.index, mean.values, color=color, label=col.split("/", 2)[2])
        ax.set_title(f"{player}: one line per layer")
        ax.set_xlim(left=0)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel("adaptive magnitude ratio |A_Y(t)| / |A_Y(0)|")
        if len(layers) <= 12:
            ax.legend(fontsize=7)
    sweeps = ", ".join(sorted(data["sweep"].dropna().unique()))
    fig.suptitle(
        f"Fig. 2b,c / 5b ({sweeps}): per-layer adaptive magnitude ratio of {describe(data)} "
        "(mean over these seeds)"
    )
    return fig


def _max_corr(data: pd.DataFrame, player: str) -> dict[str, pd.Series]:
    """Per mode, the largest correlation of any neuron of ``player`` with it, per row."""
    modes: dict[str, list[str]] = {}
    for c in data.columns:
        m = CORR.match(c)
        if m and m["player"] == player:
            modes.setdefault(m["mode"], []).append(c)
    return {mode: data[cols].max(axis=1) for mode, cols in sorted(modes.items())}


def fig3(df: pd.DataFrame, metric: str = "both") -> Figure:
    """Fig. 3: correlation of D's and G's neurons with each mode over training, and the relative
    update speed of G and D; one row per optimizer cell at its chosen step size (mean over its
    seeds); every row shares the x axis (generator steps)."""
    data = df[[c for c in df.columns if not c.startswith(("mag/", "update/"))]]
    data = (
        data[data[[c for c in data.columns if CORR.match(c)]].notna().any(axis=1)]
        if any(CORR.match(c) for c in data.columns)
        else data.iloc[:0]
    )
    if data.empty:
        raise NoData("fig3 needs corr/<player>/<neuron>/<mode> columns (bimodal)")
    data = chosen(data, metric) if _has(data, "verdict") else data
    cells = sorted(data["cell"].dropna().unique())
    fig = Figure(figsize=(13, 3.2 * len(cells) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(cells), 3, sharex=True))
    for row, cell in zip(axes, cells, strict=True):
        c = data[data["cell"] == cell]
        for ax, player in zip(row[:2], ("D", "G"), strict=True):
            for i, (mode, series) in enumerate(_max_corr(c, player).items()):
                mean = series.groupby(c[X]).mean()
                ax.plot(mean.index, mean.values, color=colormaps["tab10"](i), label=mode)
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{describe(c)}\n{player} neurons", fontsize=9)
            ax.set_ylabel("max correlation with the mode")
            ax.legend(fontsize=7)
        ax = row[2]
        for i, player in enumerate(("G", "D")):
            cols = _layers(c, "speed", player)
            if cols:
                mean = c[cols].mean(axis=1).groupby(c[X]).mean()
                ax.plot(mean.index, mean.values, color=colormaps["tab10"](i), label=player)
        ax.set_yscale("log")
        ax.set_title(f"{cell}: update speed", fontsize=9)
        ax.set_ylabel("update speed (log scale)")
        ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlim(left=0)
        ax.set_xlabel(X_LABEL)
    sweeps = ", ".join(sorted(data["sweep"].dropna().unique()))
    fig.suptitle(
        f"Fig. 3 ({sweeps}): neurons' correlation with the modes and update speed of G and D, "
        "per cell at its chosen step size (mean over the seeds named); x axis shared"
    )
    return fig


def fig4(df: pd.DataFrame, metric: str = "fid") -> Figure:
    """Fig. 4: final metric per optimizer and setting at the chosen step size: bars (mean) with
    each seed as a dot; diverged/errored seeds are counted under the bar."""
    table = tables.main_table(tuning(df), metric)
    if table.empty or table["mean"].isna().all():
        raise NoData(f"fig4 needs a final {metric}")
    finals = dict(_groups(tables.final_rows(chosen(df, metric))))
    groups = _groups(table)
    fig = Figure(figsize=(4 + 2.8 * len(groups), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (name, t) in zip(axes, groups, strict=True):
        cells = list(t["cell"])
        colors = [colormaps["tab10"](i % 10) for i in range(len(cells))]
        ax.bar(range(len(cells)), t["mean"], color=colors, alpha=0.6)
        final = finals.get(name, t.iloc[:0])
        labels = []
        for i, (cell, r) in enumerate(zip(cells, t.itertuples(), strict=True)):
            seeds = final[(final["cell"] == cell) & (final["status"] == "finished")]
            vals = pd.to_numeric(seeds[metric], errors="coerce").dropna()
            jitter = np.linspace(-0.15, 0.15, len(vals))
            ax.scatter(i + jitter, vals, color="k", s=12, zorder=3)
            failed = int(r.diverged + r.errored)
            labels.append(
                f"{cell}\n{_lr(r.lr_d, r.lr_g)}\n{_seeds(final[final['cell'] == cell])}"
                + (f"\n{failed} failed" if failed else "")
            )
        ax.set_xticks(range(len(cells)), labels, fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("cell at its chosen step size")
        ax.set_ylabel(f"final {_label(metric)}")
    fig.suptitle(
        f"Fig. 4: final {_label(metric)} per cell at its chosen step size "
        "(bars: mean over the seeds named; dots: each seed)"
    )
    return fig


# -- step-size sensitivity, curves with intervals, samples ----------------------------------------


def _ratio(lr_d: float, lr_g: float) -> float:
    return float(f"{lr_d / lr_g:.6g}")


def _sensitivity_panel(
    ax,
    data: pd.DataFrame,
    metric: str,
    penalty: float | None,
    s: stats.Settings,
    binary: bool | None = None,
) -> list[str]:
    """One sweep's panel; returns the cell descriptions of its chosen step sizes."""
    m = tables.get_metric(metric)
    if binary is not None:
        m = dataclasses.replace(m, binary=binary)
    steps = tables.step_size_table(data, metric, values=True)
    table = tables.main_table(data, metric, penalty=penalty)
    steps = steps.assign(ratio=[_ratio(a, b) for a, b in zip(steps["lr_d"], steps["lr_g"])])
    top = blended_transform_factory(ax.transData, ax.transAxes)
    picked = []
    marks: dict[float, int] = {}  # failed-seed marks placed at each step size so far
    lines = [
        (c, r) for c, g in steps.groupby("cell", sort=True) for r in sorted(g["ratio"].unique())
    ]
    for i, (cell, ratio) in enumerate(lines):
        color = colormaps["tab10"](i % 10)
        g = steps[(steps["cell"] == cell) & (steps["ratio"] == ratio)].sort_values("lr_g")
        samples = [tables.seed_values(r, penalty) for _, r in g.iterrows()]
        mean = np.array([np.mean(v) if v else np.nan for v in samples])
        ci = np.array([stats.mean_ci(v, s, binary=m.binary) for v in samples]).reshape(-1, 2)
        several = steps.loc[steps["cell"] == cell, "ratio"].nunique() > 1
        name = f"{cell}, lr_D/lr_G = {ratio:g}" if several else str(cell)
        ax.plot(g["lr_g"], mean, "o-", color=color, label=name, gid=f"cell:{name}")
        ax.fill_between(g["lr_g"], ci[:, 0], ci[:, 1], color=color, alpha=0.15, gid=f"ci:{name}")
        err = np.abs(ci - mean[:, None]).T
        ax.errorbar(g["lr_g"], mean, yerr=err, fmt="none", ecolor=color, capsize=4, alpha=0.8)
        for lr, failed, seeds in zip(g["lr_g"], g["diverged"] + g["errored"], g["seeds"]):
            if failed:
                row = marks.get(lr, 0)  # cells failing at the same step size: one row each
                marks[lr] = row + 1
                y = 0.97 - 0.075 * row
                ax.plot(
                    [lr], [y], "x", color=color, ms=9, mew=2, transform=top, gid=f"failed:{name}"
                )
                ax.text(
                    lr,
                    y - 0.045,
                    f"{failed}/{seeds}",
                    color=color,
                    transform=top,
                    ha="center",
                    fontsize=7,
                )
        best = table[(table["cell"] == cell)]
        best = best[[_ratio(a, b) == ratio for a, b in zip(best["lr_d"], best["lr_g"])]]
        if len(best):
            b = best.iloc[0]
            y = b["score"] if "score" in best.columns and pd.notna(b.get("score")) else b["mean"]
            ax.plot(
                [b["lr_g"]], [y], "*", color=color, ms=16, mec="k", zorder=5, gid=f"chosen:{cell}"
            )
            picked.append(f"{cell}: {_lr(b['lr_d'], b['lr_g'])}")
    ax.set_xscale("log")
    ax.set_xlabel("generator step size lr_G (log scale)")
    lo, hi = ax.get_ylim()
    rows = max(marks.values(), default=1)
    shown = np.concatenate([line.get_ydata() for line in ax.get_lines() if line.get_gid()])
    shown = shown[np.isfinite(shown)]
    if len(shown) and shown.min() > 0 and shown.max() / shown.min() > 30:
        ax.set_yscale("log")  # e.g. FIDs from 50 to 2,500: the good step sizes stay readable
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (hi / lo) ** (0.2 + 0.1 * (rows - 1)))
    else:
        ax.set_ylim(lo, hi + (0.2 + 0.1 * (rows - 1)) * (hi - lo))  # room for the failed marks
    ax.legend(fontsize=7, loc="upper left")
    return picked


def sensitivity(
    df: pd.DataFrame,
    metric: str = "objective",
    penalty: float | None = None,
    settings: stats.Settings | None = None,
    label: str | None = None,
    binary: bool | None = None,
) -> Figure:
    """Final ``metric`` against the step size, one panel per sweep, one line per cell (and
    lr_D/lr_G ratio): the mean over the tuning seeds with its CI band (``stats.mean_ci``; with
    ``penalty`` a failed seed counts as it, as in ``main_table``'s ``score``; ``binary``: a 0/1
    metric, Wilson's interval), an x at the top where seeds diverged or errored (with
    failed/seeds), a star at the chosen step size."""
    s = settings or stats.Settings()
    data = tuning(df)
    final = tables.final_rows(data)
    if final.empty or tables.get_metric(metric).value(final).isna().all():
        raise NoData(f"sensitivity needs a final {metric}")
    sweeps = _sweeps(data)
    fig = Figure(figsize=(6.5 * len(sweeps), 5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sweeps)))
    name = label or _label(metric)
    for ax, (sweep, g) in zip(axes, sweeps, strict=True):
        picked = _sensitivity_panel(ax, g, metric, penalty, s, binary)
        scale = ", log scale" if ax.get_yscale() == "log" else ""
        ax.set_ylabel(f"final {name} ({_direction(metric)}{scale})")
        ax.set_title(f"{sweep} ({_seeds(g)})\nchosen: " + "; ".join(picked), fontsize=9)
    failed = "failed seeds count as the penalty" if penalty is not None else "failed seeds left out"
    fig.suptitle(
        f"Step-size sensitivity: final {name} per step size\nmean and {s.level:.0%} CI over the "
        f"tuning seeds ({failed}); x at the top: diverged/errored seeds (failed/seeds); "
        "star: the chosen step size"
    )
    return fig


def _curve_points(rows: pd.DataFrame, value: str, s: stats.Settings) -> pd.DataFrame:
    """Mean and CI over the seeds at each step."""
    out = []
    for x, g in rows.groupby(X, sort=True):
        v = g[value].dropna().to_numpy(float)
        if len(v):
            lo, hi = stats.mean_ci(v, s)
            out.append({X: x, "mean": v.mean(), "lo": lo, "hi": hi, "n": len(v)})
    return pd.DataFrame(out)


def _protocol_split(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Rows of the most common FID protocol, the others, and that protocol's label."""
    if not any(_has(rows, c) for c in ("fid_num_gen", "fid_ref")):
        return rows, rows.iloc[:0], ""
    labels = rows.apply(tables.protocol_label, axis=1)
    main = labels.value_counts().index[0]
    return rows[labels == main], rows[labels != main], main


def curves(
    df: pd.DataFrame,
    metric: str | None = None,
    penalty: float | None = None,
    settings: stats.Settings | None = None,
    label: str | None = None,
) -> Figure:
    """``metric`` (default: the sweep's ``objective``, else the experiment's paper metric) over
    training, one panel per sweep, one line per cell at its chosen step size: the mean over the
    seeds with its CI band (``stats.mean_ci``), from the "confirm" seeds where there are any;
    a sweep that evaluated once (at the end) gets one marker per cell with its CI.
    Diverged reports are left out. Evaluations under another FID protocol than most (the
    final, larger one) are drawn as points with their CI."""
    s = settings or stats.Settings(n_resamples=2000)
    if metric is None:
        metric = (
            "objective"
            if _has(df, "objective")
            else tables.metric_for(str(df["experiment"].iloc[0]))
        )
    m = tables.get_metric(metric)
    if df.empty or m.value(df).isna().all():
        raise NoData(f"curves need {metric} over training")
    sweeps = _sweeps(df)
    fig = Figure(figsize=(6.5 * len(sweeps), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sweeps)))
    name = label or _label(metric)
    once = []  # per panel: evaluated once (drawn as points per cell)
    for ax, (sweep, g) in zip(axes, sweeps, strict=True):
        picked = chosen(g, metric, penalty)
        if "diverged" in picked.columns:
            picked = picked[~picked["diverged"].fillna(False).astype(bool)]
        picked = picked.assign(_value=m.value(picked))
        once.append(_evaluated_once(picked, "_value"))
        if once[-1]:
            points = []
            for cell, c in picked.groupby("cell", sort=True):
                pts = _curve_points(c, "_value", s)
                if not pts.empty:
                    text = describe(c) + (f" [{stage(c).iloc[0]}]" if "stage" in c.columns else "")
                    points.append((cell, pts.iloc[-1].to_dict(), text))
            _final_points(ax, points, f"{name} ({_direction(metric)})")
            step = int(picked[X].max()) if picked[X].notna().any() else 0
            ax.set_title(f"{sweep}: evaluated once, at step {step}", fontsize=9)
            ax.legend(fontsize=7)
            continue
        protocols = set()
        for i, (cell, c) in enumerate(picked.groupby("cell", sort=True)):
            color = colormaps["tab10"](i % 10)
            main, other, proto = _protocol_split(c)
            protocols |= {proto} if proto else set()
            pts = _curve_points(main, "_value", s)
            if pts.empty:
                continue
            text = f"{describe(c)}" + (f" [{stage(c).iloc[0]}]" if "stage" in c.columns else "")
            ax.plot(pts[X], pts["mean"], "o-", ms=3, color=color, label=text, gid=f"cell:{cell}")
            ax.fill_between(pts[X], pts["lo"], pts["hi"], color=color, alpha=0.2, gid=f"ci:{cell}")
            for _, o in _curve_points(other, "_value", s).iterrows():
                err = [[o["mean"] - o["lo"]], [o["hi"] - o["mean"]]] if pd.notna(o["lo"]) else None
                ax.errorbar([o[X]], [o["mean"]], yerr=err, fmt="D", color=color, ms=6)
        ax.set_xlim(left=0)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(f"{name} ({_direction(metric)})")
        first = int(picked[X].min()) if picked[X].notna().any() else 0
        title = f"{sweep}: first evaluation at step {first} (none at step 0)"
        if protocols:
            title += f"\nFID protocol of the lines: {sorted(protocols)[0]}; diamonds: other ones"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    when = "at the end of training" if all(once) else "over training"
    fig.suptitle(
        f"{name} {when} at each cell's chosen step size: mean and {s.level:.0%} CI "
        "over the seeds named"
    )
    return fig


def _sample_trials(
    df: pd.DataFrame, samples: Samples, key: str, metric: str, penalty: float | None
) -> list[tuple[str, pd.Series, Mapping[str, np.ndarray]]]:
    """Per (sweep, cell): the lowest seed at the chosen step size that has ``key`` samples."""
    out = []
    for sweep, g in _sweeps(df):
        final = tables.final_rows(
            chosen(g, metric, penalty) if _has(g, "objective") or _has(g, metric) else g
        )
        for cell, c in final.sort_values("seed").groupby("cell", sort=True):
            for _, row in c.iterrows():
                got = samples.get((str(row["sweep"]), str(row["trial_id"])))
                if got is not None and key in got:
                    out.append((f"{sweep}: {cell}", row, got))
                    break
    return out


def _default_metric(df: pd.DataFrame) -> str:
    return (
        "objective" if _has(df, "objective") else tables.metric_for(str(df["experiment"].iloc[0]))
    )


def mog_samples(
    df: pd.DataFrame, samples: Samples, metric: str | None = None, penalty: float | None = None
) -> Figure:
    """The mixture-of-Gaussians scatter of Nagarajan & Kolter: per cell at its chosen step size,
    one seed's generated points at the end of training (blue) over the mixture's modes (red
    circles of 3 std). ``samples``: ``analysis.samples.read``."""
    found = _sample_trials(df, samples, "points", metric or _default_metric(df), penalty)
    if not found:
        raise NoData("mog_samples needs saved samples with points (samples.npz of mog trials)")
    fig = Figure(figsize=(3.6 * len(found), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(found)))
    for ax, (name, row, got) in zip(axes, found, strict=True):
        pts, centres, std = got["points"], got["centres"], float(got["std"])
        ax.scatter(
            pts[:, 0], pts[:, 1], s=3, alpha=0.4, color="tab:blue", linewidths=0, gid="generated"
        )
        for cx, cy in centres:
            ax.add_patch(Circle((cx, cy), 3 * std, fill=False, color="tab:red", lw=1, gid="mode"))
        extent = float(np.abs(centres).max()) * 1.5 + 3 * std
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_xlabel("x1 (data units)")
        ax.set_ylabel("x2 (data units)")
        ax.set_title(
            f"{name}\n{_lr(row['lr_d'], row['lr_g'])}, seed {int(row['seed'])}, step {int(got['step'])}",
            fontsize=9,
        )
    n = len(found[0][2]["points"])
    fig.suptitle(
        f"Generated points at the end of training ({n} per panel, blue) and the mixture's modes (red: 3 std)"
    )
    return fig


def _tile(images: np.ndarray, per_row: int = 8) -> np.ndarray:
    n, h, w, c = images.shape
    rows = math.ceil(n / per_row)
    grid = np.full((rows * (h + 1) + 1, per_row * (w + 1) + 1, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, per_row)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = img
    return grid


def image_samples(
    df: pd.DataFrame, samples: Samples, metric: str | None = None, penalty: float | None = None
) -> Figure:
    """Per cell at its chosen step size, one seed's 8 x 8 grid of generated images at the end of
    training (from latents fixed by the seed). ``samples``: ``analysis.samples.read``."""
    found = _sample_trials(df, samples, "images", metric or _default_metric(df), penalty)
    if not found:
        raise NoData("image_samples needs saved samples with images (samples.npz of image trials)")
    fig = Figure(figsize=(4.2 * len(found), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(found)))
    for ax, (name, row, got) in zip(axes, found, strict=True):
        ax.imshow(_tile(got["images"]), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(
            f"{name}\n{_lr(row['lr_d'], row['lr_g'])}, seed {int(row['seed'])}, step {int(got['step'])}",
            fontsize=9,
        )
    n, h = found[0][2]["images"].shape[:2]
    fig.suptitle(f"Generated images at the end of training: {n} per cell, {h} px, one seed each")
    return fig


FIGURES = {"fig1": fig1, "fig2a": fig2a, "fig2bc": fig2bc, "fig3": fig3, "fig4": fig4}
