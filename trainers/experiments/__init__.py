"""Experiments by name: each module defines FIELDS, optimizer_defaults(name) and build(cfg)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from trainers.config import REQUIRED, ConfigError, common_fields, resolve
from trainers.experiments.base import Experiment

EXPERIMENTS: tuple[str, ...] = ("bimodal", "mog", "dcgan", "wgangp", "stylegan2")


def module(name: str) -> ModuleType:
    """The module implementing experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ConfigError("experiment", name, "one of " + ", ".join(map(repr, EXPERIMENTS)))
    return importlib.import_module(f"trainers.experiments.{name}")


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config`` and fill in the experiment's defaults (ConfigError on bad input)."""
    if not isinstance(config, Mapping):
        raise ConfigError("<config>", config, "a JSON object")
    mod = module(config.get("experiment", REQUIRED))
    fields = {**common_fields(EXPERIMENTS), **mod.FIELDS}
    optimizer = config.get("optimizer")
    if optimizer is not None:
        fields["optimizer"].check("optimizer", optimizer)
    defaults = mod.optimizer_defaults(optimizer) if optimizer is not None else {}
    cfg = resolve(config, fields, defaults)
    check = getattr(mod, "check_config", None)
    if check is not None:
        check(cfg)
    return cfg


def check_data(cfg: Mapping[str, Any]) -> None:
    """Raise ``DataMissingError`` (a FileNotFoundError naming the path and how to prepare it)
    when the data a resolved config trains on are not where this machine would read them;
    nothing is loaded. Experiments that generate their data always pass."""
    check = getattr(module(cfg["experiment"]), "check_data", None)
    if check is not None:
        check(cfg)


def build(cfg: Mapping[str, Any]) -> Experiment:
    """Build the experiment of a resolved config (models initialised from ``cfg['seed']``)."""
    return module(cfg["experiment"]).build(dict(cfg))


__all__ = ["EXPERIMENTS", "Experiment", "build", "check_data", "module", "resolve_config"]
