"""Time StyleGAN2 training iterations of the experiment next to a plain baseline.

``ours`` is ``trainers.experiments.stylegan2``'s ``train_step()`` (our optimizer, the lazy
regularisation schedule, EMA, latent and data sampling). ``plain`` is the same computation
written out below with torch.optim.Adam(foreach=True): the same networks (built by
``trainers.models.build("stylegan2", ...)`` from the same seed, so the initial weights are
equal), lr x I/(I+1) and betas ** (I/(I+1)) for lazy regularisation (G: I = 4, D: I = 16), and
per iteration the phases G main (non-saturating loss, style mixing 0.9), G path length (every 4
iterations, half batch), D main (logistic loss), D R1 (every 16 iterations), EMA update of G.
Both sides report their losses as tensors (no host sync inside an iteration).

Each timed run is ``--iters`` iterations (a multiple of 16, so both regularisers count as in
training: 4 path-length and 1 R1 step per 16 iterations); runs of ours and plain alternate;
rates are from the medians, and the ratio of the best runs is printed too (on a shared machine
a run can be hit by seconds of preemption; the fastest run of each side is the least hit).
Before timing, a check (also the warm-up):

1. ``--check-iters`` iterations of a fresh experiment and of the plain loop given the
   experiment's optimizer class (``trainers.optim`` "adam" with the same lazy lr and betas),
   from the same weights and the same random inputs: the losses should be identical (on the
   CPU bit for bit), which shows that the plain phases compute what the experiment computes.
2. The first iteration of the timed pair (plain with torch's Adam): equal up to float rounding.
   Later iterations drift apart: torch's Adam rounds differently, and Adam's normalised steps
   turn rounding differences in near-zero gradients into lr-sized ones.

    python benchmarks/stylegan2_step.py [--resolution 32] [--cbase 2048] [--cmax 64]
        [--batch 8] [--iters 16] [--repeats 5] [--device cpu] [--optimizer adam] [--threads N]
    python benchmarks/stylegan2_step.py --device cuda --resolution 128 --cbase 16384 \
        --cmax 512 --batch 32     # the paper's networks

``--optimizer`` changes ours only (plain stays torch's Adam). On a CPU shared with other jobs,
``--threads 1`` gives steadier numbers: with as many threads as cores, a preempted OpenMP worker
stalls every parallel op, and single runs take up to ten times as long.

On CUDA the networks run as the experiment runs them (the model's fp16 blocks); the timed plain
loop draws its inputs on the device (ours draws them on the CPU and copies them), and the
check's loops draw on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import alternate  # benchmarks/timing.py (run as scripts)

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


def header(device: torch.device) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    line = (
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {load} on {os.cpu_count()} cores"
    )
    if device.type == "cuda":
        line += f", {torch.cuda.get_device_name(device)}"
    return line


def experiment_config(args) -> dict:
    return experiments.resolve_config(
        {
            "experiment": "stylegan2",
            "optimizer": args.optimizer,
            "seed": args.seed,
            "dataset": "generated",
            "generated_size": 512,
            "resolution": args.resolution,
            "cbase": args.cbase,
            "cmax": args.cmax,
            "batch_size": args.batch,
            "device": args.device,
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


# -- the check -----------------------------------------------------------------------------------


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


def check(cfg: dict, exp, plain: PlainStyleGAN2, iters: int) -> None:
    """Part 1 on a fresh experiment and plain loop (the experiment's optimizer class), part 2 on
    the timed pair (one iteration: the warm-up)."""
    if iters > 0 and cfg["optimizer"] == "adam":

        def ours_adam(module, lr, betas):
            return optim.build("adam", module, lr, cfg["granularity"], betas=betas, eps=EPS)

        exp1 = experiments.build(cfg)
        plain1 = PlainStyleGAN2(cfg, exp1.data.images, ours_adam, draw_device="cpu")
        _, worst, same_init = compare(exp1, plain1, iters)
        ema = max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
            for a, b in zip(exp1.G_ema.parameters(), plain1.G_ema.parameters())
        )
        exact = same_init and max(worst.values()) == 0
        print(
            f"check 1, plain loop with the experiment's optimizer class, {iters} iterations "
            f"from the same weights and inputs: {'identical' if exact else 'DIFFERENT'} losses"
        )
        print("  max rel diff: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
        print(f"  G_ema after: max |ours - plain| / max |plain| per tensor {ema:.1e}")
    elif iters > 0:
        print(f"check 1: skipped (it needs --optimizer adam, not {cfg['optimizer']})")
    first, worst, same_init = compare(exp, plain, 1)
    print(
        f"check 2, timed pair (plain: torch's Adam), iteration 0, same initial weights: {same_init}"
    )
    if plain.draw_device != torch.device("cpu"):
        print("  (inputs differ: plain draws them on the device)")
    for k in LOSSES:
        a, b = first[k]
        print(f"  {k:8s} ours {a:+.7e}  plain {b:+.7e}  rel diff {worst[k]:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--cbase", type=int, default=2048)
    parser.add_argument("--cmax", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=CYCLE, help=f"per run, a multiple of {CYCLE}")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed runs each")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--optimizer", default="adam", help="ours only; plain is torch's Adam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--check-iters", type=int, default=CYCLE, help="check 1; 0: skip it")
    args = parser.parse_args()
    if args.iters < CYCLE or args.iters % CYCLE:
        parser.error(f"--iters must be a positive multiple of {CYCLE} (one lazy cycle)")

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = experiment_config(args)
    exp = experiments.build(cfg)
    device = exp.device
    plain = PlainStyleGAN2(cfg, exp.data.images)
    n_g = sum(p.numel() for p in plain.G.parameters())
    n_d = sum(p.numel() for p in plain.D.parameters())

    print(header(device))
    print(
        f"stylegan2 iteration, {args.resolution} px, cbase {args.cbase}, cmax {args.cmax}, "
        f"batch {args.batch}, G {n_g / 1e6:.2f}M D {n_d / 1e6:.2f}M parameters, {device}; "
        f"ours: optimizer {args.optimizer}, plain: torch.optim.Adam(foreach=True)"
    )
    check(cfg, exp, plain, args.check_iters)

    def ours() -> None:
        for _ in range(args.iters):
            exp.train_step()

    def baseline() -> None:
        for _ in range(args.iters):
            plain.step()

    t_ours, t_plain = alternate(ours, baseline, args.repeats, device)
    print(
        f"{args.repeats} alternating runs of {args.iters} iterations each "
        f"({args.iters // PL_INTERVAL} path-length and {args.iters // R1_INTERVAL} R1 steps per "
        f"run); median per side"
    )
    for name, ts in (("ours", t_ours), ("plain", t_plain)):
        per = statistics.median(ts) / args.iters
        runs = " ".join(f"{t:.2f}" for t in ts)
        print(
            f"  {name:6s} {1 / per:8.3f} it/s  {args.batch / per / 1000:8.4f} kimg/s"
            f"  (runs, s: {runs})"
        )
    print(f"  ratio ours/plain time: {statistics.median(t_ours) / statistics.median(t_plain):.3f}")
    print(f"  ratio of the best runs: {min(t_ours) / min(t_plain):.3f} (less affected by load)")


if __name__ == "__main__":
    main()
