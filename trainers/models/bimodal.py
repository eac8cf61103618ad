"""The paper's Section 3 model: a linear generator and a cubic discriminator.

    G_V(z) = V^T z = sum_j z_j v_j                       (m_G neurons v_j in R^d)
    D(X)   = sigmoid(a * sum_i <w_i, X>^3 + b / sqrt(d))  (m_D neurons w_i, scalars a, b)

Where sqrt(d) divides: the extracted paper text reads "a sum <w_i,X>^3 + b sqrt d" with the
layout lost; we divide only the bias, b / sqrt(d) (as the prototype in REFERENCES did). At the
small initialisation the cubic term a sum <w_i, X>^3 is tiny (about 1e-8), so dividing the whole
logit by sqrt(d) would only make every gradient 10x smaller; scaling b by 1/sqrt(d)
keeps the bias a slow parameter (its gradient is at most 1/sqrt(d)) next to the directions W
that the theory is about.

Each player has one layer (a module): G's ``linear`` (weight V, shape (m_G, d)) and D's
``cubic`` (weight W, shape (m_D, d), with a and b), so a layer-wise optimizer normalises
(W, a, b) as one group, as the paper's single-layer nSGDA does. ``saturating_grads`` gives the
gradients of the saturating GAN loss by hand (tested equal to autograd's in float64): autograd
costs more than the arithmetic on tensors this small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class LinearLayer(nn.Module):
    """Rows v_j of V; output z @ V for latents z of shape (batch, m_G)."""

    def __init__(self, m_g: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(m_g, d))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight


class CubicLayer(nn.Module):
    """Logit a * sum_i <w_i, X>^3 + b / sqrt(d) for inputs X of shape (batch, d)."""

    def __init__(self, m_d: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(m_d, d))
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.bias_scale = 1.0 / math.sqrt(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.weight.T
        return self.a * h.pow(3).sum(1) + self.b * self.bias_scale


class Generator(nn.Module):
    """G_V(z) = V^T z."""

    def __init__(self, m_g: int, d: int) -> None:
        super().__init__()
        self.linear = LinearLayer(m_g, d)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


class Discriminator(nn.Module):
    """The logit of D (apply a sigmoid for the probability)."""

    def __init__(self, m_d: int, d: int) -> None:
        super().__init__()
        self.cubic = CubicLayer(m_d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cubic(x)


def build(
    d: int = 100,
    m_g: int = 10,
    m_d: int = 10,
    init_std: float = 0.01,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Generator, Discriminator]:
    """(G, D) with V, W, a ~ N(0, init_std^2) and b = 0, drawn from ``generator``."""
    G, D = Generator(m_g, d), Discriminator(m_d, d)
    with torch.no_grad():
        for p in (G.linear.weight, D.cubic.weight, D.cubic.a):
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * init_std)
    return G.to(dtype), D.to(dtype)


@dataclass
class StepGrads:
    """Losses and gradients of one simultaneous step (loss_d = -V, loss_g = V's fake term)."""

    loss_d: torch.Tensor
    loss_g: torch.Tensor
    grad_v: torch.Tensor
    grad_w: torch.Tensor
    grad_a: torch.Tensor
    grad_b: torch.Tensor


def saturating_grads(G: Generator, D: Discriminator, x: torch.Tensor, z: torch.Tensor) -> StepGrads:
    """Gradients of the saturating GAN loss, batch-averaged, written out by hand.

    D minimises loss_d = -log D(x) - log(1 - D(G(z))); G minimises loss_g = log(1 - D(G(z))).
    With s = a sum_i h_i^3 + b/sqrt(d), h = W X: ds/dW = 3a h^2 X^T, ds/da = sum h^3,
    ds/db = 1/sqrt(d), ds/dX = 3a W^T h^2.
    """
    V, layer = G.linear.weight, D.cubic
    W, a, b = layer.weight, layer.a, layer.b
    n = x.shape[0]
    sign, weights = _signs(n, x.dtype)
    both = torch.cat([x, z @ V])  # (2n, d): real rows, then fake rows
    h = both @ W.T
    h2 = h * h
    h3sum = (h2 * h).sum(1)
    # t = (-s_real, s_fake): loss_d = sum softplus(t) / n and dloss_d/dt = sigmoid(t) / n.
    t = torch.add(a * h3sum, b, alpha=layer.bias_scale) * sign
    sig = torch.sigmoid(t)
    c = sig * sign  # n * dloss_d/ds
    ca3 = c * (3 / n) * a
    grad_w = (h2.T * ca3) @ both
    grad_a = c @ h3sum / n
    grad_b = c.sum() * (layer.bias_scale / n)
    # loss_g = -softplus(s_fake): dloss_g/ds_fake = -sigmoid(s_fake), and ds/dX = 3a W^T h^2.
    grad_y = (h2[n:] * ca3[n:, None]) @ W.neg()
    grad_v = z.T @ grad_y
    loss_d, loss_g = (weights @ F.softplus(t)).unbind()
    return StepGrads(loss_d, loss_g, grad_v, grad_w, grad_a, grad_b)


_SIGNS: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _signs(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(-1 on real rows, +1 on fake rows) and the (2, 2n) weights giving (loss_d, loss_g)."""
    key = (n, dtype)
    if key not in _SIGNS:
        sign = torch.ones(2 * n, dtype=dtype)
        sign[:n] = -1.0
        weights = torch.zeros(2, 2 * n, dtype=dtype)
        weights[0] = 1.0 / n
        weights[1, n:] = -1.0 / n
        _SIGNS[key] = sign, weights
    return _SIGNS[key]
