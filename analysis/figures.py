"""The paper's figures from a loaded results frame (matplotlib, no display needed).

Every function returns a ``matplotlib.figure.Figure`` (rendered with Agg by ``save``) and raises
``NoData`` when the frame lacks what the figure shows. Curves of a cell use the trials at the
step size ``tables.main_table`` chooses for it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from analysis import tables

CORR = re.compile(r"^corr/(?P<player>[DG])/(?P<neuron>[^/]+)/(?P<mode>[^/]+)$")


class NoData(ValueError):
    """The frame has nothing this figure shows."""


def save(fig: Figure, path: str, dpi: int = 120) -> str:
    """Render a figure to a PNG file with the Agg backend."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _x(df: pd.DataFrame) -> str:
    return "kimg" if "kimg" in df.columns and df["kimg"].notna().any() else "step"


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and df[column].notna().any()


def _groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    by = [c for c in tables.GROUP if c in df.columns]
    out = []
    for key, g in df.groupby(by, dropna=False, sort=True):
        name = "/".join(dict.fromkeys(str(k) for k in np.atleast_1d(key) if pd.notna(k)))
        out.append((name, g))
    return out


def chosen(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of the trials at each cell's chosen step size (all rows if none is chosen)."""
    table = tables.main_table(df, metric)
    if table.empty or table["mean"].isna().all():
        return df
    keys = [c for c in [*tables.GROUP, "cell", *tables.STEP_SIZE] if c in table.columns]
    pick = table[keys].drop_duplicates()
    return df.merge(pick, on=keys, how="inner")


def _band(ax, data: pd.DataFrame, x: str, y: str, label: str, color) -> None:
    data = data.dropna(subset=[x, y])
    stats = data.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
    if stats.empty:
        return
    ax.plot(stats.index, stats["mean"], color=color, label=label)
    ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2)


def fig1(df: pd.DataFrame, metric: str = "fid") -> Figure:
    """Fig. 1: final metric against lr_D/lr_G, coloured by the mean gradient ratio of the trial;
    the gradient ratio over training, coloured by lr_D/lr_G."""
    if not (_has(df, metric) and _has(df, "grad_ratio")):
        raise NoData(f"fig1 needs {metric} and grad_ratio")
    df = df.assign(ratio=df["lr_d"] / df["lr_g"])
    final = tables.final_rows(df)
    final = final[final["status"] == "finished"]
    tables.check_protocol(final, [c for c in tables.GROUP if c in final.columns], metric)
    mean_gr = df.groupby(list(tables.TRIAL))["grad_ratio"].mean().rename("gr_mean")
    final = final.join(mean_gr, on=list(tables.TRIAL))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    gr = final["gr_mean"].dropna()
    norm = LogNorm(gr.min(), gr.max()) if len(gr) and gr.min() > 0 else Normalize()
    sc = ax1.scatter(final["ratio"], final[metric], c=final["gr_mean"], cmap="viridis", norm=norm)
    fig.colorbar(sc, ax=ax1, label="mean gradient ratio")
    ax1.set_xscale("log")
    ax1.set_xlabel("lr_D / lr_G")
    ax1.set_ylabel(f"final {metric}")
    ratios = df["ratio"].dropna()
    rnorm = LogNorm(ratios.min(), max(ratios.max(), ratios.min() * 1.0001))
    x = _x(df)
    for _, trial in df.groupby(list(tables.TRIAL)):
        trial = trial.sort_values(x)
        color = colormaps["plasma"](rnorm(trial["ratio"].iloc[0]))
        ax2.plot(trial[x], trial["grad_ratio"], color=color, alpha=0.7)
    fig.colorbar(
        ScalarMappable(norm=rnorm, cmap="plasma"),
        ax=ax2,
        label="lr_D / lr_G",
    )
    ax2.set_yscale("log")
    ax2.set_xlabel(x)
    ax2.set_ylabel("gradient ratio")
    fig.suptitle("Fig. 1: step-size ratio, gradient ratio and final quality")
    return fig


def fig2a(df: pd.DataFrame, metric: str = "fid") -> Figure:
    """Fig. 2a: the metric over training per optimizer, mean over seeds with a min-max band."""
    if not _has(df, metric):
        raise NoData(f"fig2a needs {metric}")
    groups = _groups(df[df[metric].notna()])
    fig = Figure(figsize=(5 * len(groups), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    x = _x(df)
    for ax, (name, g) in zip(axes, groups, strict=True):
        by_step = [c for c in tables.GROUP if c in g.columns] + ["step"]
        if tables.METRICS.get(metric, tables.METRICS["fid"]).needs_protocol:
            tables.check_protocol(g[g[metric].notna()], by_step, metric)
        picked = chosen(g, metric)
        for i, (cell, c) in enumerate(picked.groupby("cell", sort=True)):
            _band(ax, c, x, metric, str(cell), colormaps["tab10"](i % 10))
        ax.set_title(name)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(f"Fig. 2a: {metric} over training (mean, min-max over seeds)")
    return fig


def _layers(df: pd.DataFrame, kind: str, player: str) -> list[str]:
    prefix = f"{kind}/{player}/"
    return [c for c in df.columns if c.startswith(prefix) and df[c].notna().any()]


def fig2bc(df: pd.DataFrame, cell: str | None = None, metric: str | None = None) -> Figure:
    """Fig. 2b,c and 5b: per-layer adaptive magnitude ratio over training, for G and D.

    ``cell`` defaults to the first of ada-nsgda, adam or any cell that reports magnitudes.
    """
    with_mag = [c for c in df["cell"].dropna().unique() if _layers(df[df["cell"] == c], "mag", "G")]
    if not with_mag:
        raise NoData("fig2bc needs mag/<player>/<layer> columns")
    if cell is None:
        cell = next((c for c in ("ada-nsgda", "adam") if c in with_mag), sorted(with_mag)[0])
    data = df[df["cell"] == cell]
    if data.empty:
        raise NoData(f"fig2bc: no trials of cell {cell!r}")
    metric = metric or tables.metric_for(str(data["experiment"].iloc[0]))
    data = chosen(data, metric) if _has(data, metric) else data
    x = _x(data)
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, player in zip(fig.subplots(1, 2), ("G", "D"), strict=True):
        layers = _layers(data, "mag", player)
        for i, col in enumerate(layers):
            color = colormaps["viridis"](i / max(len(layers) - 1, 1))
            mean = data.groupby(x)[col].mean()
            ax.plot(mean.index, mean.values, color=color, label=col.split("/", 2)[2])
        ax.set_title(f"{player}: adaptive magnitude ratio ({cell})")
        ax.set_xlabel(x)
        ax.set_ylabel("|A_Y(t)| / |A_Y(0)|")
        if len(layers) <= 12:
            ax.legend(fontsize=7)
    fig.suptitle("Fig. 2b,c / 5b: per-layer adaptive magnitude ratio")
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
    update speed of G and D; one row per optimizer cell (mean over its seeds)."""
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
    x = "step"
    fig = Figure(figsize=(13, 3.2 * len(cells)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(cells), 3))
    for row, cell in zip(axes, cells, strict=True):
        c = data[data["cell"] == cell]
        for ax, player in zip(row[:2], ("D", "G"), strict=True):
            for i, (mode, series) in enumerate(_max_corr(c, player).items()):
                mean = series.groupby(c[x]).mean()
                ax.plot(mean.index, mean.values, color=colormaps["tab10"](i), label=mode)
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{cell}: {player} neurons, max corr with mode")
            ax.set_xlabel(x)
            ax.legend(fontsize=7)
        ax = row[2]
        for i, player in enumerate(("G", "D")):
            cols = _layers(c, "speed", player)
            if cols:
                mean = c[cols].mean(axis=1).groupby(c[x]).mean()
                ax.plot(mean.index, mean.values, color=colormaps["tab10"](i), label=player)
        ax.set_yscale("log")
        ax.set_title(f"{cell}: update speed")
        ax.set_xlabel(x)
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 3: neurons' correlation with the modes; update speed of G and D")
    return fig


def fig4(df: pd.DataFrame, metric: str = "fid") -> Figure:
    """Fig. 4: final metric per optimizer and setting at the chosen step size: bars (mean) with
    each seed as a dot; diverged/errored seeds are counted under the bar."""
    table = tables.main_table(df, metric)
    if table.empty or table["mean"].isna().all():
        raise NoData(f"fig4 needs a final {metric}")
    finals = dict(_groups(tables.final_rows(chosen(df, metric))))
    groups = _groups(table)
    fig = Figure(figsize=(4 + 2.5 * len(groups), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (name, t) in zip(axes, groups, strict=True):
        cells = list(t["cell"])
        colors = [colormaps["tab10"](i % 10) for i in range(len(cells))]
        ax.bar(range(len(cells)), t["mean"], color=colors, alpha=0.6)
        final = finals.get(name, t.iloc[:0])
        for i, cell in enumerate(cells):
            seeds = final[(final["cell"] == cell) & (final["status"] == "finished")]
            vals = pd.to_numeric(seeds[metric], errors="coerce").dropna()
            jitter = np.linspace(-0.15, 0.15, len(vals))
            ax.scatter(i + jitter, vals, color="k", s=12, zorder=3)
        labels = [
            f"{c}\n{int(d + e)} failed" if d + e else str(c)
            for c, d, e in zip(cells, t["diverged"], t["errored"], strict=True)
        ]
        ax.set_xticks(range(len(cells)), labels, fontsize=8)
        ax.set_title(name)
        ax.set_ylabel(f"final {metric}")
    fig.suptitle(f"Fig. 4: final {metric} per optimizer (bars: mean; dots: seeds)")
    return fig


FIGURES = {"fig1": fig1, "fig2a": fig2a, "fig2bc": fig2bc, "fig3": fig3, "fig4": fig4}
