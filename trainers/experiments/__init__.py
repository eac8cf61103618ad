"""Experiments by name: each is an ``ExperimentSpec`` subclass and one line of ``EXPERIMENTS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.config import REQUIRED, ConfigError, common_fields, resolve
from trainers.experiments.base import Experiment
from trainers.experiments.bimodal import BimodalSpec
from trainers.experiments.dcgan import DCGANSpec
from trainers.experiments.mog import MixtureOfGaussiansSpec
from trainers.experiments.spec import ExperimentSpec
from trainers.experiments.stylegan2 import StyleGAN2Spec
from trainers.experiments.wgangp import WGANGPSpec

EXPERIMENTS: dict[str, type[ExperimentSpec]] = {
    spec.name: spec
    for spec in (BimodalSpec, MixtureOfGaussiansSpec, DCGANSpec, WGANGPSpec, StyleGAN2Spec)
}


def spec(name: str) -> ExperimentSpec:
    """The spec of experiment ``name`` (ConfigError naming the known ones otherwise)."""
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ConfigError("experiment", name, "one of " + ", ".join(map(repr, EXPERIMENTS)))
    return EXPERIMENTS[name]()


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config`` and fill in the experiment's defaults (ConfigError on bad input)."""
    if not isinstance(config, Mapping):
        raise ConfigError("<config>", config, "a JSON object")
    kind = spec(config.get("experiment", REQUIRED))
    fields = {**common_fields(tuple(EXPERIMENTS)), **kind.fields}
    optimizer = config.get("optimizer")
    if optimizer is not None:
        fields["optimizer"].check("optimizer", optimizer)
    defaults = kind.optimizer_defaults(optimizer) if optimizer is not None else {}
    cfg = resolve(config, fields, defaults)
    kind.check_config(cfg)
    return cfg


def check_data(cfg: Mapping[str, Any]) -> None:
    """Raise ``DataMissingError`` (a FileNotFoundError naming the path and how to prepare it)
    when the data a resolved config trains on are not where this machine would read them;
    nothing is loaded. Experiments that generate their data always pass."""
    spec(cfg["experiment"]).check_data(cfg)


def build(cfg: Mapping[str, Any]) -> Experiment:
    """Build the experiment of a resolved config (models initialised from ``cfg['seed']``).

    What only building can check (a scale profile against the model's layers, an optimizer
    option's value) raises ``ConfigError`` naming ``optimizer_options``."""
    try:
        return spec(cfg["experiment"]).build(dict(cfg))
    except ConfigError:
        raise
    except ValueError as e:
        if not _from_optimizer(e):
            raise
        raise OptionsError(cfg.get("optimizer_options"), str(e)) from None


class OptionsError(ConfigError):
    """``optimizer_options`` that ``trainers.optim`` refused when building (exit code 2)."""

    def __init__(self, options: Any, reason: str) -> None:
        ValueError.__init__(self, f"config key 'optimizer_options': {reason}")
        self.key, self.value, self.allowed = "optimizer_options", options, reason


def _from_optimizer(error: ValueError) -> bool:
    """Whether ``error`` was raised inside ``trainers.optim`` (the options' checks)."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith("trainers.optim"):
            return True
        tb = tb.tb_next
    return False


__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentSpec",
    "build",
    "check_data",
    "resolve_config",
    "spec",
]
