"""StyleGAN2 at 128 px (``experiment: "stylegan2"``), the NVlabs ``--cfg=stylegan2`` recipe.

One training step (32 images) runs the phases in NVlabs order, each on its own latents:
G main (non-saturating loss, style mixing 0.9), G reg (path length, every ``pl_interval`` = 4
steps, weight 2 x 4, half batch, running mean decay 0.01), D main (logistic loss), D reg (R1
gamma/2 ||grad D(x)||^2 with gamma 0.1024 every ``r1_interval`` = 16 steps, x 16). Both phases of
a player share one optimizer; with lazy regularisation its lr is multiplied by I/(I+1) and, where
the optimizer has Adam state, its betas raised to I/(I+1) (G: 0.8, D: 16/17), for every optimizer
of the registry. Gradients are nan_to_num'd to +-1e5 before each step.

Evaluation uses the EMA generator (half-life ``ema_kimg``, by default batch * 10 / 32 kimg as in
NVlabs, so 10 at batch 32; ramp-up 0.05 of the images seen before the step). R1 uses D main's
real images (NVlabs draws one real batch per iteration); path length differentiates through the
mapping as NVlabs does, but its running mean enters the penalty detached (NVlabs keeps the lerp
in the graph; with decay 0.01 the difference is tiny, and it keeps data-parallel runs exact).
Reports ``loss_d``, ``loss_g``, the last ``loss_r1``, ``loss_pl``, ``pl_mean`` (and ``augment_p``).

Augmentation (off by default): ``augment: "ada"`` puts every image D sees (real and fake, in
all four phases; R1's gradient is taken at the un-augmented image) through ``trainers.data.augment``
with probability p, adapted every ``ada_interval`` D steps towards E[sign D(real)] =
``ada_target`` (0.6) at a speed of ``ada_kimg`` (500) kimg from 0 to 1; ``"fixed"`` keeps
``augment_p``.

Scale profiles: ``optimizer_options.scales`` may be one profile for both players, keyed
``"G/<layer>"`` and ``"D/<layer>"`` (a file written by ``python -m trainers profile``) or a mapping of that
form; each player's optimizer gets its own part.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from trainers import distributed, models, optim
from trainers.config import Field
from trainers.data import augment
from trainers.experiments.image_gan import (
    ImageGAN,
    ImageGANSpec,
    compiled,
    image_fields,
    optimizer_table,
    resolution_of,
)
from trainers.losses.minimax import g_loss_nonsaturating
from trainers.models.stylegan2 import Generator

RESOLUTIONS = (8, 16, 32, 64, 128, 256)
NAN_CLAMP = 1e5

FIELDS: dict[str, Field] = {
    **image_fields(
        "stylegan2", z_dim=512, steps=81_250, lr_decay="none", n_dis=1, decay_steps=None
    ),
    "dataset": Field(
        "ffhq",
        str,
        choices=("ffhq", "lsun_church", "folder", "generated"),
        help="ffhq/lsun_church: $GANSWEEP_FFHQ / $GANSWEEP_LSUN_CHURCH or data_path",
    ),
    "resolution": Field(128, int, help="image size (a power of two)"),
    "batch_size": Field(32, int, low=1),
    "cbase": Field(16384, int, low=1, help="channels min(cbase / res, cmax)"),
    "cmax": Field(512, int, low=1),
    "map_depth": Field(2, int, low=1),
    "r1_gamma": Field(0.1024, float, low=0.0),
    "r1_interval": Field(16, int, low=0, help="lazy R1 every this many D steps; 0: off"),
    "pl_weight": Field(2.0, float, low=0.0),
    "pl_interval": Field(4, int, low=0, help="lazy path length every this many G steps; 0: off"),
    "pl_batch_shrink": Field(2, int, low=1),
    "pl_decay": Field(0.01, float, low=0.0, high=1.0),
    "style_mixing": Field(0.9, float, low=0.0, high=1.0),
    "ema_kimg": Field(
        None, float, low=0.0, nullable=True, help="EMA half-life in kimg; null: batch * 10 / 32"
    ),
    "ema_rampup": Field(0.05, float, low=0.0, nullable=True),
    "augment": Field(
        "none",
        str,
        choices=("none", "ada", "fixed"),
        help="augment D's inputs (trainers.data.augment, 'bgc'): 'ada' adapts p, 'fixed' keeps it",
    ),
    "augment_p": Field(0.0, float, low=0.0, high=1.0, help="p for 'fixed'; the start for 'ada'"),
    "ada_target": Field(0.6, float, low=-1.0, high=1.0, help="target of E[sign D(real)]"),
    "ada_kimg": Field(500.0, float, positive=True, help="p can move from 0 to 1 in this many kimg"),
    "ada_interval": Field(4, int, low=1, help="adjust p every this many D steps"),
}

_DEFAULTS = optimizer_table(betas=(0.0, 0.99), lr=0.0025)  # Adam family: eps 1e-8 too
for _name in ("adam", "ada-nsgda", "adadir"):
    _DEFAULTS[_name]["optimizer_options"] = {"betas": [0.0, 0.99], "eps": 1e-8}


# -- pieces with one job each (tested on their own) ---------------------------------------------


def lazy_ratio(interval: int) -> float:
    """I / (I + 1) for a regulariser applied every I steps; 1 when it is off."""
    return interval / (interval + 1) if interval > 0 else 1.0


def lazy_options(name: str, lr: float, options: dict[str, Any], interval: int):
    """(lr, options) corrected for lazy regularisation: lr x ratio, betas ** ratio where the
    optimizer takes betas (Adam's defaults (0, 0.99) when not given)."""
    ratio = lazy_ratio(interval)
    options = dict(options)
    rules = {r: options[r] for r in optim.ROLES if r in options}  # a graft's two rules
    if "betas" in optim.options_of(name, **rules):
        b1, b2 = options.get("betas", (0.0, 0.99))
        options["betas"] = (float(b1) ** ratio, float(b2) ** ratio)
    return lr * ratio, options


def ema_beta(batch: int, ema_kimg: float, images_seen: int, rampup: float | None) -> float:
    """0.5 ** (batch / ema_nimg), ema_nimg = min(ema_kimg * 1000, rampup * images_seen)."""
    nimg = ema_kimg * 1000
    if rampup is not None:
        nimg = min(nimg, images_seen * rampup)
    return 0.5 ** (batch / max(nimg, 1e-8))


def player_scales(scales: Any, player: str) -> Any:
    """The part of a two-player profile (``"G/<layer>"`` keys) for ``player``; other values
    (one number, a single-player mapping) unchanged."""
    if isinstance(scales, (str, os.PathLike)):
        scales = optim.load_scale_profile(scales)
    if isinstance(scales, Mapping) and any("/" in k for k in scales):
        prefix = f"{player}/"
        return {k[len(prefix) :]: v for k, v in scales.items() if k.startswith(prefix)}
    return scales


def r1_penalty(
    D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, gamma: float
) -> torch.Tensor:
    """gamma / 2 * E ||d D(x) / dx||^2 (differentiable in D's parameters; ``D`` may augment
    its input first, as with ADA: the gradient is taken at the un-augmented image)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().sum([1, 2, 3]).mean() * (gamma / 2)


def path_lengths(G: Generator, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample ||J_w^T y||, y = noise / sqrt(H W), averaged over the w's (differentiable)."""
    img = G.synthesis(ws)
    y = noise / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt()


class StyleGAN2(ImageGAN):
    """StyleGAN2 players and the lazy-regularised training phases; FID of the EMA generator."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        G, D = models.build(
            "stylegan2",
            resolution=resolution_of(cfg),
            z_dim=cfg["z_dim"],
            w_dim=cfg["z_dim"],
            map_depth=cfg["map_depth"],
            cbase=cfg["cbase"],
            cmax=cfg["cmax"],
            seed=cfg["seed"],
            noise=distributed.sample_noise,  # this rank's rows of the global batch's noise
            batch_mean=distributed.batch_mean,  # w_avg follows the global batch
        )
        self.intervals = {"G": cfg["pl_interval"], "D": cfg["r1_interval"]}
        super().__init__(cfg, G, D)
        self.base_lr = {k: o.param_groups[0]["lr"] for k, o in self.optimizers.items()}
        # the main phases' synthesis (compiled with ``compile``); path length runs it eagerly
        self.synthesis = compiled(self.players["G"].synthesis, cfg["compile"])
        self.G_ema = copy.deepcopy(self.players["G"]).eval().requires_grad_(False)
        self._ema_params = list(self.G_ema.parameters())
        self._ema_buffers = list(self.G_ema.buffers())
        self.pl_mean = torch.zeros([], device=self.device)
        self.last = {k: torch.zeros([]) for k in ("loss_r1", "loss_pl")}
        self.ada: augment.AdaController | None = None
        if cfg["augment"] != "none":
            self.ada = augment.AdaController(
                target=cfg["ada_target"],
                speed_kimg=cfg["ada_kimg"],
                interval=cfg["ada_interval"],
                batch_size=distributed.global_rows(self.batch_size),
                p=cfg["augment_p"],
            )

    def _optimizer(self, player: str, module: nn.Module, lr: float) -> optim.Graft:
        c = self.cfg
        lr, options = lazy_options(
            c["optimizer"], lr, c["optimizer_options"], self.intervals[player]
        )
        if "scales" in options:
            options["scales"] = player_scales(options["scales"], player)
        return optim.build(c["optimizer"], module, lr, c["granularity"], **options)

    # -- phases ------------------------------------------------------------------------------------

    def mixed_ws(self, n: int, update_w_avg: bool = False) -> torch.Tensor:
        """ws of fresh latents; with probability ``style_mixing`` the layers from a cutoff in
        [1, num_ws) on take the w of a second latent."""
        G = self.players["G"]
        ws = G.ws(self.latents(n), update_w_avg=update_w_avg)
        if self.cfg["style_mixing"] > 0:
            cutoff = int(torch.randint(1, G.num_ws, [], generator=self.rng))
            if float(torch.rand([], generator=self.rng)) < self.cfg["style_mixing"]:
                other = G.ws(self.latents(n))
                ws = torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
        return ws

    def run_D(self, images: torch.Tensor, eager: bool = False) -> torch.Tensor:
        """D's logits of ``images``, augmented first when ``augment`` is on (every image gets
        its own transforms, drawn from the sampling stream whatever p is). ``eager``: never the
        compiled D (R1 differentiates it twice)."""
        D = self.players["D"] if eager else self.fast["D"]
        if self.ada is None:
            return D(images)
        k = augment.RANDOM_PER_SAMPLE
        draw = lambda m: torch.rand(m, k, generator=self.rng)  # noqa: E731
        u = distributed.sample_rows(draw, images.shape[0]).to(self.device)
        return D(augment.augment(images, self.ada.p, u))

    def _step(self, player: str, loss: torch.Tensor) -> None:
        module = self.players[player]
        params = [p for p in module.parameters() if p.requires_grad]
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            g = torch.zeros_like(p) if g is None else g
            p.grad = g.nan_to_num_(nan=0.0, posinf=NAN_CLAMP, neginf=-NAN_CLAMP)
        self.optimizers[player].step()

    def _fires(self, player: str) -> bool:
        interval = self.intervals[player]
        return interval > 0 and self.g_steps % interval == 0

    def g_main(self) -> torch.Tensor:
        loss = g_loss_nonsaturating(self.run_D(self.synthesis(self.mixed_ws(self.batch_size))))
        self._step("G", loss)
        return loss.detach()

    def g_reg(self) -> torch.Tensor:
        c, G = self.cfg, self.players["G"]
        n = max(1, self.batch_size // c["pl_batch_shrink"])
        ws = self.mixed_ws(n)  # not detached: the mapping learns from the penalty too
        res = G.resolution
        draw = lambda m: torch.randn(m, 3, res, res, generator=self.rng)  # noqa: E731
        noise = distributed.sample_rows(draw, n).to(self.device)
        lengths = path_lengths(G, ws, noise)
        batch_mean = distributed.mean_tensor(lengths.mean().detach())  # global batch's mean
        self.pl_mean = self.pl_mean.lerp(batch_mean, c["pl_decay"])
        penalty = (lengths - self.pl_mean).square().mean() * c["pl_weight"]
        self._step("G", penalty * self.intervals["G"])
        return penalty.detach()

    def d_main(self) -> torch.Tensor:
        with torch.no_grad():
            fake = self.synthesis(self.mixed_ws(self.batch_size, update_w_avg=True))
        real = self._real = self.real(self.batch_size)  # D reg of this iteration uses it too
        fake_logits, real_logits = self.run_D(fake), self.run_D(real)
        loss = nn.functional.softplus(fake_logits).mean()
        loss = loss + nn.functional.softplus(-real_logits).mean()
        self._step("D", loss)
        if self.cfg["augment"] == "ada":
            self.ada.accumulate(real_logits)
            if self.ada.due:  # every rank moves p alike: by the signs of all ranks' logits
                self.ada.update(distributed.sum_tensor(self.ada.stats()))
        return loss.detach()

    def d_reg(self) -> torch.Tensor:
        run_D = lambda x: self.run_D(x, eager=True)  # noqa: E731
        penalty = r1_penalty(run_D, self._real, self.cfg["r1_gamma"])
        self._step("D", penalty * self.intervals["D"])
        return penalty.detach()

    def update_ema(self) -> None:
        c, batch = self.cfg, distributed.global_rows(self.batch_size)  # images per step
        ema_kimg = c["ema_kimg"] if c["ema_kimg"] is not None else batch * 10 / 32
        beta = ema_beta(batch, ema_kimg, self.g_steps * batch, c["ema_rampup"])
        G = self.players["G"]
        with torch.no_grad():
            torch._foreach_lerp_(self._ema_params, [p.detach() for p in G.parameters()], 1 - beta)
            torch._foreach_copy_(self._ema_buffers, list(G.buffers()))

    def train_step(self) -> dict[str, torch.Tensor]:
        loss_g = self.g_main()
        if self._fires("G") and self.cfg["pl_weight"] > 0:
            self.last["loss_pl"] = self.g_reg()
        loss_d = self.d_main()
        if self._fires("D") and self.cfg["r1_gamma"] > 0:
            self.last["loss_r1"] = self.d_reg()
        self.update_ema()
        self.g_steps += 1
        out = {"loss_d": loss_d, "loss_g": loss_g, **self.last, "pl_mean": self.pl_mean.clone()}
        if self.ada is not None:
            out["augment_p"] = torch.tensor(self.ada.p)
        return out

    # -- evaluation and state ----------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images of the EMA generator (random noise from the global RNG, as in NVlabs)."""
        return self.G_ema(z.to(self.device))

    def extra_state(self) -> dict[str, Any]:
        return {
            **super().extra_state(),
            "G_ema": self.G_ema.state_dict(),
            "pl_mean": self.pl_mean.cpu(),
            "last": {k: v.cpu() for k, v in self.last.items()},
            "ada": self.ada.state_dict() if self.ada is not None else None,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.G_ema.load_state_dict(state["G_ema"])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.last = dict(state["last"])
        if self.ada is not None and state.get("ada") is not None:
            self.ada.load_state_dict(state["ada"])


class StyleGAN2Spec(ImageGANSpec):
    """``experiment: "stylegan2"``."""

    name = "stylegan2"
    fields = FIELDS
    defaults = _DEFAULTS
    resolutions = RESOLUTIONS

    def build(self, cfg: dict[str, Any]) -> StyleGAN2:
        return StyleGAN2(cfg)
