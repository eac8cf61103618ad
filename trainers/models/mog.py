"""Nagarajan & Kolter's toy networks for the mixture of Gaussians.

G: z (256-d Gaussian) -> Linear 128 -> ReLU -> Linear 128 -> ReLU -> Linear 2.
D: x / 4 -> Linear 128 -> ReLU -> Linear 1 (a logit).
Weights orthogonal with gain 0.8, biases 0. Every layer is its own module, so the optimizers'
``layer`` granularity sees G as fc1, fc2, out and D as fc1, out.
"""

from __future__ import annotations

import torch
from torch import nn


def _init(layer: nn.Linear, gain: float, generator: torch.Generator | None) -> nn.Linear:
    with torch.no_grad():
        nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
        layer.bias.zero_()
    return layer


class Generator(nn.Module):
    """Latent ``z_dim`` -> two ReLU layers of ``hidden`` units -> 2-D point."""

    def __init__(
        self, z_dim: int, hidden: int, gain: float, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.fc1 = _init(nn.Linear(z_dim, hidden), gain, generator)
        self.fc2 = _init(nn.Linear(hidden, hidden), gain, generator)
        self.out = _init(nn.Linear(hidden, 2), gain, generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(z)))))


class Discriminator(nn.Module):
    """2-D point times ``input_scale`` -> one ReLU layer of ``hidden`` units -> logit."""

    def __init__(
        self, hidden: int, gain: float, input_scale: float, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.fc1 = _init(nn.Linear(2, hidden), gain, generator)
        self.out = _init(nn.Linear(hidden, 1), gain, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc1(x * self.input_scale))).squeeze(-1)


def build(
    z_dim: int = 256,
    hidden: int = 128,
    init_gain: float = 0.8,
    input_scale: float = 0.25,
    seed: int | None = None,
) -> tuple[Generator, Discriminator]:
    """(G, D) of the toy; ``seed`` makes the initialisation independent of the global RNG."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return (
        Generator(z_dim, hidden, init_gain, gen),
        Discriminator(hidden, init_gain, input_scale, gen),
    )
