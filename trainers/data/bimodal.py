"""The paper's bimodal data (Assumption 1) and sparse binary latents (Assumption 2).

Modes: u1 = e1 and u2 = gamma e1 + sqrt(1 - gamma^2) e2, unit vectors with <u1, u2> = gamma.
(Any orthonormal pair would do: the initialisation is isotropic, so the basis is no choice.)
A data point is u1 or u2 with probability 1/2 each. A latent z in {0,1}^{m_G} has exactly one
non-zero entry, uniform over the m_G positions, except with probability ``p_two`` where it has
two (a uniform pair of distinct positions), so Pr[z_j = 1] = Theta(1/m_G).
"""

from __future__ import annotations

import math

import torch


def modes(d: int, gamma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The two unit modes as rows of a (2, d) tensor."""
    u = torch.zeros(2, d, dtype=torch.float64)
    u[0, 0] = 1.0
    u[1, 0] = gamma
    u[1, 1] = math.sqrt(1.0 - gamma * gamma)
    return u.to(dtype)


class Sampler:
    """Draws (x, z) batches from ``rng``, generated ``block`` samples at a time.

    Generating a block with a few vectorised calls is much cheaper than a few calls per batch
    of one; the unused rest of the block is state (``state_dict``), so a resumed run draws
    exactly the samples the uninterrupted run would have.
    """

    def __init__(
        self, u: torch.Tensor, m_g: int, p_two: float, rng: torch.Generator, block: int = 1024
    ) -> None:
        self.u, self.m_g, self.p_two, self.rng, self.block = u, m_g, p_two, rng, block
        self.x = torch.empty(0, u.shape[1], dtype=u.dtype)
        self.z = torch.empty(0, m_g, dtype=u.dtype)
        self.pos = 0

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x of shape (batch, d) and z of shape (batch, m_G)."""
        if self.pos + batch > self.x.shape[0]:
            self.x, self.z = self.draw(max(batch, self.block))
            self.pos = 0
        i = self.pos
        self.pos += batch
        return self.x[i : i + batch], self.z[i : i + batch]

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh samples (x, z), from one random call."""
        r = torch.rand(n, 4, generator=self.rng, dtype=torch.float64)
        x = self.u.index_select(0, (r[:, 0] < 0.5).long())
        first = (r[:, 1] * self.m_g).long().clamp_max(self.m_g - 1)
        z = torch.zeros(n, self.m_g, dtype=self.u.dtype)
        z.scatter_(1, first[:, None], 1.0)
        if self.p_two > 0:
            # a second, distinct position: first + 1 + uniform{0..m_G-2}, modulo m_G
            other = (r[:, 3] * (self.m_g - 1)).long().clamp_max(self.m_g - 2)
            second = (first + 1 + other) % self.m_g
            two = (r[:, 2] < self.p_two).to(self.u.dtype)
            z.scatter_add_(1, second[:, None], two[:, None])
        return x, z

    def state_dict(self) -> dict[str, object]:
        """The unused samples of the current block."""
        return {"x": self.x[self.pos :].clone(), "z": self.z[self.pos :].clone()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore ``state_dict``."""
        self.x, self.z, self.pos = state["x"], state["z"], 0


def latent_support(
    m_g: int, p_two: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every latent value with its probability: (K, m_G) one- and two-hot rows and (K,) probs."""
    one = torch.eye(m_g, dtype=dtype)
    probs = torch.full((m_g,), (1.0 - p_two) / m_g, dtype=torch.float64)
    if p_two <= 0 or m_g < 2:
        return one, probs
    i, j = torch.triu_indices(m_g, m_g, offset=1)
    two = one[i] + one[j]
    pair = torch.full((two.shape[0],), p_two / two.shape[0], dtype=torch.float64)
    return torch.cat([one, two]), torch.cat([probs, pair])
