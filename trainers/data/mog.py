"""Mixtures of isotropic 2-D Gaussians with equal weights, sampled from a torch.Generator.

- ``ring8``: 8 modes evenly spaced on a circle of radius 2, std 0.02 (Nagarajan & Kolter).
- ``grid25``: a 5 x 5 grid at {-4, -2, 0, 2, 4}^2, std 0.05 (the grid of VEEGAN / PacGAN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DATASETS: tuple[str, ...] = ("ring8", "grid25")


@dataclass(frozen=True)
class Mixture:
    """Equal-weight mixture of Gaussians with ``centres`` (K x 2) and a common ``std``."""

    centres: torch.Tensor
    std: float

    @property
    def num_modes(self) -> int:
        return self.centres.shape[0]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` points (n x 2, float32): a uniform mode each, plus Gaussian noise."""
        idx = torch.randint(self.num_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.centres[idx] + self.std * noise


def ring(modes: int = 8, radius: float = 2.0, std: float = 0.02) -> Mixture:
    """``modes`` Gaussians evenly spaced on a circle, the first at angle 0."""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    centres = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return Mixture(centres.float(), std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Mixture:
    """``side`` x ``side`` Gaussians on a grid centred at the origin."""
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return Mixture(torch.stack([xs.flatten(), ys.flatten()], dim=1), std)


def build(name: str) -> Mixture:
    """The mixture called ``name`` (one of ``DATASETS``)."""
    if name == "ring8":
        return ring()
    if name == "grid25":
        return grid()
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
