"""``python -m analysis report RUNS --out DIR``: collect, then tables and figures in a report.

Writes ``DIR/results/`` (the parquet dataset), ``DIR/report.md`` (status, tables, figures),
``DIR/tables/<sweep>.{md,tex,csv}`` and ``DIR/figures/*.png``. Each sweep is ranked and shown by
its own objective (``sweep.json``'s metric and penalty), as the sweep's summary is, then by the
experiment's paper metric at the same step sizes; FID tables say their protocol in words; wall
time is in readable units. A figure the data cannot show is listed as skipped with the reason;
a table that would mix FID protocols is an error.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import pandas as pd

from analysis import schema, tables
from analysis.collect import collect, records
from analysis.load import load
from analysis.samples import read as read_samples

if TYPE_CHECKING:
    from analysis import figures

SWEEP_JSON = "sweep.json"


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


def duration(seconds: float) -> str:
    """Wall time in the unit that fits: seconds, minutes, hours or days."""
    if not math.isfinite(seconds):
        return "-"
    for unit, size, limit in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 86400:.3g} d"


def _status_lines(df: pd.DataFrame) -> list[str]:
    final = tables.final_rows(df)
    lines = [
        "| sweep | trials | finished | diverged | errored | running | pruned | wall time (sum) |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for sweep, g in final.groupby("sweep", sort=True):
        counts = g["status"].value_counts()
        wall = duration(float(g["time_total_s"].fillna(0).sum()))
        cells = [str(counts.get(s, 0)) for s in schema.STATUSES]
        lines.append(f"| {sweep} | {len(g)} | " + " | ".join(cells) + f" | {wall} |")
    return lines


# -- FID protocol in words -----------------------------------------------------------------------

REF = re.compile(r"^(?P<data>.+)_(?P<res>\d+)px_(?P<split>[^_]+)_n(?P<n>\d+)$")
PUBLISHED = re.compile(r"^(?P<data>.+?)_(?P<mode>clean|legacy_\w+)_(?P<split>[^_]+)_(?P<res>\d+)")


def _reference_words(ref: str) -> str:
    m = REF.match(ref)
    if m:
        return (
            f"reference: {m['n']} real images of the {m['data']} {m['split']} split "
            f"at {m['res']} px"
        )
    m = PUBLISHED.match(ref)
    if m and "published" in ref:
        return (
            f"reference: clean-fid's published statistics of the whole {m['data']} "
            f"{m['split']} split at {m['res']} px"
        )
    return f"reference: {ref}"


def _extractor_words(extractor: str, mode: str) -> str:
    if extractor.startswith("inception"):
        return (
            "extractor: Inception-v3 (clean-fid's torchscript, 2048 pool features); resize: "
            f"each image to 299 x 299 by PIL bicubic (clean-fid mode '{mode}')"
        )
    if extractor.startswith("randconv"):
        return (
            f"extractor: {extractor}, a fixed random convolution (a test extractor: these FIDs "
            "are not comparable with Inception FIDs); resize: none"
        )
    return f"extractor: {extractor}; clean-fid mode '{mode}'"


def protocol_words(final: pd.DataFrame) -> list[str]:
    """Each FID protocol of these final rows in words (empty when they have no FID)."""
    if "fid" not in final.columns:
        return []
    rows = final[final["fid"].notna()]
    cols = ["fid_num_gen", "fid_ref", "fid_mode", "fid_extractor"]
    out = []
    for key, g in rows.groupby(cols, dropna=False, sort=True):
        n, ref, mode, ext = (str(v) for v in key)
        out.append(
            f"FID protocol ({len(g)} final rows): {n} generated images; "
            f"{_reference_words(ref)}; {_extractor_words(ext, mode)}."
        )
    return out


# -- one sweep, by its own objective --------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A sweep's objective as the report knows it: its name, penalty and where that came from."""

    name: str
    penalty: float | None
    binary: bool
    source: str

    @property
    def label(self) -> str:
        if self.name == "objective":
            return "the sweep's objective (its name unknown: no sweep.json)"
        return f"objective {self.name}"

    def penalty_words(self, failed: int) -> str:
        if self.penalty is not None:
            return f"a diverged/errored seed counts as the penalty {self.penalty:g} ({self.source})"
        if not failed:
            return "no seed diverged or errored, so no penalty is needed"
        return f"{failed} failed seed(s) are left out: {self.source}"


def objective_of(sweep: pd.DataFrame, record: dict | None) -> Objective:
    """The sweep's objective: its name, penalty and 0/1-ness from ``sweep.json`` (its
    ``objective`` entry, written by the engine); for a record without one, a penalty the
    record leaves to the objective's default is read from the data (the objective every
    diverged seed reported), and 0/1 when every final value is 0 or 1."""
    record = record or {}
    final = tables.final_rows(sweep)
    name = str(record.get("metric") or "objective")
    recorded = record.get("objective")
    if isinstance(recorded, dict) and recorded.get("penalty") is not None:
        return Objective(
            name, float(recorded["penalty"]), bool(recorded.get("binary")), "sweep.json"
        )
    penalty, source = record.get("penalty"), "sweep.json"
    if penalty is None:
        failed = final.loc[final["status"] == "diverged", "objective"].dropna().unique()
        if len(failed) == 1:
            penalty, source = float(failed[0]), "the objective its diverged seeds reported"
        else:
            source = "the penalty is unknown (none in sweep.json, no diverged seed reported one)"
    values = final["objective"].dropna()
    binary = bool(len(values)) and bool(values.isin([0.0, 1.0]).all())
    return Objective(name, None if penalty is None else float(penalty), binary, source)


def penalty_warning(sweep: pd.DataFrame, obj: Objective, name: str) -> list[str]:
    """A warning (also on stderr) when finished seeds scored worse than the penalty: a diverged
    seed then ranks better than a seed that trained to the end, and the sweep's choice and
    scores are wrong wherever both occur. The fix is a sweep ``penalty`` above them."""
    if obj.penalty is None:
        return []
    final = tables.final_rows(sweep)
    finished = final.loc[final["status"] == "finished", "objective"].dropna()
    worse = finished[finished > obj.penalty]
    if worse.empty:
        return []
    text = (
        f"**Warning**: {len(worse)} of {len(finished)} finished seeds of {name} scored worse "
        f"than the penalty {obj.penalty:g} a diverged seed counts as (up to {worse.max():.4g}), "
        f"so a diverged seed ranks better than they do; declare a higher `penalty` in the sweep."
    )
    print(f"report: {text.replace('**', '')}", file=sys.stderr)
    return [text, ""]


def grid_lines(sweep: pd.DataFrame, obj: Objective) -> list[str]:
    """Every step size tried per cell (``tables.grid_table``): its score over the tuning seeds
    with its interval; the chosen one marked, and where it lies at the edge of the grid."""
    grid = tables.grid_table(
        sweep, "objective", penalty=obj.penalty, binary=obj.binary, stage="tune"
    )
    score = "score" if "score" in grid.columns else "mean"
    lines = [
        f"| cell | lr_D | lr_G | lr_D/lr_G | {score} | 95% CI | seeds | failed |  |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in grid.itertuples():
        ci = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]" if pd.notna(r.ci_low) else "-"
        mark = "chosen" if r.chosen else ""
        if r.chosen and r.edge:
            mark += f" (at the {r.edge} edge)"
        value = getattr(r, score)
        lines.append(
            f"| {r.cell} | {r.lr_d:.3g} | {r.lr_g:.3g} | {r.lr_ratio:.3g} | "
            f"{value:.4g} | {ci} | {r.seeds} | {r.diverged + r.errored} | {mark} |"
        )
    return lines


def _named(text: str, objective: str | None) -> str:
    """A table's text with its objective column named after the sweep's objective."""
    generic = tables.METRICS["objective"].label
    return text.replace(generic, f"objective {objective}") if objective else text


def _write_table(table: pd.DataFrame, base: str, objective: str | None = None) -> None:
    with open(base + ".md", "w") as f:
        f.write(_named(tables.to_markdown(table), objective) + "\n")
    with open(base + ".tex", "w") as f:
        f.write(_named(tables.to_latex(table), objective) + "\n")
    tables.to_csv(table, base + ".csv")


def sweep_section(name: str, sweep: pd.DataFrame, record: dict | None, out: str) -> list[str]:
    """A sweep's tables: by its own objective (how the sweep chose, over its confirmation seeds
    where it ran them), every step size it tried, then the experiment's paper metric at the
    same step sizes."""
    obj = objective_of(sweep, record)
    table = tables.main_table(sweep, "objective", penalty=obj.penalty, binary=obj.binary)
    md = [f"### {name}: {obj.label} (lower is better)", ""]
    if table.empty or table["mean"].isna().all():
        return md + [f"(no final {obj.label} yet)", ""]
    _write_table(table, f"{out}/tables/{name}", obj.name)
    failed = int((table["diverged"] + table["errored"]).sum()) if obj.penalty is None else 0
    confirmed = "stage" in table.columns and (table["stage"] == "confirm").any()
    where = (
        "; the numbers below are over fresh confirmation seeds at that step size"
        if confirmed
        else "; the numbers below are over those same seeds (optimistic for the winner)"
    )
    md += [
        f"Step size per cell chosen as the sweep chose it: lowest mean {obj.label} over the "
        f"tuning seeds{where}; {obj.penalty_words(failed)}.",
        "",
        *penalty_warning(sweep, obj, name),
        _named(tables.to_markdown(table), obj.name),
        "",
        *protocol_words(tables.final_rows(sweep)),
        "",
        "Every step size tried (tuning seeds):",
        "",
        *grid_lines(sweep, obj),
        "",
    ]
    md += _paper_metric(sweep, obj)
    return md


def _paper_metric(sweep: pd.DataFrame, obj: Objective) -> list[str]:
    """The experiment's paper metric at the step sizes the objective chose (never re-chosen)."""
    from analysis import figures  # matplotlib: only where a figure is drawn

    metric = tables.metric_for(str(sweep["experiment"].iloc[0]))
    if metric == "fid" and obj.name == "fid":
        return []
    # every row (both stages) at the step sizes the objective chose: the table then finds the
    # same step size by any metric, and reports its confirmation seeds where there are some
    keys = ["cell", *tables.STEP_SIZE]
    picked = figures.chosen(sweep, "objective", obj.penalty)[keys].drop_duplicates()
    rows = sweep.merge(picked, on=keys, how="inner")
    try:
        table = tables.main_table(rows, metric)
    except tables.ProtocolError as e:
        return [f"Paper metric {metric}: refused ({e})", ""]
    if table.empty or table["mean"].isna().all():
        return []
    label = tables.METRICS[metric].label
    return [
        f"Also {label} at the same step sizes (the objective's choice, not re-chosen):",
        "",
        tables.to_markdown(table),
        "",
    ]


def experiment_section(exp: str, sub: pd.DataFrame, out: str) -> list[str]:
    """Runs without a sweep objective (plain runs, named ``exp`` after their directory): the
    experiment's paper metric."""
    metric = tables.metric_for(str(sub["experiment"].iloc[0]))
    md: list[str] = []
    try:
        table = tables.main_table(sub, metric)
    except tables.ProtocolError as e:
        md += [f"### {exp}", "", f"Refused: {e}", "", "One table per protocol instead:", ""]
        table = tables.main_table(sub, metric, by_protocol=True)
    if table.empty or table["mean"].isna().all():
        return md + [f"### {exp}", "", f"(no final {metric} yet)", ""]
    _write_table(table, f"{out}/tables/{exp}")
    label = tables.METRICS[metric].label
    md += [f"### {exp}: {label}", "", tables.to_markdown(table), ""]
    md += [*protocol_words(tables.final_rows(sub)), ""]
    md += [f"Step size chosen by mean {label} over seeds; CSV/LaTeX in `tables/{exp}.*`.", ""]
    return md


# -- figures ---------------------------------------------------------------------------------------


def _sweep_figures(
    name: str, sweep: pd.DataFrame, record: dict | None, samples: figures.Samples
) -> list[tuple[str, str, object]]:
    from analysis import figures  # matplotlib: only where a figure is drawn

    has_objective = figures._has(sweep, "objective")
    obj = objective_of(sweep, record) if has_objective else None
    metric = "objective" if obj else tables.metric_for(str(sweep["experiment"].iloc[0]))
    pen, label = (obj.penalty, obj.label) if obj else (None, None)
    jobs = [
        (
            f"{name}_sensitivity.png",
            f"{name}: step-size sensitivity",
            lambda: figures.sensitivity(
                sweep, metric, penalty=pen, label=label, binary=obj.binary if obj else None
            ),
        ),
        (
            f"{name}_curves.png",
            f"{name}: {label or tables.METRICS[metric].label} over training",
            lambda: figures.curves(sweep, metric, penalty=pen, label=label),
        ),
    ]
    if str(sweep["experiment"].iloc[0]) == "mog":
        make = lambda: figures.mog_samples(sweep, samples, metric, pen)  # noqa: E731
        jobs.append((f"{name}_samples.png", f"{name}: final samples", make))
    elif figures._has(sweep, "fid"):
        make = lambda: figures.image_samples(sweep, samples, metric, pen)  # noqa: E731
        jobs.append((f"{name}_samples.png", f"{name}: final samples", make))
    with_mag = sorted(
        c
        for c in sweep["cell"].dropna().unique()
        if figures._layers(sweep[sweep["cell"] == c], "mag", "G")
    )
    for cell in sorted(with_mag, key=lambda c: (c != "adam", c)):
        jobs.append(
            (
                f"{name}_fig2bc_{re.sub(r'[^A-Za-z0-9.-]+', '_', cell)}.png",
                f"Fig. 2b,c ({name}, {cell})",
                lambda c=cell: figures.fig2bc(sweep, cell=c),
            )
        )
    return jobs


def _figure_jobs(
    df: pd.DataFrame, records: dict[str, dict], samples: figures.Samples
) -> list[tuple[str, str, object]]:
    """(file name, title, thunk) for every figure this data may show."""
    from analysis import figures  # matplotlib: only where a figure is drawn

    jobs = []
    image = df[df["fid"].notna()]
    if len(image):
        jobs += [
            ("fig1.png", "Fig. 1", lambda: figures.fig1(image)),
            ("fig2a.png", "Fig. 2a", lambda: figures.fig2a(image)),
            ("fig4.png", "Fig. 4", lambda: figures.fig4(image)),
        ]
    bimodal = df[df["experiment"] == "bimodal"]
    if len(bimodal):
        jobs.append(("fig3.png", "Fig. 3", lambda: figures.fig3(bimodal)))
    for name, sweep in df.groupby("sweep", sort=True):
        jobs += _sweep_figures(str(name), sweep, records.get(str(name)), samples)
    return jobs


def write_report(
    df: pd.DataFrame,
    out: str,
    records: dict[str, dict] | None = None,
    samples: figures.Samples | None = None,
) -> str:
    """Tables and figures of ``df`` under ``out``; returns the path of report.md.

    A sweep (rows with ``objective``) gets its table by its own objective (name and penalty
    from ``records[sweep]``, its ``sweep.json``), then the experiment's paper metric at the same
    step sizes; other rows a table per experiment by its paper metric. ``samples``:
    ``analysis.samples.read``."""
    from analysis import figures  # matplotlib: only where a figure is drawn

    records, samples = records or {}, samples or {}
    os.makedirs(f"{out}/tables", exist_ok=True)
    os.makedirs(f"{out}/figures", exist_ok=True)
    md = ["# Sweep report", "", "## Trials", "", *_status_lines(df), "", "## Tables", ""]
    has = df["objective"].notna() if "objective" in df.columns else pd.Series(False, df.index)
    swept = df[df["sweep"].isin(df.loc[has, "sweep"].unique())]
    for name, sweep in swept.groupby("sweep", sort=True):
        md += sweep_section(str(name), sweep, records.get(str(name)), out)
    rest = df[~df.index.isin(swept.index)]
    for name, sub in rest.groupby("sweep", sort=True):
        md += experiment_section(str(name), sub, out)
    md += ["## Figures", ""]
    for name, title, make in _figure_jobs(df, records, samples):
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
    df = load(results)
    return write_report(df, out, records(results), read_samples(results, df))
