"""Split a network's parameters into named groups: per layer, per tensor, or one global group."""

from __future__ import annotations

from typing import Any

from torch import nn

GRANULARITIES = ("layer", "global", "tensor")
ROOT = "root"


def named_param_groups(model: nn.Module, granularity: str = "layer") -> list[dict[str, Any]]:
    """Return ``[{"name": ..., "params": [...]}, ...]`` for the trainable parameters of ``model``.

    ``layer``: one group per module that owns parameters directly (a layer's weight and bias
    together), named by the module's path (``root`` for the model's own parameters).
    ``global``: one group named ``global``. ``tensor``: one group per parameter tensor.
    Shared parameters appear once, in the first module that owns them.
    """
    if granularity not in GRANULARITIES:
        allowed = ", ".join(GRANULARITIES)
        raise ValueError(f"granularity={granularity!r} is not allowed; allowed: {allowed}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seen: set[int] = set()
    groups: list[dict[str, Any]] = []
    for path, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            layer = path or ROOT
            if granularity == "tensor":
                groups.append({"name": f"{path}.{pname}" if path else pname, "params": [p]})
            elif groups and groups[-1]["name"] == layer:
                groups[-1]["params"].append(p)
            else:
                groups.append({"name": layer, "params": [p]})
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    names = [g["name"] for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"a submodule is named {ROOT!r}, which names the model's own parameters")
    if granularity == "global":
        groups = [{"name": "global", "params": [p for g in groups for p in g["params"]]}]
    return groups
