"""What a trial records about where it ran: git commit, package versions, machine."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("gansweep", "torch", "torchvision", "numpy", "clean-fid", "ray", "optuna")


@functools.cache
def git_commit() -> str:
    """The commit of this checkout (``+dirty`` when it has changes), or GANSWEEP_COMMIT, or
    "unknown" (an installed wheel has no git). Read once per process: the code a process runs
    is the code it imported, and a trial process reused for many trials would otherwise run
    git twice per trial."""
    if os.environ.get("GANSWEEP_COMMIT"):
        return os.environ["GANSWEEP_COMMIT"]
    root = Path(__file__).resolve().parents[2]  # the checkout
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    return tuple(_installed().items())


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when not installed), as
    this process found them (read once)."""
    return dict(_versions())


def _installed() -> dict[str, str | None]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def record() -> dict[str, object]:
    """Everything above, plus host and platform."""
    return {
        "git_commit": git_commit(),
        "versions": versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
