"""What an update rule is: its options, its state, and its unit-lr step for a batch of groups.

A rule is a frozen dataclass whose fields are its options. Those named in ``hyper`` are kept in
every param group (so they can differ per group, follow torch's ``param_groups`` idiom and are
checkpointed with it); the others (e.g. Adam's ``form``) fix the rule's structure. ``unit``
updates the rule's per-parameter state and returns its step at learning rate 1; ``Graft``
turns that into the parameter update. A rule never touches the parameters.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class Slot:
    """Where a rule keeps its group options and per-parameter state inside one optimizer.

    ``role`` ("magnitude" or "direction") owns a scratch workspace. With ``prefixed``, the
    rule's group keys read ``"<role>.<key>"`` and its state lives in the sub-dict
    ``state[p][role]`` (so two rules with the same key names can share an optimizer);
    otherwise the keys are the bare names.
    """

    role: str = "direction"
    prefixed: bool = False

    def key(self, name: str) -> str:
        """The param-group key of option ``name``."""
        return f"{self.role}.{name}" if self.prefixed else name

    def state(self, param_state: dict[str, Any]) -> dict[str, Any]:
        """The rule's state dict for one parameter (``param_state`` is ``optimizer.state[p]``)."""
        return param_state.setdefault(self.role, {}) if self.prefixed else param_state


@dataclass
class Batch:
    """The tensors of one step: parameters with a gradient, their gradients and group index."""

    params: list[torch.Tensor]
    grads: list[torch.Tensor]
    gidx: list[int]
    groups: list[dict[str, Any]]
    state: Mapping[torch.Tensor, dict[str, Any]]
    workspace: Callable[[str], list[torch.Tensor]]
    """One persistent scratch tensor per parameter for a role (no allocation per step)."""
    vector: Callable[[str], torch.Tensor]
    """The value of a group key for every group, as a device tensor (cached)."""

    def buckets(self, key: Callable[[int, dict[str, Any]], Hashable]) -> dict[Hashable, list[int]]:
        """Tensor indices grouped by ``key(t, group of t)``, e.g. by equal hyperparameters."""
        out: dict[Hashable, list[int]] = defaultdict(list)
        for t, i in enumerate(self.gidx):
            out[key(t, self.groups[i])].append(t)
        return out

    def states(self, slot: Slot, ts: list[int]) -> list[dict[str, Any]]:
        """The rule's state dict of each tensor in ``ts``."""
        return [slot.state(self.state[self.params[t]]) for t in ts]


@dataclass
class Unit:
    """A rule's step at lr 1: ``factor[t] * tensors[t]`` per tensor (no factor: 1), or, for a
    magnitude-only rule, just the per-group ``norms``. ``tensors`` may be the gradients, state
    or workspace tensors; they are read before the next step."""

    tensors: list[torch.Tensor] | None = None
    factor: list[float] | None = None
    norms: torch.Tensor | None = None


class Rule:
    """Base of the update rules (subclasses: frozen dataclasses, one field per option)."""

    hyper: ClassVar[tuple[str, ...]] = ()
    """Fields kept per param group."""
    state_keys: ClassVar[tuple[str, ...]] = ()
    """Keys of the per-parameter state it keeps."""
    aliases: ClassVar[Mapping[str, str]] = {}
    """Field -> option name of ``build`` where they differ (e.g. Adam's form: ``adam_form``)."""
    reports: ClassVar[str | None] = None
    """The diagnostics column its group norm fills, if any."""
    magnitude_only: ClassVar[bool] = False
    """A rule with a norm but no direction (the constant magnitude)."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options ``build`` takes for this rule."""
        return tuple(cls.aliases.get(f.name, f.name) for f in dataclasses.fields(cls))

    @classmethod
    def from_options(cls, **options: Any) -> Rule:
        """The rule from ``build`` options (names as in ``option_names``)."""
        fields = {v: k for k, v in cls.aliases.items()}
        return cls(**{fields.get(k, k): v for k, v in options.items()})

    def group_defaults(self, slot: Slot) -> dict[str, Any]:
        """The ``hyper`` options as param-group defaults."""
        return {slot.key(k): getattr(self, k) for k in self.hyper}

    def check_group(self, name: str, group: dict[str, Any], slot: Slot) -> None:
        """Raise ValueError if a group's options are not allowed (called when it is added)."""

    def unit(self, batch: Batch, slot: Slot) -> Unit:
        """Update the state of every tensor of ``batch``; return the step at lr 1."""
        raise NotImplementedError
