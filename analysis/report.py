"""``python -m analysis report RUNS --out DIR``: collect, then tables and figures in a report.

Writes ``DIR/results/`` (the parquet dataset), ``DIR/report.md`` (status, tables, figures),
``DIR/tables/<setting>.{md,tex,csv}`` and ``DIR/figures/*.png``. A figure the data cannot show
is listed as skipped with the reason; a table that would mix FID protocols is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

import pandas as pd

from analysis import figures, tables
from analysis.collect import collect
from analysis.load import load


class Progress:
    """Collect progress on a stream: one updating line on a terminal, else every 10%."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int, trial: str) -> None:
        tenth = (10 * done) // max(total, 1)
        if self.tty:
            end = "\n" if done == total else ""
            self.stream.write(f"\rcollecting {done}/{total} trials: {trial[-50:]:<50}{end}")
        elif tenth != self.shown or done == total:
            self.shown = tenth
            self.stream.write(f"collecting {done}/{total} trials\n")
        self.stream.flush()


def _status_lines(df: pd.DataFrame) -> list[str]:
    final = tables.final_rows(df)
    lines = ["| sweep | trials | finished | diverged | errored | running | wall time (h) |"]
    lines.append("|---|---|---|---|---|---|---|")
    for sweep, g in final.groupby("sweep", sort=True):
        counts = g["status"].value_counts()
        hours = g["time_total_s"].sum() / 3600
        cells = [str(counts.get(s, 0)) for s in ("finished", "diverged", "errored", "running")]
        lines.append(f"| {sweep} | {len(g)} | " + " | ".join(cells) + f" | {hours:.3g} |")
    return lines


def _figure_jobs(df: pd.DataFrame) -> list[tuple[str, str, object]]:
    """(file name, title, thunk) for every figure this data may show."""
    jobs = []
    image = df[df["fid"].notna()]
    if len(image):
        jobs += [
            ("fig1.png", "Fig. 1", lambda: figures.fig1(image)),
            ("fig2a.png", "Fig. 2a", lambda: figures.fig2a(image)),
            ("fig4.png", "Fig. 4", lambda: figures.fig4(image)),
        ]
    for exp in sorted(df["experiment"].dropna().unique()):
        sub = df[df["experiment"] == exp]
        jobs.append((f"fig2bc_{exp}.png", f"Fig. 2b,c ({exp})", lambda s=sub: figures.fig2bc(s)))
    bimodal = df[df["experiment"] == "bimodal"]
    if len(bimodal):
        jobs.append(("fig3.png", "Fig. 3", lambda: figures.fig3(bimodal)))
    return jobs


def write_report(df: pd.DataFrame, out: str) -> str:
    """Tables and figures of ``df`` under ``out``; returns the path of report.md."""
    os.makedirs(f"{out}/tables", exist_ok=True)
    os.makedirs(f"{out}/figures", exist_ok=True)
    md = ["# Sweep report", "", "## Trials", "", *_status_lines(df), "", "## Tables", ""]
    for exp in sorted(df["experiment"].dropna().unique()):
        sub = df[df["experiment"] == exp]
        metric = tables.metric_for(exp)
        try:
            table = tables.main_table(sub, metric)
        except tables.ProtocolError as e:
            md += [f"### {exp}", "", f"Refused: {e}", ""]
            table = tables.main_table(sub, metric, by_protocol=True)
            md += ["One table per protocol instead:", ""]
        if table.empty or table["mean"].isna().all():
            md += [f"### {exp}", "", f"(no final {metric} yet)", ""]
            continue
        base = f"{out}/tables/{exp}"
        with open(base + ".md", "w") as f:
            f.write(tables.to_markdown(table) + "\n")
        with open(base + ".tex", "w") as f:
            f.write(tables.to_latex(table) + "\n")
        tables.to_csv(table, base + ".csv")
        label = tables.METRICS[metric].label
        md += [f"### {exp}: {label}", "", tables.to_markdown(table), ""]

        md += [f"Step size chosen by mean {label} over seeds; CSV/LaTeX in `tables/{exp}.*`.", ""]
    md += ["## Figures", ""]
    for name, title, make in _figure_jobs(df):
        try:
            fig = make()
        except (figures.NoData, tables.ProtocolError) as e:
            md += [f"- {title}: skipped ({e})"]
            continue
        figures.save(fig, f"{out}/figures/{name}")
        md += ["", f"### {title}", "", f"![{title}](figures/{name})", ""]
    path = f"{out}/report.md"
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n")
    return path


def report(runs: Sequence[str], out: str, results: str | None = None, quiet: bool = False) -> str:
    """Collect ``runs`` into ``results`` (default ``out/results``), then write the report."""
    results = results or f"{out}/results"
    done = collect(list(runs), results, progress=None if quiet else Progress())
    if not quiet:
        status = ", ".join(f"{k} {v}" for k, v in sorted(done.statuses.items()))
        print(
            f"collected {done.trials} trials ({done.updated} new or changed), {done.rows} rows: "
            f"{status or 'none'}",
            file=sys.stderr,
        )
    if done.trials == 0:
        raise FileNotFoundError(f"report: no trials under {', '.join(runs)}")
    return write_report(load(results), out)
