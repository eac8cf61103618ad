"""What an experiment is before it is built: its config keys, defaults, checks and builder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from trainers.config import Field
from trainers.experiments.base import Experiment


class ExperimentSpec:
    """One kind of experiment (``experiment: <name>`` in a config).

    Subclasses set ``name``, ``reports`` and ``fields`` (the keys beyond ``config.common_fields``) and
    implement ``build``; the defaults of the other methods accept everything.
    """

    name: ClassVar[str]
    fields: ClassVar[Mapping[str, Field]]
    # the task metrics every final report holds (what a sweep's objective may be made of)
    reports: ClassVar[tuple[str, ...]] = ()

    def optimizer_defaults(self, optimizer: str) -> dict[str, Any]:
        """Config values that depend on the optimizer (step sizes, its options)."""
        return {}

    def check_config(self, cfg: dict[str, Any]) -> None:
        """Cross-key checks of a resolved config (ConfigError); may fill derived keys."""

    def check_data(self, cfg: Mapping[str, Any]) -> None:
        """DataMissingError when the data of a resolved config are absent (nothing loaded)."""

    def build(self, cfg: dict[str, Any]) -> Experiment:
        """The experiment of a resolved config (models initialised from ``cfg['seed']``)."""
        raise NotImplementedError
