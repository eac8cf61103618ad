"""Argument checks shared by the rules, the optimizer and ``build``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_unit_interval(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a number in [0, 1)."""
    if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a number in [0, 1)")


def check_non_negative(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a finite number >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number >= 0")


def check_betas(betas: Any) -> tuple[float, float]:
    """``betas`` as a pair of floats, each in [0, 1); ValueError otherwise."""
    if not (isinstance(betas, Sequence) and len(betas) == 2):
        raise ValueError(f"betas={betas!r} is not allowed: it must be a pair of numbers")
    check_unit_interval("betas[0]", betas[0])
    check_unit_interval("betas[1]", betas[1])
    return float(betas[0]), float(betas[1])


def check_lr(lr: Any) -> None:
    """Raise ValueError unless ``lr`` is a finite positive number."""
    if not (_is_number(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is not allowed: it must be a finite number > 0")


def check_scale(name: str, scale: Any) -> None:
    """Raise ValueError unless ``scale`` is a finite positive number."""
    if not (_is_number(scale) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale of group {name!r} is {scale!r}: it must be a finite number > 0")
