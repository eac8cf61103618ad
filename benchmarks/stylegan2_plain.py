"""The StyleGAN2 iteration written out plainly, next to ``trainers.experiments.stylegan2``.

``PlainStyleGAN2.step()`` is one NVlabs ``--cfg=stylegan2`` iteration written without the
experiment's machinery: G main (non-saturating loss, style mixing 0.9), G path length (every 4
iterations, half batch), D main (logistic loss), D R1 (every 16 iterations), EMA update of G,
with lr x I/(I+1) and betas ** (I/(I+1)) for lazy regularisation. Given the experiment's
optimizer class (``experiment_adam``) and inputs drawn on the CPU, ``compare`` finds its losses
bit for bit equal to the experiment's on the CPU; ``benchmarks/stylegan2_step.py`` times the two
and ``tests/test_stylegan2_step.py`` checks that they stay equal.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainers import experiments, models, optim

# NVlabs --cfg=stylegan2 constants, written into the experiment's config as well so that both
# sides run the same recipe even if the experiment's defaults change.
LR, BETAS, EPS = 0.0025, (0.0, 0.99), 1e-8
R1_GAMMA, R1_INTERVAL = 0.1024, 16
PL_WEIGHT, PL_INTERVAL, PL_SHRINK, PL_DECAY = 2.0, 4, 2, 0.01
MIXING = 0.9
EMA_KIMG, EMA_RAMPUP = 10.0, 0.05
NAN_CLAMP = 1e5
CYCLE = math.lcm(PL_INTERVAL, R1_INTERVAL)
LOSSES = ("loss_g", "loss_pl", "pl_mean", "loss_d", "loss_r1")

MakeOptimizer = Callable[[torch.nn.Module, float, tuple[float, float]], torch.optim.Optimizer]


def experiment_config(
    resolution: int,
    cbase: int,
    cmax: int,
    batch: int,
    device: str = "cpu",
    optimizer: str = "adam",
    seed: int = 0,
    generated_size: int = 512,
) -> dict:
    """The experiment's resolved config with the constants above (on generated images)."""
    return experiments.resolve_config(
        {
            "experiment": "stylegan2",
            "optimizer": optimizer,
            "seed": seed,
            "dataset": "generated",
            "generated_size": generated_size,
            "resolution": resolution,
            "cbase": cbase,
            "cmax": cmax,
            "batch_size": batch,
            "device": device,
            "fid_extractor": "randconv",
            "r1_gamma": R1_GAMMA,
            "r1_interval": R1_INTERVAL,
            "pl_weight": PL_WEIGHT,
            "pl_interval": PL_INTERVAL,
            "pl_batch_shrink": PL_SHRINK,
            "pl_decay": PL_DECAY,
            "style_mixing": MIXING,
            "ema_kimg": EMA_KIMG,
            "ema_rampup": EMA_RAMPUP,
        }
    )


def torch_adam(module: torch.nn.Module, lr: float, betas: tuple[float, float]):
    return torch.optim.Adam(module.parameters(), lr, betas=betas, eps=EPS, foreach=True)


def experiment_adam(cfg: dict) -> MakeOptimizer:
    """The experiment's optimizer class ("adam" of ``trainers.optim``), for ``PlainStyleGAN2``."""

    def make(module: torch.nn.Module, lr: float, betas: tuple[float, float]):
        return optim.build("adam", module, lr, cfg["granularity"], betas=betas, eps=EPS)

    return make


class PlainStyleGAN2:
    """The iteration written plainly; ``step()`` runs one and returns the losses (tensors).

    ``images``: uint8 [N, 3, R, R] on the device. Inputs come from one generator seeded like the
    experiment's, drawn on ``draw_device`` (default: the images' device) in the natural order of
    the phases; the mixing decisions are host numbers drawn on the CPU (from the same generator
    when it is a CPU one). On the CPU the inputs therefore equal the experiment's.
    """

    def __init__(
        self,
        cfg: dict,
        images: torch.Tensor,
        make_optimizer: MakeOptimizer = torch_adam,
        draw_device: str | torch.device | None = None,
    ) -> None:
        device = self.device = images.device
        self.G, self.D = models.build(
            "stylegan2",
            resolution=cfg["resolution"],
            z_dim=cfg["z_dim"],
            w_dim=cfg["z_dim"],
            map_depth=cfg["map_depth"],
            cbase=cfg["cbase"],
            cmax=cfg["cmax"],
            seed=cfg["seed"],
        )
        self.G, self.D = self.G.to(device), self.D.to(device)
        self.G_ema = copy.deepcopy(self.G)
        self.G_ema.eval().requires_grad_(False)
        self.g_params, self.d_params = list(self.G.parameters()), list(self.D.parameters())

        def lazy(module: torch.nn.Module, interval: int) -> torch.optim.Optimizer:
            r = interval / (interval + 1)
            return make_optimizer(module, LR * r, (BETAS[0] ** r, BETAS[1] ** r))

        self.opt_g, self.opt_d = lazy(self.G, PL_INTERVAL), lazy(self.D, R1_INTERVAL)
        self.images, self.batch, self.z_dim = images, cfg["batch_size"], cfg["z_dim"]
        self.draw_device = torch.device(draw_device or device)
        self.rng = torch.Generator(self.draw_device).manual_seed(cfg["seed"])
        cpu = self.draw_device.type == "cpu"
        self.host_rng = self.rng if cpu else torch.Generator().manual_seed(cfg["seed"])
        self.it = 0
        self.pl_mean = torch.zeros([], device=device)
        self.last = {k: torch.zeros([], device=device) for k in ("loss_pl", "loss_r1")}

    # -- inputs ----------------------------------------------------------------------------------

    def randn(self, *shape: int) -> torch.Tensor:
        x = torch.randn(*shape, generator=self.rng, device=self.draw_device)
        return x.to(self.device)

    def ws(self, n: int, update_w_avg: bool = False) -> torch.Tensor:
        """[n, num_ws, w_dim], with style mixing: from a cutoff on, the w of a second z."""
        G = self.G
        w = G.mapping(self.randn(n, self.z_dim), update_w_avg=update_w_avg)
        w = w[:, None].repeat(1, G.num_ws, 1)
        cutoff = int(torch.randint(1, G.num_ws, [], generator=self.host_rng))
        if float(torch.rand([], generator=self.host_rng)) < MIXING:
            w[:, cutoff:] = G.mapping(self.randn(n, self.z_dim))[:, None]
        return w

    def real(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.images), (n,), generator=self.rng, device=self.draw_device)
        return self.images[idx.to(self.device)].float() / 127.5 - 1

    # -- the iteration ---------------------------------------------------------------------------

    @staticmethod
    def update(opt: torch.optim.Optimizer, params: list[torch.Tensor], loss: torch.Tensor):
        # zero (not None) gradients: a parameter a phase does not reach takes a zero-gradient
        # step, as in ours
        opt.zero_grad(set_to_none=False)
        loss.backward(inputs=params)
        for p in params:
            p.grad.nan_to_num_(nan=0.0, posinf=NAN_CLAMP, neginf=-NAN_CLAMP)
        opt.step()

    def step(self) -> dict[str, torch.Tensor]:
        G, D, b, it = self.G, self.D, self.batch, self.it
        # G main: non-saturating loss
        loss_g = F.softplus(-D(G.synthesis(self.ws(b)))).mean()
        self.update(self.opt_g, self.g_params, loss_g)
        # G reg: path length on half the batch, times the interval
        if it % PL_INTERVAL == 0:
            n = b // PL_SHRINK
            ws = self.ws(n)  # through the mapping, as NVlabs
            img = G.synthesis(ws)
            res = img.shape[-1]
            noise = self.randn(n, 3, res, res) / res  # / sqrt(H W)
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), PL_DECAY)
            penalty = (lengths - self.pl_mean).square().mean() * PL_WEIGHT
            self.update(self.opt_g, self.g_params, penalty * PL_INTERVAL)
            self.last["loss_pl"] = penalty.detach()
        # D main: logistic loss
        with torch.no_grad():
            fake = G.synthesis(self.ws(b, update_w_avg=True))
        real_d = self.real(b)
        loss_d = F.softplus(D(fake)).mean() + F.softplus(-D(real_d)).mean()
        self.update(self.opt_d, self.d_params, loss_d)
        # D reg: R1 on real images, times the interval
        if it % R1_INTERVAL == 0:
            real = real_d.detach().requires_grad_(True)  # D main's reals
            (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
            penalty = grad.square().sum([1, 2, 3]).mean() * (R1_GAMMA / 2)
            self.update(self.opt_d, self.d_params, penalty * R1_INTERVAL)
            self.last["loss_r1"] = penalty.detach()
        # EMA of G: half-life EMA_KIMG, ramped up over the first images; buffers copied
        nimg = min(EMA_KIMG * 1000, it * b * EMA_RAMPUP)  # images seen before this step
        beta = 0.5 ** (b / max(nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.g_params):
                pe.lerp_(p, 1 - beta)
            for be, bf in zip(self.G_ema.buffers(), G.buffers()):
                be.copy_(bf)
        self.it = it + 1
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            **self.last,
            "pl_mean": self.pl_mean,
        }


def compare(exp, plain: PlainStyleGAN2, iters: int) -> tuple[dict, dict, bool]:
    """Run ``iters`` iterations of both, each from the same global RNG state (the synthesis
    layers' noise); return (first iteration's losses, max relative difference per loss, whether
    the initial weights were equal)."""
    pairs = [
        (exp.players["G"], plain.G),
        (exp.players["D"], plain.D),
        (exp.G_ema, plain.G_ema),
    ]
    same_init = all(
        torch.equal(a, b)
        for ours, mine in pairs
        for a, b in zip(ours.state_dict().values(), mine.state_dict().values())
    )
    first, worst = {}, dict.fromkeys(LOSSES, 0.0)
    for i in range(iters):
        torch.manual_seed(1000 + i)
        ours = exp.train_step()
        torch.manual_seed(1000 + i)
        mine = plain.step()
        for k in LOSSES:
            a, b = float(ours[k]), float(mine[k])
            worst[k] = max(worst[k], abs(a - b) / max(abs(b), 1e-30))
            first.setdefault(k, (a, b))
    return first, worst, same_init
