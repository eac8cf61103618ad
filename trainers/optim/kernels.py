"""Batched tensor kernels: per-group L2 norms as segment sums on the device, in-place sqrt."""

from __future__ import annotations

import torch


def onehot(gidx: list[int], groups: int, dtype: torch.dtype) -> torch.Tensor:
    """Matrix (groups, tensors) with a 1 where tensor t belongs to group g."""
    out = torch.zeros(groups, len(gidx), dtype=dtype)
    out[gidx, list(range(len(gidx)))] = 1.0
    return out


def group_norms(
    tensors: list[torch.Tensor], onehot: torch.Tensor, factor: torch.Tensor | None = None
) -> torch.Tensor:
    """L2 norm per group of ``factor_t * tensors[t]``; ``onehot`` maps tensors to groups."""
    sq = torch.stack(torch._foreach_norm(tensors)).to(onehot.dtype).square()
    if factor is not None:
        sq = sq * factor.square()
    return (onehot @ sq).sqrt()


def sqrt_into(out: list[torch.Tensor], tensors: list[torch.Tensor]) -> None:
    """out[t] = sqrt(tensors[t]) without allocating (on the CPU one fused pass per tensor)."""
    if out and out[0].device.type == "cpu":
        for o, x in zip(out, tensors):
            torch.sqrt(x, out=o)
    else:
        torch._foreach_copy_(out, tensors)
        torch._foreach_sqrt_(out)
