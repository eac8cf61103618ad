"""Mixture of Gaussians with Nagarajan & Kolter's gradient regulariser (``experiment: "mog"``).

The game is the saturating minimax one: D maximises V = E log D(x) + E log(1 - D(G(z))), G
minimises V + gd_reg * ||grad_D V||^2 (the norm over all of D's parameters, differentiated
through: double backprop). ``gd_reg = 0`` (the default) is the plain GAN; the regulariser is a
variant a config or a sweep cell names explicitly (``"gd_reg": 0.5``, N&K's eta); any optimizer of ``trainers.optim``
may drive either player.

Updates (``updates``): every iteration draws one real and one latent batch. ``alternating``
(default, as in N&K's script) takes D's step on them, then G's step on the same batch against
the updated D. ``simultaneous`` computes both players' gradients at the same point, then steps
both (the setting of N&K's analysis).

Reports per evaluation: ``modes_covered``, ``modes_total``, ``hq_fraction``, ``mode_kl`` (see
``trainers.metrics.modes``), measured on ``eval_samples`` samples from a latent batch fixed by
the seed, and ``loss_d`` (-V), ``loss_g`` (G's loss without the regulariser), ``loss_gd_reg``.
The final checkpoint's ``samples.npz`` holds ``points`` (the first 512 of the last evaluation's
samples, float32 N x 2), ``centres`` (K x 2) and ``std`` of the mixture.
"""

from __future__ import annotations

from typing import Any

import torch

from trainers import distributed, models, optim
from trainers.config import Field
from trainers.data import mog as data
from trainers.experiments.base import Experiment
from trainers.experiments.spec import ExperimentSpec
from trainers.losses import minimax
from trainers.metrics.modes import mode_metrics, scatter_figure

UPDATES = ("alternating", "simultaneous")
EVAL_SEED_OFFSET = 1_000_003  # the evaluation latents come from seed + this offset
FIGURE_SAMPLES = 2000
SAVED_SAMPLES = 512  # generated points kept in the final checkpoint's samples.npz

FIELDS: dict[str, Field] = {
    "model": Field("mog", str, choices=("mog",)),
    "dataset": Field("ring8", str, choices=data.DATASETS),
    "steps": Field(100_000, int, low=1, help="iterations (one D and one G step each)"),
    "eval_every": Field(1000, int, low=1),
    "checkpoint_every": Field(10_000, int, low=1),
    "batch_size": Field(512, int, low=1),
    "z_dim": Field(256, int, low=1),
    "hidden": Field(128, int, low=1),
    "init_gain": Field(0.8, float, positive=True, help="orthogonal init gain"),
    "input_scale": Field(0.25, float, positive=True, help="D multiplies its input by this"),
    "gd_reg": Field(
        0.0, float, low=0.0, help="eta of the GD-regulariser (N&K use 0.5); 0, the default: off"
    ),
    "g_loss": Field("saturating", str, choices=tuple(minimax.G_LOSSES)),
    "updates": Field("alternating", str, choices=UPDATES),
    "eval_samples": Field(10_000, int, low=1),
    "mode_threshold": Field(
        0.25, float, positive=True, help="a mode is covered at this fraction of 1/K of samples"
    ),
}

# Adam as in N&K (lr 1e-4, betas (0.5, 0.999), eps 1e-8). sgda and nsgda: picked from a short
# coarse scan (gd_reg 0.5, seed 0, 8k-10k steps). sgda: 3e-2 spread G evenly over the 8 modes
# (mode_kl 0.00 vs 0.18 at 1e-2 and 1e-1). nsgda: 1e-3 and 3e-3 both did (0.00); 1e-3 because
# nsgda's per-layer step never shrinks and the modes are only 0.02 wide.
_ADAM = {"lr_d": 1e-4, "lr_g": 1e-4, "optimizer_options": {"betas": [0.5, 0.999], "eps": 1e-8}}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": _ADAM,
    "ada-nsgda": _ADAM,
    "adadir": _ADAM,
    "sgda": {"lr_d": 3e-2, "lr_g": 3e-2},
    "nsgda": {"lr_d": 1e-3, "lr_g": 1e-3},
    "graft": {"lr_d": 1e-4, "lr_g": 1e-4},
}


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, or ``auto`` (cuda when available)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class MixtureOfGaussians(Experiment):
    """G and D of N&K's toy on a 2-D Gaussian mixture, trained on V (+ the GD-regulariser)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg["device"])
        self.mixture = data.build(cfg["dataset"])
        seed = cfg["seed"]
        G, D = models.build(
            cfg["model"],
            z_dim=cfg["z_dim"],
            hidden=cfg["hidden"],
            init_gain=cfg["init_gain"],
            input_scale=cfg["input_scale"],
            seed=seed,
        )
        self.players = {"G": G.to(self.device), "D": D.to(self.device)}
        self.optimizers = {
            "G": self._optimizer(G, cfg["lr_g"]),
            "D": self._optimizer(D, cfg["lr_d"]),
        }
        self.rng = torch.Generator().manual_seed(seed)
        self.batch_size = cfg["batch_size"]
        self.eta = cfg["gd_reg"]
        self.g_loss = minimax.G_LOSSES[cfg["g_loss"]]
        self._samples: torch.Tensor | None = None

    def _optimizer(self, module: torch.nn.Module, lr: float) -> optim.Graft:
        cfg = self.cfg
        return optim.build(
            cfg["optimizer"], module, lr, cfg["granularity"], **cfg["optimizer_options"]
        )

    # -- training ------------------------------------------------------------------------------

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A real batch and a latent batch, drawn from ``self.rng`` on the CPU."""
        n, z_dim = self.batch_size, self.cfg["z_dim"]
        x = distributed.sample_rows(lambda m: self.mixture.sample(m, self.rng), n)
        z = distributed.sample_rows(lambda m: torch.randn(m, z_dim, generator=self.rng), n)
        return x.to(self.device), z.to(self.device)

    def _d_grads(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Set D's gradients of -V (fake detached); return -V."""
        D = self.players["D"]
        loss = minimax.d_loss(D(x), D(fake.detach()))
        _set_grads(D, torch.autograd.grad(loss, list(D.parameters())))
        return loss.detach()

    def _g_grads(self, x: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Set G's gradients of its loss + eta ||grad_D V||^2; return both terms."""
        G, D = self.players["G"], self.players["D"]
        fake_logits = D(fake)
        loss = self.g_loss(fake_logits)
        out = {"loss_g": loss.detach()}
        if self.eta > 0:
            value = minimax.minimax_value(D(x), fake_logits)
            reg = minimax.gd_regularizer(value, D, self.eta)
            loss = loss + reg
            out["loss_gd_reg"] = reg.detach()
        _set_grads(G, torch.autograd.grad(loss, list(G.parameters())))
        return out

    def train_step(self) -> dict[str, torch.Tensor]:
        x, z = self._batch()
        fake = self.players["G"](z)
        loss_d = self._d_grads(x, fake)
        alternating = self.cfg["updates"] == "alternating"
        if alternating:
            self.optimizers["D"].step()  # G's step below sees the updated D
        out = self._g_grads(x, fake)  # G is unchanged so far: ``fake`` is still G(z)
        if not alternating:
            self.optimizers["D"].step()
        self.optimizers["G"].step()
        return {"loss_d": loss_d, **out}

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        """``n`` generated points from latents fixed by the seed (the same at every evaluation)."""
        gen = torch.Generator().manual_seed(self.cfg["seed"] + EVAL_SEED_OFFSET)
        z = torch.randn(n, self.cfg["z_dim"], generator=gen)
        return self.players["G"](z.to(self.device)).cpu()

    def evaluate(self, final: bool) -> dict[str, Any]:
        self._samples = self.samples(self.cfg["eval_samples"])
        m = self.mixture
        metrics = mode_metrics(
            self._samples, m.centres, m.std, threshold=self.cfg["mode_threshold"]
        )
        metrics.pop("mode_counts")
        return {**metrics, "modes_total": m.num_modes}

    def figures(self) -> dict[str, Any]:
        if self._samples is None:
            return {}
        m, cfg = self.mixture, self.cfg
        title = f"{cfg['optimizer']} gd_reg={cfg['gd_reg']:g} seed {cfg['seed']}"
        return {"samples": scatter_figure(self._samples[:FIGURE_SAMPLES], m.centres, m.std, title)}

    def final_samples(self) -> dict[str, Any]:
        if self._samples is None:
            return {}
        return {
            "points": self._samples[:SAVED_SAMPLES].float().numpy(),
            "centres": self.mixture.centres.cpu().float().numpy(),
            "std": float(self.mixture.std),
        }


def _set_grads(module: torch.nn.Module, grads: tuple[torch.Tensor, ...]) -> None:
    for p, g in zip(module.parameters(), grads):
        p.grad = g


class MixtureOfGaussiansSpec(ExperimentSpec):
    """``experiment: "mog"``."""

    name = "mog"
    reports = ("modes_covered", "modes_total", "hq_fraction", "mode_kl")
    fields = FIELDS

    def optimizer_defaults(self, optimizer: str) -> dict[str, Any]:
        """Per-optimizer defaults (learning rates, Adam's betas)."""
        table = _DEFAULTS[optimizer]
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in table.items()}

    def build(self, cfg: dict[str, Any]) -> MixtureOfGaussians:
        return MixtureOfGaussians(cfg)
