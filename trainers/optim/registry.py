"""Build the study's optimizers by name: ``build("nsgda", model, lr=1e-3)``."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from trainers.optim.graft import NSGDA, SGDA, AdaDir, Adam, AdaNSGDA, Graft, check_lr, check_scale
from trainers.optim.groups import GRANULARITIES, named_param_groups
from trainers.optim.profile import load_scale_profile

OPTIMIZERS: dict[str, type[Graft]] = {
    "sgda": SGDA,
    "adam": Adam,
    "ada-nsgda": AdaNSGDA,
    "adadir": AdaDir,
    "nsgda": NSGDA,
    "graft": Graft,
}
NAMES: tuple[str, ...] = tuple(OPTIMIZERS)

Scales = float | Mapping[str, float] | str | os.PathLike


def options_of(name: str) -> tuple[str, ...]:
    """The keyword options optimizer ``name`` accepts (``scales`` instead of ``scale`` for nsgda)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    opts = tuple(p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY)
    return tuple("scales" if o == "scale" else o for o in opts)


def build(
    name: str, model: nn.Module, lr: float, granularity: str = "layer", **options: Any
) -> Graft:
    """Return optimizer ``name`` over ``model`` with one named param group per layer (or global).

    ``options`` are the optimizer's keyword arguments (see ``options_of``); for ``nsgda``,
    ``scales`` is one number, a ``{layer: scale}`` mapping, or the path of a profile file.
    """
    cls = _lookup(name)
    check_lr(lr)
    if granularity not in GRANULARITIES:
        allowed = ", ".join(GRANULARITIES)
        raise ValueError(f"granularity={granularity!r} is not allowed; allowed: {allowed}")
    allowed = options_of(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"option(s) {', '.join(unknown)} not allowed for optimizer {name!r}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    groups = named_param_groups(model, granularity)
    if "scales" in options:
        _assign_scales(groups, options.pop("scales"))
    return cls(groups, lr, **options)


def _lookup(name: str) -> type[Graft]:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(NAMES)}")
    return OPTIMIZERS[name]


def _assign_scales(groups: list[dict[str, Any]], scales: Scales) -> None:
    if isinstance(scales, (str, os.PathLike)):
        scales = load_scale_profile(scales)
    if isinstance(scales, Mapping):
        names = {g["name"] for g in groups}
        missing = sorted(names - set(scales))
        extra = sorted(set(scales) - names)
        if missing or extra:
            raise ValueError(
                "scale profile does not match the model's groups: "
                f"missing {missing or 'none'}, unknown {extra or 'none'} "
                "(a per-layer profile needs granularity='layer' on the same architecture)"
            )
        for g in groups:
            check_scale(g["name"], scales[g["name"]])
            g["scale"] = float(scales[g["name"]])
    else:
        for g in groups:
            check_scale(g["name"], scales)
            g["scale"] = float(scales)
