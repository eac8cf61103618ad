"""Did the generator learn both modes, their average, or neither? (the paper's Thm 3.1/3.2)

Every output G(z) of the latent's support gets a label by its cosine with u1, u2 and the average
direction ubar = (u1 + u2) / |u1 + u2|: "u1" or "u2" when its cosine with that mode exceeds
``threshold`` (0.9; for gamma <= 0.5 no vector exceeds 0.9 with two of u1, u2, ubar, since
cos(u_l, ubar) = sqrt((1 + gamma) / 2) <= 0.87), else "average" when its cosine with ubar does,
else "none". A label's mass is the probability Pr_z[label of G(z)] over the latent distribution.

The issue's rule ("both" when neurons align with u1 and with u2 separately) is refined as the
prototype's data demanded: a run whose G has one neuron per mode and the rest still near the
initialisation is not a success, so

- "both":    mass(u1) >= mode_mass, mass(u2) >= mode_mass and mass(u1) + mass(u2) >= covered;
- "average": otherwise, when the average is what G learned: mass(average) > 0 and it is at
             least mass(u1) + mass(u2) (outputs still near initialisation are ignored);
- "none":    otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VERDICTS: tuple[str, ...] = ("both", "average", "none")
LABELS: tuple[str, ...] = ("none", "u1", "u2", "average")


@dataclass(frozen=True)
class Rule:
    """Thresholds of the verdict (see the module docstring)."""

    threshold: float = 0.9
    mode_mass: float = 0.2
    covered: float = 0.8


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit norm (zero rows stay zero)."""
    n = x.norm(dim=-1, keepdim=True)
    return x / torch.where(n > 0, n, torch.ones_like(n))


def cosines(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """cos(x_k, u_l) for rows of x (K, d) and modes u (L, d): shape (K, L)."""
    return unit(x.double()) @ unit(u.double()).T


def labels(outputs: torch.Tensor, u: torch.Tensor, threshold: float) -> torch.Tensor:
    """Index into LABELS for every output row (K, d) given the modes u (2, d)."""
    directions = torch.cat([u, (u[0] + u[1])[None]])
    cos = cosines(outputs, directions)
    best_mode = 1 + cos[:, :2].argmax(1)
    at_mode = cos[:, :2].max(1).values > threshold
    at_avg = cos[:, 2] > threshold
    none = torch.zeros_like(best_mode)
    return torch.where(at_mode, best_mode, torch.where(at_avg, torch.full_like(none, 3), none))


def masses(
    outputs: torch.Tensor, probs: torch.Tensor, u: torch.Tensor, threshold: float
) -> dict[str, float]:
    """Probability mass of each label in LABELS over outputs with probabilities ``probs``."""
    lab = labels(outputs, u, threshold)
    mass = torch.zeros(len(LABELS), dtype=torch.float64).index_add_(0, lab, probs.double())
    return dict(zip(LABELS, mass.tolist()))


def decide(mass: dict[str, float], rule: Rule = Rule()) -> str:
    """The verdict from label masses (see the module docstring)."""
    m1, m2, avg = mass["u1"], mass["u2"], mass["average"]
    eps = 1e-12  # masses are sums of floats: compare with a little slack
    if m1 >= rule.mode_mass - eps and m2 >= rule.mode_mass - eps and m1 + m2 >= rule.covered - eps:
        return "both"
    if avg > 0 and avg >= m1 + m2:
        return "average"
    return "none"


def verdict(
    outputs: torch.Tensor, probs: torch.Tensor, u: torch.Tensor, rule: Rule = Rule()
) -> tuple[str, dict[str, float]]:
    """(verdict, label masses) of a generator whose outputs over the latent support are given."""
    mass = masses(outputs, probs, u, rule.threshold)
    return decide(mass, rule), mass
