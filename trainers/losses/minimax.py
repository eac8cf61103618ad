"""GAN losses as small functions of discriminator logits, plus gradient regularisers.

Conventions: ``real`` and ``fake`` are D's logits (pre-sigmoid) on real and generated samples,
so D(x) = sigmoid(logit). Every function returns a 0-dim tensor to be *minimised* by its player.

- ``minimax_value``: V = E log D(x) + E log(1 - D(G(z))), the value of the standard GAN game.
- ``d_loss``: -V (D maximises V).
- ``g_loss_saturating``: E log(1 - D(G(z))), the part of V that depends on G.
- ``g_loss_nonsaturating``: -E log D(G(z)).
- ``gd_regularizer``: eta * ||grad_D V||^2 (Nagarajan & Kolter 2017), differentiable in G.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

Params = nn.Module | Iterable[torch.Tensor]


def minimax_value(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """V = mean log sigmoid(real) + mean log(1 - sigmoid(fake)), computed stably."""
    return -F.softplus(-real).mean() - F.softplus(fake).mean()


def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss -V (binary cross-entropy with real = 1, fake = 0)."""
    return -minimax_value(real, fake)


def g_loss_saturating(fake: torch.Tensor) -> torch.Tensor:
    """The generator's minimax loss E log(1 - D(G(z))) (its gradient vanishes when D wins)."""
    return -F.softplus(fake).mean()


def g_loss_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss -E log D(G(z))."""
    return F.softplus(-fake).mean()


G_LOSSES = {"saturating": g_loss_saturating, "nonsaturating": g_loss_nonsaturating}


def trainable(params: Params) -> list[torch.Tensor]:
    """The tensors of ``params`` (a module or an iterable) that require a gradient."""
    tensors = params.parameters() if isinstance(params, nn.Module) else params
    return [p for p in tensors if p.requires_grad]


def squared_grad_norm(value: torch.Tensor, params: Params) -> torch.Tensor:
    """||d value / d params||^2 summed over all tensors, kept differentiable (double backprop).

    Parameters that ``value`` does not depend on contribute 0.
    """
    tensors = trainable(params)
    if not tensors:
        raise ValueError("squared_grad_norm needs at least one parameter that requires a gradient")
    grads = torch.autograd.grad(value, tensors, create_graph=True, allow_unused=True)
    terms = [g.square().sum() for g in grads if g is not None]
    return torch.stack(terms).sum() if terms else value.new_zeros(())


def gd_regularizer(value: torch.Tensor, discriminator: Params, eta: float) -> torch.Tensor:
    """Nagarajan & Kolter's term eta * ||grad_D V||^2 over all of D's parameters together.

    ``value`` is the game's value V (e.g. ``minimax_value``) computed with a graph that reaches
    both D's parameters and G's; the result is differentiable in G's parameters, so adding it to
    G's loss gives G the gradient grad_G V + eta * grad_G ||grad_D V||^2. ``eta = 0`` returns a
    constant 0 without differentiating.
    """
    if eta < 0:
        raise ValueError(f"eta={eta!r} is not allowed: it must be >= 0")
    if eta == 0:
        return value.new_zeros(())
    return eta * squared_grad_norm(value, discriminator)
