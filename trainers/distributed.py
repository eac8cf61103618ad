"""Data-parallel training of one trial over several processes (torch.distributed, any backend).

Every rank builds the same experiment (same seed, parameters broadcast from rank 0) and keeps
the same random streams; each draw of a batch is made for the global batch on every rank, and a
rank keeps the rows r, r + W, r + 2W, ... of it (``sample_rows``; networks that draw their own
noise or average over their batch are given ``sample_noise`` and ``batch_mean`` by the
experiment that builds them). Each optimizer averages the
gradients of all ranks (one flattened all-reduce per step) before stepping, so normalised
optimizers normalise the all-reduced gradient. So W workers at batch B / W train exactly (up to
float rounding of the averages) what one process trains at batch B, and a resumed run is exact
on every rank (the checkpoint holds the one stream). Strided rows also keep StyleGAN2's
minibatch-stddev groups (rows i, i + N/G, ...) the same as in one process, and batch norm
normalises with the global batch's statistics (``GlobalBatchNorm2d``). Knows nothing of Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from trainers.config import ConfigError

if TYPE_CHECKING:
    from trainers.experiments.base import Experiment


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


def global_rows(n: int) -> int:
    """The global batch of which this rank's batch of ``n`` is a share: ``n * W``."""
    return n * world()[1]


def local_rows(t: torch.Tensor) -> torch.Tensor:
    """This rank's rows ``rank::W`` of a global batch ``t`` (all of it in one process)."""
    rank, size = world()
    return t if size == 1 else t[rank::size]


def sample_rows(draw: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
    """This rank's ``n`` rows of a global draw made alike on every rank (same stream):
    ``local_rows(draw(global_rows(n)))``; in one process simply ``draw(n)``."""
    return local_rows(draw(global_rows(n)))


def sample_noise(n: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """This rank's ``n`` rows of N(0, 1) noise (per-row ``shape``) drawn for the global batch
    from ``device``'s global generator: the ``noise`` of networks that draw their own."""
    return sample_rows(lambda m: torch.randn(m, *shape, device=device), n)


def batch_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean over the global batch of the rows of ``t`` (this rank's share of it)."""
    return mean_tensor(t.mean(0))


def sum_tensor(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (all-reduced on its device); ``t`` in one process."""
    if world()[1] == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def mean_tensor(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the ranks (all-reduced on its device); ``t`` in one process."""
    size = world()[1]
    return t if size == 1 else sum_tensor(t).div_(size)


def gather_rows(x: np.ndarray) -> np.ndarray:
    """Every rank's ``local_rows`` share of a global batch, back in the global order (on every
    rank); ``x`` in one process."""
    rank, size = world()
    if size == 1:
        return x
    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, x)
    out = np.empty((sum(len(p) for p in parts), *x.shape[1:]), dtype=x.dtype)
    for r, part in enumerate(parts):
        out[r::size] = part
    return out


def sum_arrays(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Each array summed over the ranks (float64, one all-reduce); ``arrays`` in one process."""
    if world()[1] == 1:
        return arrays
    flat = torch.from_numpy(np.concatenate([np.ravel(a).astype(np.float64) for a in arrays]))
    flat = sum_tensor(flat.to(_collective_device())).cpu().numpy()
    out, offset = [], 0
    for a in arrays:
        out.append(flat[offset : offset + np.size(a)].reshape(np.shape(a)))
        offset += np.size(a)
    return out


def _collective_device() -> str:
    """Where collectives take their tensors: the current GPU under NCCL, else the CPU."""
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks whose gradient is the sum over the ranks of the gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are the global batch's: each rank's per-channel
    count, sum and sum of squares are all-reduced (differentiably, in float64), so W ranks at
    B/W normalise, and update running statistics, as one process at B. Any backend: gloo on the
    CPU too, unlike torch's SyncBatchNorm. Outside training, or in one process, plain BN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)
        c, dims = x.shape[1], (0, 2, 3)
        count = x.new_full([1], x.numel() / c, dtype=torch.float64)
        local = torch.cat(
            [x.sum(dims, dtype=torch.float64), x.square().sum(dims, dtype=torch.float64), count]
        )
        total = _AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                self.running_mean.lerp_(mean.to(x.dtype), m)
                self.running_var.lerp_((var * n / (n - 1)).to(x.dtype), m)
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        y = (x - mean.to(x.dtype)[None, :, None, None]) * scale[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def global_batch_norm(module: nn.Module) -> None:
    """Turn every BatchNorm2d of ``module`` into a GlobalBatchNorm2d in place (the same
    parameters, buffers and state-dict keys)."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            if m.momentum is None:
                raise ValueError("GlobalBatchNorm2d needs a momentum (cumulative averages: None)")
            m.__class__ = GlobalBatchNorm2d


def prepare(exp: Experiment) -> None:
    """Make ``exp`` (built, and restored if resuming) one rank of a data-parallel run: rank 0's
    parameters and buffers on every rank, batch norm over the global batch, gradients averaged
    before every optimizer step.
    A no-op in a single process. (The streams need nothing: every rank has the same.)"""
    _, size = world()
    if size == 1:
        return
    with torch.no_grad():
        for player in exp.players.values():
            for t in list(player.parameters()) + list(player.buffers()):
                dist.broadcast(t.data, src=0)
            global_batch_norm(player)
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
    (sums,) = sum_arrays([np.array([values[k] for k in keys], dtype=np.float64)])
    return {k: float(v) / size for k, v in zip(keys, sums)}
