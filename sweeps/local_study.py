"""What the local studies (``bimodal_theory.py``, ``mog_gdreg.py``: plain processes, no Ray)
share: command-line values checked by argparse (exit code 2 naming the value) and the check of
their configs and output directory before any trial starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from analysis import storage


def at_least(low: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse ``type``: a ``kind`` (int or float) >= ``low``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind.__name__}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: must be >= {low:g}")
        return value

    parse.__name__ = kind.__name__
    return parse


def refuse(out: str, configs: Iterable[dict[str, Any]]) -> int | None:
    """Exit code 2 (after printing why) when ``out`` cannot be a directory or a config is
    bad; None when the study may start."""
    from trainers import experiments
    from trainers.config import ConfigError

    problem = storage.directory_problem(out)
    if problem is not None:
        print(f"gansweep: --out {problem}: give a directory", file=sys.stderr)
        return 2
    try:
        for config in configs:
            experiments.resolve_config(config)
    except ConfigError as e:
        print(f"gansweep: bad config: {e}", file=sys.stderr)
        return 2
    return None
