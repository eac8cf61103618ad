"""Sweep results -> parquet -> the paper's tables, figures and a report.

    import analysis
    analysis.collect("runs/wgangp_cifar10", "results/")   # Tune output (path or URI) -> parquet
    df = analysis.load("results/")                        # one row per (trial, report)
    table = analysis.main_table(df, "fid")                # best step size per optimizer
    print(analysis.to_markdown(table))
    analysis.save(analysis.fig4(df), "fig4.png")

Command line: ``python -m analysis report RUNS --out DIR`` (and ``collect RUNS --dest DIR``).
The columns are documented in ``analysis.schema`` (``analysis.schema.describe()``).
"""

from analysis.collect import Collected, collect
from analysis.load import load
from analysis.report import report
from analysis.samples import read as read_samples
from analysis.schema import SchemaError
from analysis.tables import (
    ProtocolError,
    caption,
    final_rows,
    main_table,
    metric_for,
    step_size_table,
    to_csv,
    to_latex,
    to_markdown,
)

# drawn figures need matplotlib (seconds to import): loaded on first use, so that a trial's
# process, which imports ``analysis.packed`` and ``analysis.tables``, never imports it
_FIGURES = (
    "NoData",
    "curves",
    "fig1",
    "fig2a",
    "fig2bc",
    "fig3",
    "fig4",
    "image_samples",
    "mog_samples",
    "save",
    "sensitivity",
)


def __getattr__(name: str):
    if name in _FIGURES:
        from analysis import figures

        return getattr(figures, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


__all__ = [
    "Collected",
    "NoData",
    "ProtocolError",
    "SchemaError",
    "caption",
    "collect",
    "curves",
    "fig1",
    "fig2a",
    "fig2bc",
    "fig3",
    "fig4",
    "final_rows",
    "image_samples",
    "load",
    "main_table",
    "metric_for",
    "mog_samples",
    "read_samples",
    "report",
    "save",
    "sensitivity",
    "step_size_table",
    "to_csv",
    "to_latex",
    "to_markdown",
]
