"""Timing helpers the benchmark scripts share: one run, synchronised on CUDA, and runs of two
functions alternated so that load from other processes affects both alike."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def once(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (the device's queue drained before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def alternate(
    a: Callable[[], None], b: Callable[[], None], repeats: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Seconds of ``repeats`` runs each of ``a`` and ``b``, in the order a, b, a, b, ..."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(once(a, device))
        tb.append(once(b, device))
    return ta, tb
