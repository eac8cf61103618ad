"""DCGAN on CIFAR-10 at 32 px (``experiment: "dcgan"``), the paper's Fig. 1.

Non-saturating loss; one D step then one G step per iteration, each on its own batch of 64;
Adam(2e-4, betas (0.5, 0.999)) as in Radford et al.; 100 epochs of CIFAR-10 at batch 64
(78,125 steps); constant step sizes. Fig. 1 varies lr_d / lr_g on a log grid.
Reports ``loss_d`` (-V) and ``loss_g``, plus the FID columns of ``trainers.experiments.image_gan``.
"""

from __future__ import annotations

from typing import Any

import torch

from trainers import models
from trainers.config import Field
from trainers.experiments.image_gan import (
    ImageGAN,
    ImageGANSpec,
    image_fields,
    optimizer_table,
    set_grads,
)
from trainers.losses import minimax


class DCGAN(ImageGAN):
    """Radford-style G and D (``trainers.models.dcgan``) on the non-saturating loss."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        G, D = models.build(cfg["model"], z_dim=cfg["z_dim"], width=cfg["width"], seed=cfg["seed"])
        super().__init__(cfg, G, D)

    def d_step(self) -> torch.Tensor:
        """One discriminator step on a fresh real and fake batch; returns -V."""
        G, D, n = self.fast["G"], self.fast["D"], self.batch_size
        real = self.real(n)
        with torch.no_grad():
            fake = G(self.latents(n))
        loss = minimax.d_loss(D(real), D(fake))
        set_grads(self.players["D"], loss)
        self.optimizers["D"].step()
        return loss.detach()

    def train_step(self) -> dict[str, torch.Tensor]:
        self.apply_lr()
        loss_d = torch.stack([self.d_step() for _ in range(self.cfg["n_dis"])]).mean()
        G, D = self.fast["G"], self.fast["D"]
        loss_g = minimax.g_loss_nonsaturating(D(G(self.latents(self.batch_size))))
        set_grads(self.players["G"], loss_g)
        self.optimizers["G"].step()
        self.g_steps += 1
        return {"loss_d": loss_d, "loss_g": loss_g.detach()}


class DCGANSpec(ImageGANSpec):
    """``experiment: "dcgan"``."""

    name = "dcgan"
    fields: dict[str, Field] = image_fields(
        "dcgan", z_dim=100, steps=78_125, lr_decay="none", n_dis=1, decay_steps=None
    )
    defaults = optimizer_table(betas=(0.5, 0.999))
    resolutions = (32,)

    def build(self, cfg: dict[str, Any]) -> DCGAN:
        return DCGAN(cfg)
