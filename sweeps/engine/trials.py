"""What Tune holds as a trial's config: the trainer config, and beside it the sweep's ids.

    {"cell": "adam", "study_trial": 3, "stage": "tune", "trainer": {...the trainer config...}}

The trainer sees only ``trainer``; the cell, the Optuna study trial number and the stage
(``tune``: a seed of the step-size search; ``confirm``: a fresh seed of the cell's chosen step
size) are the sweep's bookkeeping: they name the trial, tie it to its study, and become
``analysis``'s ``cell``, ``study_trial`` and ``stage`` columns.
"""

from __future__ import annotations

from typing import Any

CELL = "cell"
STUDY_TRIAL = "study_trial"
STAGE = "stage"
TRAINER = "trainer"
TUNE, CONFIRM = "tune", "confirm"


def tune_config(
    cell: str, study_trial: int, trainer: dict[str, Any], stage: str = TUNE
) -> dict[str, Any]:
    """The config Tune gets for one seed of study trial ``study_trial`` of ``cell``."""
    return {CELL: cell, STUDY_TRIAL: study_trial, STAGE: stage, TRAINER: trainer}


def trainer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The trainer's part of a Tune trial config."""
    return dict(config[TRAINER])


def key(config: dict[str, Any]) -> tuple[str, int, int] | None:
    """(cell, study trial, seed) of a Tune trial config; None for a config of another shape."""
    if not isinstance(config.get(TRAINER), dict) or CELL not in config:
        return None
    return str(config[CELL]), int(config[STUDY_TRIAL]), int(config[TRAINER]["seed"])


def name(config: dict[str, Any], trial_id: str) -> str:
    """Short, readable trial names: ``<cell>_s<seed>_<id>`` (``_c<seed>`` for a confirmation
    seed)."""
    cell = str(config.get(CELL, "trial")).replace("/", "-")
    mark = "c" if config.get(STAGE) == CONFIRM else "s"
    return f"{cell}_{mark}{config.get(TRAINER, {}).get('seed')}_{trial_id}"
