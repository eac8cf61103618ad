"""DCGAN at 32 px (Radford et al. 2016, reduced to 32 px).

Layout (``ngf = ndf = 64``, ``z_dim = 100``), no conv biases, weights N(0, 0.02), BN gamma
N(1, 0.02):

    G: z -> ConvT 4x4 (z -> 512) 4x4 -> BN, ReLU -> ConvT 4x4/2 (512 -> 256) 8x8 -> BN, ReLU
         -> ConvT 4x4/2 (256 -> 128) 16x16 -> BN, ReLU -> ConvT 4x4/2 (128 -> 3) 32x32 -> tanh
    D: x -> Conv 4x4/2 (3 -> 128) 16x16 -> LReLU(0.2) -> Conv 4x4/2 (128 -> 256) 8x8 -> BN, LReLU
         -> Conv 4x4/2 (256 -> 512) 4x4 -> BN, LReLU -> Conv 4x4 (512 -> 1) -> logit

D's input layer has no batch norm. D returns logits of shape (N,).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

RESOLUTION = 32


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, 3, 32, 32) in [-1, 1]."""

    def __init__(self, z_dim: int = 100, ngf: int = 64) -> None:
        super().__init__()
        self.z_dim = z_dim
        c = (8 * ngf, 4 * ngf, 2 * ngf)
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ("deconv1", nn.ConvTranspose2d(z_dim, c[0], 4, 1, 0, bias=False)),
                    ("bn1", nn.BatchNorm2d(c[0])),
                    ("relu1", nn.ReLU()),
                    ("deconv2", nn.ConvTranspose2d(c[0], c[1], 4, 2, 1, bias=False)),
                    ("bn2", nn.BatchNorm2d(c[1])),
                    ("relu2", nn.ReLU()),
                    ("deconv3", nn.ConvTranspose2d(c[1], c[2], 4, 2, 1, bias=False)),
                    ("bn3", nn.BatchNorm2d(c[2])),
                    ("relu3", nn.ReLU()),
                    ("deconv4", nn.ConvTranspose2d(c[2], 3, 4, 2, 1, bias=False)),
                    ("tanh", nn.Tanh()),
                ]
            )
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


class Discriminator(nn.Module):
    """images (N, 3, 32, 32) -> logits (N,)."""

    def __init__(self, ndf: int = 64) -> None:
        super().__init__()
        c = (2 * ndf, 4 * ndf, 8 * ndf)
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, c[0], 4, 2, 1, bias=False)),
                    ("lrelu1", nn.LeakyReLU(0.2)),
                    ("conv2", nn.Conv2d(c[0], c[1], 4, 2, 1, bias=False)),
                    ("bn2", nn.BatchNorm2d(c[1])),
                    ("lrelu2", nn.LeakyReLU(0.2)),
                    ("conv3", nn.Conv2d(c[1], c[2], 4, 2, 1, bias=False)),
                    ("bn3", nn.BatchNorm2d(c[2])),
                    ("lrelu3", nn.LeakyReLU(0.2)),
                    ("conv4", nn.Conv2d(c[2], 1, 4, 1, 0, bias=False)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Radford et al.'s init: conv weights N(0, 0.02), BN gamma N(1, 0.02), BN beta 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=generator) * 0.02)
                m.bias.zero_()


def build(
    z_dim: int = 100,
    ngf: int = 64,
    ndf: int = 64,
    resolution: int = RESOLUTION,
    width: float = 1.0,
    seed: int = 0,
) -> tuple[Generator, Discriminator]:
    """(G, D) initialised from ``seed``; only 32 px is defined; ``width`` scales ngf and ndf."""
    if resolution != RESOLUTION:
        raise ValueError(f"dcgan resolution={resolution!r} is not allowed; allowed: 32")
    gen = torch.Generator().manual_seed(seed)
    G = Generator(z_dim, max(1, round(ngf * width)))
    D = Discriminator(max(1, round(ndf * width)))
    init_weights(G, gen)
    init_weights(D, gen)
    return G, D
