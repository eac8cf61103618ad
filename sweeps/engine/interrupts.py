"""Ctrl-C during a sweep: know that it happened, and say how to resume with gansweep's flag.

Tune catches the first SIGINT itself (it stops the trials and saves the experiment state one
last time) and then returns from ``fit`` as if the sweep were done, logging its own hint
(``Tuner.restore(...)``). ``watch`` notices Tune's stop message, hides that hint, and, should
Tune not have installed its handler (not on the main thread, ``TUNE_DISABLE_SIGINT_HANDLER``),
catches SIGINT itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TUNE_LOGGER = "ray.tune.tune"
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"


class _NoMissingMetrics(logging.Filter):
    """Tune's ResultGrid warns about every trial that had not reported yet when a sweep was
    interrupted ("Failed to fetch metrics ... FileNotFoundError"), on the interrupted run and
    again on its resume; gansweep's own end-of-sweep check says which trials are missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to fetch metrics" not in record.getMessage()


def hide_missing_metrics_warnings() -> None:
    """Install the filter once (idempotent)."""
    logger = logging.getLogger(ANALYSIS_LOGGER)
    if not any(isinstance(f, _NoMissingMetrics) for f in logger.filters):
        logger.addFilter(_NoMissingMetrics())


class _TuneMessages(logging.Filter):
    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Stop signal received" in message:
            self.event.set()
        return "Resume experiment with" not in message and "Resume training with" not in message


@contextmanager
def watch() -> Iterator[threading.Event]:
    """Within the block, the event is set when the user interrupted the sweep."""
    event = threading.Event()
    messages = _TuneMessages(event)
    logger = logging.getLogger(TUNE_LOGGER)
    logger.addFilter(messages)
    previous = None
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:

        def on_sigint(sig: int, frame: object) -> None:
            event.set()
            if previous not in (None, signal.SIG_IGN, signal.SIG_DFL) and callable(previous):
                previous(sig, frame)
            else:
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield event
    except KeyboardInterrupt:
        event.set()
    finally:
        logger.removeFilter(messages)
        if on_main:
            signal.signal(signal.SIGINT, previous)
