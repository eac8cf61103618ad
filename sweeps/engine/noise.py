"""What Ray prints that a sweep's user does not need, silenced; progress, the trial table
and real warnings stay.

- the driver: Tune's "Experiment state snapshotting has been triggered multiple times" warning
  (the engine forces those snapshots on purpose: ``tuner.KEEP_CHECKPOINTS``) and Ray's notice
  that token authentication is on (its warning that authentication is *off* stays);
- a trial: Ray Train's "Checkpoint successfully created at ..." line per checkpoint, and the
  "Exception ignored in ... SystemExit: 1" traceback a reused trial actor can print when Ray
  stops it at the end of a sweep (Ray's SIGTERM handler raises SystemExit; landing inside a
  weakref callback, Python reports it as unraisable). Other unraisable exceptions still print.
"""

from __future__ import annotations

import logging
import os
import sys

AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_ENABLED_NOTICE = "Token authentication is enabled for this Ray cluster"
CHECKPOINT_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")
SNAPSHOT_WARNING_ENV = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_driver() -> None:
    """Before ``ray.init`` in the driver (a user's own setting of the variable wins)."""
    os.environ.setdefault(SNAPSHOT_WARNING_ENV, "0")
    logger = logging.getLogger(AUTH_LOGGER)
    if not any(isinstance(f, DropMessages) for f in logger.filters):
        logger.addFilter(DropMessages(AUTH_ENABLED_NOTICE))


def quiet_trial() -> None:
    """In a trial's process: no line per checkpoint (failures still log as warnings), no
    traceback for a stop signal that lands in a callback."""
    for name in CHECKPOINT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    if not getattr(sys.unraisablehook, "gansweep", False):
        sys.unraisablehook = _quiet_exit(sys.unraisablehook)


def _quiet_exit(default):
    """An unraisable hook that drops ``SystemExit`` (a stop signal) and passes the rest on."""

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, SystemExit):
            default(unraisable)

    hook.gansweep = True
    return hook
