"""The sweep engine: declare a ``Sweep`` of ``Cell``s, run it on Ray Tune with Optuna studies.

from sweeps.engine import Cell, StepSizes, Sweep, run
outcome = run(sweep, storage="runs")     # from a notebook: outcome.code, .table, .trials
main(sweep)                              # from a script: the command line, then exit
"""

from sweeps.engine import cli
from sweeps.engine.cli import main
from sweeps.engine.driver import run
from sweeps.engine.smoke import default_smoke, smoke_version
from sweeps.engine.spec import (
    Cell,
    EarlyStopping,
    Resources,
    StepSizes,
    Sweep,
    SweepError,
    log_grid,
)
from sweeps.engine.tuner import Outcome

cli.report_bad_declarations()  # a bad declaration in a script: its message and exit 2

__all__ = [
    "Cell",
    "EarlyStopping",
    "Outcome",
    "Resources",
    "StepSizes",
    "Sweep",
    "SweepError",
    "default_smoke",
    "log_grid",
    "main",
    "run",
    "smoke_version",
]
