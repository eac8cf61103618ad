"""GAN losses and the GD-regulariser against independent float64 computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from trainers.losses import minimax as losses
from trainers.models import mog


def logits(seed: int, n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=gen, dtype=torch.float64) * 3, torch.randn(
        n + 2, generator=gen, dtype=torch.float64
    ) * 3


def test_value_and_losses_match_their_definitions():
    real, fake = logits(0)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    value = d_real.log().mean() + (1 - d_fake).log().mean()
    torch.testing.assert_close(losses.minimax_value(real, fake), value)
    torch.testing.assert_close(losses.d_loss(real, fake), -value)
    torch.testing.assert_close(losses.g_loss_saturating(fake), (1 - d_fake).log().mean())
    torch.testing.assert_close(losses.g_loss_nonsaturating(fake), -d_fake.log().mean())


def test_losses_stay_finite_for_extreme_logits():
    real = torch.tensor([200.0, -200.0])
    fake = torch.tensor([200.0, -200.0])
    for v in (
        losses.minimax_value(real, fake),
        losses.g_loss_saturating(fake),
        losses.g_loss_nonsaturating(fake),
    ):
        assert math.isfinite(float(v))
    assert float(losses.g_loss_nonsaturating(torch.tensor([-200.0]))) == pytest.approx(200.0)


class Linear2(nn.Module):
    """G(z) = A z + c in R^2."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.randn(2, 3, generator=gen, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(2, generator=gen, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T + self.c


class LogisticD(nn.Module):
    """D(x) = sigmoid(w.x + b), plus a parameter V does not depend on (it adds 0)."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, generator=gen, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn((), generator=gen, dtype=torch.float64))
        self.unused = nn.Parameter(torch.ones(4, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b


def test_gd_regularizer_equals_hand_computed_gradient_norm():
    gen = torch.Generator().manual_seed(1)
    G, D = Linear2(gen), LogisticD(gen)
    x = torch.randn(11, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(13, 3, generator=gen, dtype=torch.float64)
    fake = G(z)
    value = losses.minimax_value(D(x), D(fake))
    eta = 0.7
    reg = losses.gd_regularizer(value, D, eta)
    # dV/dw and dV/db by hand: d log s(l)/dl = 1 - s(l), d log(1 - s(l))/dl = -s(l)
    with torch.no_grad():
        r = 1 - torch.sigmoid(x @ D.w + D.b)
        f = torch.sigmoid(fake @ D.w + D.b)
        grad_w = (r[:, None] * x).mean(0) - (f[:, None] * fake).mean(0)
        grad_b = r.mean() - f.mean()
        expected = eta * (grad_w.square().sum() + grad_b**2)
    torch.testing.assert_close(reg.detach(), expected)
    # the same through autograd without double backprop, on the mog networks
    Gm, Dm = (m.double() for m in mog.build(z_dim=5, hidden=6, seed=3))
    xm = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    vm = losses.minimax_value(Dm(xm), Dm(Gm(torch.randn(9, 5, generator=gen, dtype=torch.float64))))
    grads = torch.autograd.grad(vm, list(Dm.parameters()), retain_graph=True)
    norm2 = sum(float(g.square().sum()) for g in grads)
    assert float(losses.gd_regularizer(vm, Dm, 0.5).detach()) == pytest.approx(
        0.5 * norm2, rel=1e-12
    )
    assert float(losses.gd_regularizer(vm, list(Dm.parameters()), 2.0).detach()) == pytest.approx(
        2.0 * norm2, rel=1e-12
    )


def test_gd_regularizer_gradient_matches_finite_differences():
    """d/dtheta_G of (V + eta ||grad_D V||^2) in float64 against central differences."""
    G, D = (m.double() for m in mog.build(z_dim=4, hidden=5, seed=0))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64) * 2
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    names = [n for n, _ in G.named_parameters()]

    def objective(*params: torch.Tensor) -> torch.Tensor:
        fake = functional_call(G, dict(zip(names, params)), (z,))
        value = losses.minimax_value(D(x), D(fake))
        return value + losses.gd_regularizer(value, D, 0.5)

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in G.parameters())
    assert torch.autograd.gradcheck(objective, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    # the regulariser really contributes to G's gradient
    reg_only = torch.autograd.grad(objective(*inputs) - objective_value(G, D, x, z), inputs)
    assert sum(float(g.abs().sum()) for g in reg_only) > 1e-6


def objective_value(G: nn.Module, D: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return losses.minimax_value(D(x), D(G(z)))


def test_gd_regularizer_reaches_generator_only_through_double_backprop():
    G, D = mog.build(z_dim=4, hidden=5, seed=0)
    x, z = torch.randn(8, 2), torch.randn(8, 4)
    value = losses.minimax_value(D(x), D(G(z)))
    reg = losses.gd_regularizer(value, D, 1.0)
    assert reg.requires_grad
    g_grads = torch.autograd.grad(reg, list(G.parameters()))
    assert all(torch.isfinite(g).all() for g in g_grads)
    assert any(float(g.abs().max()) > 0 for g in g_grads)


def test_gd_regularizer_off_and_bad_eta():
    G, D = mog.build(z_dim=4, hidden=5, seed=0)
    value = losses.minimax_value(D(torch.randn(3, 2)), D(G(torch.randn(3, 4))))
    off = losses.gd_regularizer(value, D, 0.0)
    assert float(off) == 0.0 and not off.requires_grad
    with pytest.raises(ValueError, match="eta"):
        losses.gd_regularizer(value, D, -0.1)
    frozen = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="at least one parameter"):
        losses.squared_grad_norm(value, frozen)
