"""Generators and discriminators by name: ``build(name, **options) -> (generator, discriminator)``.

Every layer is a module, so ``trainers.optim.build(..., granularity="layer")`` finds the layers
by walking the network.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

MODELS: dict[str, str] = {
    "bimodal": "trainers.models.bimodal",
    "mog": "trainers.models.mog",
    "dcgan": "trainers.models.dcgan",
    "wgangp_resnet": "trainers.models.wgangp_resnet",
    "stylegan2": "trainers.models.stylegan2",
    "digits": "trainers.models.digits",
}


def build(name: str, **options: Any) -> tuple[nn.Module, nn.Module]:
    """Return (generator, discriminator) of model ``name`` built with ``options``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name]).build(**options)
