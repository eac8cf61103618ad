"""The sweep engine: declare a ``Sweep`` of ``Cell``s, run it on Ray Tune with Optuna studies.

from sweeps.engine import Cell, StepSizes, Sweep, run
outcome = run(sweep, storage="runs")     # from a notebook: outcome.code, .table, .trials
main(sweep)                              # from a script: the command line, then exit
"""

from sweeps.engine.spec import (
    Cell,
    EarlyStopping,
    Resources,
    StepSizes,
    Sweep,
    SweepError,
    log_grid,
    report_bad_declarations,
)

report_bad_declarations()  # a bad declaration in a script: its message and exit 2

# the driver's side (Ray, Tune, analysis) is imported on first use: a trial's process imports
# this package for ``sweeps.engine.trainable`` and needs none of it
_LAZY = {
    "main": "sweeps.engine.cli",
    "run": "sweeps.engine.driver",
    "Outcome": "sweeps.engine.tuner",
    "default_smoke": "sweeps.engine.smoke",
    "smoke_version": "sweeps.engine.smoke",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sweeps.engine' has no attribute {name!r}")


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
