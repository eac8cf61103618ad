"""ResNet WGAN-GP on CIFAR-10 (32 px) or STL-10 (48 px) (``experiment: "wgangp"``).

Gulrajani et al.'s recipe: each generator step takes ``n_dis`` = 5 critic steps on
E D(G(z)) - E D(x) + lambda * GP (lambda 10, one interpolation coefficient per sample), then one
generator step on -E D(G(z)) with a batch ``g_batch_factor`` = 2 times the critic's (64 / 128).
Step sizes decay linearly to 0 over ``lr_decay_steps`` = 100k generator steps; the paper trains
45k steps (2880 kimg at batch 64), so the decay stops at 55% of the initial lr.

Every optimizer starts from Adam's lr 2e-4 (betas (0, 0.9) where Adam state exists); sgda and
nsgda step sizes are placeholders to be swept on a log grid, as in the paper.
``model: "digits"`` (``trainers.models.digits``, 16 px, one channel) trains the same losses on
the ``digits`` data set (``sweeps/digits_grafting.py``).
Reports ``loss_d`` (the critic's total loss), ``loss_gp``, ``wasserstein`` (E D(x) - E D(G(z)))
and ``loss_g``, plus the FID columns of ``trainers.experiments.image_gan``.
"""

from __future__ import annotations

from typing import Any

import torch

from trainers import distributed, models
from trainers.config import Field
from trainers.experiments.image_gan import (
    ImageGAN,
    ImageGANSpec,
    check_image_config,
    image_fields,
    optimizer_table,
    resolution_of,
    set_grads,
)
from trainers.losses import wgan
from trainers.models import digits, wgangp_resnet

# model -> the resolutions it takes
MODEL_RESOLUTIONS = {"wgangp_resnet": wgangp_resnet.RESOLUTIONS, "digits": digits.RESOLUTIONS}


class WGANGP(ImageGAN):
    """The ResNet generator and critic trained with the WGAN-GP losses."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        G, D = models.build(
            cfg["model"],
            resolution=resolution_of(cfg),
            z_dim=cfg["z_dim"],
            width=cfg["width"],
            seed=cfg["seed"],
        )
        super().__init__(cfg, G, D)

    def critic_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One critic step; returns (total loss, gradient penalty, Wasserstein estimate)."""
        G, D, n = self.fast["G"], self.fast["D"], self.batch_size
        real = self.real(n)
        with torch.no_grad():
            fake = G(self.latents(n))
        draw = lambda m: torch.rand(m, generator=self.rng)  # noqa: E731
        alpha = distributed.sample_rows(draw, n).to(self.device)
        wasserstein = -wgan.wgan_critic_loss(D(real), D(fake))
        eager_D = self.players["D"]  # differentiated twice: never compiled
        gp = wgan.gradient_penalty(eager_D, real, fake, alpha, self.cfg["gp_weight"])
        loss = gp - wasserstein
        set_grads(eager_D, loss)
        self.optimizers["D"].step()
        return loss.detach(), gp.detach(), wasserstein.detach()

    def train_step(self) -> dict[str, torch.Tensor]:
        self.apply_lr()
        parts = [self.critic_step() for _ in range(self.cfg["n_dis"])]
        loss_d, gp, w = (torch.stack(x).mean() for x in zip(*parts))
        G, D = self.fast["G"], self.fast["D"]
        loss_g = wgan.wgan_generator_loss(
            D(G(self.latents(self.cfg["g_batch_factor"] * self.batch_size)))
        )
        set_grads(self.players["G"], loss_g)
        self.optimizers["G"].step()
        self.g_steps += 1
        return {"loss_d": loss_d, "loss_g": loss_g.detach(), "loss_gp": gp, "wasserstein": w}


class WGANGPSpec(ImageGANSpec):
    """``experiment: "wgangp"``."""

    name = "wgangp"
    fields: dict[str, Field] = {
        **image_fields(
            "wgangp_resnet",
            z_dim=128,
            steps=45_000,
            lr_decay="linear",
            n_dis=5,
            decay_steps=100_000,
        ),
        "model": Field("wgangp_resnet", str, choices=tuple(MODEL_RESOLUTIONS)),
        "gp_weight": Field(wgan.LAMBDA_GP, float, low=0.0, help="lambda of the gradient penalty"),
        "g_batch_factor": Field(2, int, low=1, help="G's batch = this x batch_size"),
    }
    defaults = optimizer_table(betas=(0.0, 0.9))
    resolutions = wgangp_resnet.RESOLUTIONS

    def check_config(self, cfg: dict[str, Any]) -> None:
        check_image_config(cfg, MODEL_RESOLUTIONS[cfg["model"]])

    def build(self, cfg: dict[str, Any]) -> WGANGP:
        return WGANGP(cfg)
