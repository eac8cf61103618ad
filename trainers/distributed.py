"""Data-parallel training of one trial over several processes (torch.distributed, any backend).

Every rank builds the same experiment (same seed, parameters broadcast from rank 0), samples
its own share of the global batch from its own stream, and each optimizer averages the
gradients of all ranks (one flattened all-reduce per step) before stepping, so normalised
optimizers normalise the all-reduced gradient. Knows nothing of Ray.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from trainers.config import ConfigError
from trainers.experiments.base import Experiment

RANK_SEED_STRIDE = 7_919_773  # rank r samples from seed + r * this (rank 0: the plain stream)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_config(cfg: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The config one rank trains: ``batch_size`` is the global batch split over the ranks."""
    if world_size == 1:
        return cfg
    batch = cfg.get("batch_size", 1)
    if batch % world_size:
        raise ConfigError(
            "batch_size", batch, f"a multiple of the number of workers ({world_size})"
        )
    return {**cfg, "batch_size": batch // world_size}


def prepare(exp: Experiment, seed: int, step: int = 0) -> None:
    """Make ``exp`` (built, and restored if resuming at ``step``) one rank of a data-parallel
    run; a no-op in a single process.

    Rank 0 keeps its stream (a checkpoint holds rank 0's state); rank r > 0 samples from
    ``seed + r * RANK_SEED_STRIDE + step``, so a resumed run is exact on rank 0 only.
    """
    rank, size = world()
    if size == 1:
        return
    with torch.no_grad():
        for player in exp.players.values():
            for t in list(player.parameters()) + list(player.buffers()):
                dist.broadcast(t.data, src=0)
    if rank > 0:
        exp.rng.manual_seed(seed + rank * RANK_SEED_STRIDE + step)
    for opt in exp.optimizers.values():
        opt.register_step_pre_hook(_average_gradients)


def _average_gradients(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Replace every gradient of ``opt`` by its mean over the ranks (one all-reduce)."""
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over the ranks (every rank gets the same dict, same order)."""
    _, size = world()
    if size == 1 or not values:
        return values
    keys = sorted(values)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= size
    return dict(zip(keys, t.tolist()))
