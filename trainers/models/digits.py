"""A small DCGAN-style generator and critic for 16 px one-channel images (the ``digits`` set).

Layout (``c = round(32 * width)``; ``z_dim`` 32 by default):

    G: z -> Linear -> 4c x 4x4 -> BN, ReLU -> ConvT 4x4/2 (4c -> 2c) 8x8 -> BN, ReLU
         -> ConvT 4x4/2 (2c -> c) 16x16 -> BN, ReLU -> Conv 3x3 (c -> 1) -> tanh
    D: x -> Conv 3x3 (1 -> c) 16x16 -> LReLU(0.2) -> Conv 4x4/2 (c -> 2c) 8x8 -> LReLU
         -> Conv 4x4/2 (2c -> 4c) 4x4 -> LReLU -> Linear (16 * 4c -> 1)

The critic has no normalisation (WGAN-GP's gradient penalty is per sample). Init: conv and
linear weights N(0, 0.02), biases 0, BN gamma N(1, 0.02). The critic returns shape (N,).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

RESOLUTIONS = (16,)
CHANNELS = 1


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, 1, 16, 16) in [-1, 1]."""

    def __init__(self, z_dim: int = 32, c: int = 32) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ("fc", nn.Linear(z_dim, 4 * c * 16)),
                    ("unflatten", nn.Unflatten(1, (4 * c, 4, 4))),
                    ("bn0", nn.BatchNorm2d(4 * c)),
                    ("relu0", nn.ReLU()),
                    ("deconv1", nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1)),
                    ("bn1", nn.BatchNorm2d(2 * c)),
                    ("relu1", nn.ReLU()),
                    ("deconv2", nn.ConvTranspose2d(2 * c, c, 4, 2, 1)),
                    ("bn2", nn.BatchNorm2d(c)),
                    ("relu2", nn.ReLU()),
                    ("conv_out", nn.Conv2d(c, CHANNELS, 3, 1, 1)),
                    ("tanh", nn.Tanh()),
                ]
            )
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim))


class Critic(nn.Module):
    """images (N, 1, 16, 16) -> scores (N,)."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(CHANNELS, c, 3, 1, 1)),
                    ("lrelu1", nn.LeakyReLU(0.2)),
                    ("conv2", nn.Conv2d(c, 2 * c, 4, 2, 1)),
                    ("lrelu2", nn.LeakyReLU(0.2)),
                    ("conv3", nn.Conv2d(2 * c, 4 * c, 4, 2, 1)),
                    ("lrelu3", nn.LeakyReLU(0.2)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(4 * c * 16, 1)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Weights N(0, 0.02), biases 0; BN gamma N(1, 0.02), beta 0."""
    for m in module.modules():
        with torch.no_grad():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)
                m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=generator) * 0.02)
                m.bias.zero_()


def build(
    resolution: int = 16, z_dim: int = 32, width: float = 1.0, seed: int = 0
) -> tuple[Generator, Critic]:
    """(G, D) initialised from ``seed``; only 16 px; ``width`` scales the 32 base channels."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"digits resolution={resolution!r} is not allowed; allowed: 16")
    gen = torch.Generator().manual_seed(seed)
    c = max(1, round(32 * width))
    G, D = Generator(z_dim, c), Critic(c)
    init_weights(G, gen)
    init_weights(D, gen)
    return G, D
