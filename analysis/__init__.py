"""Sweep results -> parquet -> the paper's tables, figures and a report.

    import analysis
    analysis.collect("runs/wgangp_cifar10", "results/")   # Tune output (path or URI) -> parquet
    df = analysis.load("results/")                        # one row per (trial, report)
    table = analysis.main_table(df, "fid")                # best step size per optimizer
    print(analysis.to_markdown(table))

Command line: ``python -m analysis report RUNS --out DIR``.
"""

from analysis.collect import Collected, collect
from analysis.load import load
from analysis.schema import SchemaError

__all__ = ["Collected", "SchemaError", "collect", "load"]
