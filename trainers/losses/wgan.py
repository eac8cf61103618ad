"""WGAN-GP losses (Gulrajani et al. 2017): the critic's Wasserstein loss and gradient penalty.

Conventions as in ``trainers.losses.minimax``: every function returns a 0-dim tensor to be *minimised*
by its player; ``real`` and ``fake`` are the critic's scores.

- ``wgan_critic_loss``: E D(G(z)) - E D(x).
- ``wgan_generator_loss``: -E D(G(z)).
- ``gradient_penalty``: lambda * E (||grad_x D(x_hat)||_2 - 1)^2, x_hat = alpha x + (1 - alpha) x~,
  one alpha ~ U(0, 1) per sample; differentiable in D's parameters (double backprop).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LAMBDA_GP = 10.0


def wgan_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The critic's loss E D(fake) - E D(real)."""
    return fake.mean() - real.mean()


def wgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss -E D(fake)."""
    return -fake.mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """alpha * real + (1 - alpha) * fake with one alpha per sample (shape (N,))."""
    a = alpha.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    return a * real + (1 - a) * fake


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor,
    weight: float = LAMBDA_GP,
) -> torch.Tensor:
    """weight * mean over samples of (||d critic(x_hat) / d x_hat||_2 - 1)^2.

    ``fake`` is detached; ``alpha`` (shape (N,), values in [0, 1]) is drawn by the caller so
    the random stream stays in the experiment's hands.
    """
    x_hat = interpolate(real.detach(), fake.detach(), alpha).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    return weight * (norms - 1).square().mean()
