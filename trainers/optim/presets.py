"""The study's optimizers as grafts: name -> magnitude rule, direction rule, pinned options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named graft: ``magnitude`` (None: the direction rule itself) on ``direction`` (rule
    names of ``registry.RULES``); ``fixed`` options are pinned, not settable."""

    magnitude: str | None
    direction: str
    paper: str
    fixed: Mapping[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "sgda": Preset(None, "sgd", "SGDA: Y -= lr * g"),
    "adam": Preset(None, "adam", "Algorithm 1: Y -= lr * A"),
    "ada-nsgda": Preset("adam", "sgd", "eq. (3): Y -= lr * |A_Y| g / |g_Y|", {"momentum": 0.0}),
    "adadir": Preset("sgd", "adam", "Sec. 2: Y -= lr * |g_Y| A / |A_Y|"),
    "nsgda": Preset("constant", "sgd", "eq. (6): Y -= lr * s_Y g / |g_Y|"),
}
