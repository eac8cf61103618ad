"""The sweep engine: declare a ``Sweep`` of ``Cell``s, run it on Ray Tune with Optuna studies."""

from sweeps.engine.driver import main, run
from sweeps.engine.spec import Cell, Resources, StepSizes, Sweep, SweepError, log_grid

__all__ = ["Cell", "Resources", "StepSizes", "Sweep", "SweepError", "log_grid", "main", "run"]
