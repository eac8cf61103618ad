"""What Tune holds as a trial's config: the trainer config, and beside it the sweep's ids.

    {"cell": "adam", "study_trial": 3, "trainer": {...the resolved trainer config...}}

The trainer sees only ``trainer``; the cell and the Optuna study trial number are the sweep's
bookkeeping (they name the trial, tie it to its study, and become ``analysis``'s ``cell``).
"""

from __future__ import annotations

from typing import Any

CELL = "cell"
STUDY_TRIAL = "study_trial"
TRAINER = "trainer"


def tune_config(cell: str, study_trial: int, trainer: dict[str, Any]) -> dict[str, Any]:
    """The config Tune gets for one seed of study trial ``study_trial`` of ``cell``."""
    return {CELL: cell, STUDY_TRIAL: study_trial, TRAINER: trainer}


def trainer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The trainer's part of a Tune trial config."""
    return dict(config[TRAINER])


def key(config: dict[str, Any]) -> tuple[str, int, int] | None:
    """(cell, study trial, seed) of a Tune trial config; None for a config of another shape."""
    if not isinstance(config.get(TRAINER), dict) or CELL not in config:
        return None
    return str(config[CELL]), int(config[STUDY_TRIAL]), int(config[TRAINER]["seed"])


def name(config: dict[str, Any], trial_id: str) -> str:
    """Short, readable trial names: ``<cell>_s<seed>_<id>``."""
    cell = str(config.get(CELL, "trial")).replace("/", "-")
    return f"{cell}_s{config.get(TRAINER, {}).get('seed')}_{trial_id}"
