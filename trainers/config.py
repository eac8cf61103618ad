"""Trial configs: defaults per experiment and validation that names the bad key and value.

A config needs only ``experiment``, ``optimizer`` and ``seed``; ``resolve`` fills every other key
with the default that reproduces the paper's setting for that experiment (and that optimizer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainers import optim

REQUIRED = object()


class ConfigError(ValueError):
    """A config key has a value that is not allowed; the message names key, value and rule."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        shown = "(missing)" if value is REQUIRED else repr(value)
        super().__init__(f"config key {key!r} = {shown} is not allowed; allowed: {allowed}")


@dataclass(frozen=True)
class Field:
    """One config key: its default, type and allowed values."""

    default: Any
    kind: type | tuple[type, ...]
    choices: tuple | None = None
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive
    positive: bool = False
    nullable: bool = False
    help: str = ""

    def rule(self) -> str:
        """The rule in words, for error messages."""
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        words = " or ".join("number" if k is float else k.__name__ for k in kinds)
        if self.positive:
            words += " > 0"
        if self.low is not None:
            words += f" >= {self.low}"
        if self.high is not None:
            words += f" <= {self.high}"
        if self.nullable:
            words += " or null"
        return words

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` (ints accepted for floats) or raise ConfigError."""
        if value is None and self.nullable:
            return None
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(key, value, self.rule())
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise ConfigError(key, value, self.rule())
        if self.choices is not None and value not in self.choices:
            raise ConfigError(key, value, self.rule())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(key, value, self.rule())
            if self.positive and value <= 0:
                raise ConfigError(key, value, self.rule())
            if self.low is not None and value < self.low:
                raise ConfigError(key, value, self.rule())
            if self.high is not None and value > self.high:
                raise ConfigError(key, value, self.rule())
        return value


def common_fields(experiments: tuple[str, ...]) -> dict[str, Field]:
    """Keys every experiment has."""
    return {
        "experiment": Field(REQUIRED, str, choices=experiments),
        "optimizer": Field(REQUIRED, str, choices=optim.NAMES),
        "seed": Field(REQUIRED, int, low=0),
        "model": Field(REQUIRED, str),
        "dataset": Field(REQUIRED, str),
        "granularity": Field("layer", str, choices=optim.GRANULARITIES),
        "optimizer_options": Field({}, dict, help="extra keyword options of trainers.optim.build"),
        "lr_d": Field(REQUIRED, float, positive=True),
        "lr_g": Field(REQUIRED, float, positive=True),
        "steps": Field(REQUIRED, int, low=1),
        "eval_every": Field(REQUIRED, int, low=1),
        "checkpoint_every": Field(REQUIRED, int, low=1, help="steps; rounded up to evaluations"),
        "checkpoint_at": Field(
            (),
            (list, tuple),
            help="steps also checkpointed, if evaluations (synchronous early stopping)",
        ),
        "device": Field("cpu", str, choices=("cpu", "cuda", "auto")),
        "threads": Field(None, int, low=1, nullable=True, help="torch CPU threads; null: default"),
    }


def resolve(
    config: Mapping[str, Any],
    fields: Mapping[str, Field],
    optimizer_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fill defaults and validate. Precedence: user config > optimizer defaults > field defaults."""
    if not isinstance(config, Mapping):
        raise ConfigError("<config>", config, "a JSON object")
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ConfigError(
            unknown[0], config[unknown[0]], "a known key: " + ", ".join(sorted(fields))
        )
    out: dict[str, Any] = {}
    for key, field in fields.items():
        if key in config:
            value = config[key]
            if field.kind is dict and optimizer_defaults and isinstance(value, Mapping):
                value = {**optimizer_defaults.get(key, {}), **value}  # user keys win
        elif optimizer_defaults and key in optimizer_defaults:
            value = optimizer_defaults[key]
        else:
            value = field.default
        if value is REQUIRED:
            raise ConfigError(key, REQUIRED, field.rule())
        out[key] = field.check(key, value)
    if "optimizer_options" in out:
        _check_optimizer_options(out)
    if "checkpoint_at" in out:
        _check_steps("checkpoint_at", out["checkpoint_at"])
    return out


def _check_steps(key: str, steps: list | tuple) -> None:
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(key, steps, "a list of integers >= 1 (steps)")


def _check_optimizer_options(cfg: dict[str, Any]) -> None:
    options = cfg["optimizer_options"]
    allowed = optim.options_of(cfg["optimizer"])
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"optimizer_options.{key}",
                options[key],
                f"an option of {cfg['optimizer']!r}: {', '.join(allowed) or 'none'}",
            )
    if cfg["optimizer"] == "graft":
        for key in ("magnitude", "direction"):
            if key not in options:
                raise ConfigError(f"optimizer_options.{key}", REQUIRED, "needed by 'graft'")
