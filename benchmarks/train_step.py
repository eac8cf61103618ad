"""Time one WGAN-GP iteration and FID feature extraction, each next to a plain baseline.

1. ``wgangp``: one iteration (n_dis = 5 critic steps + 1 generator step at twice the batch) of
   ``trainers.experiments.wgangp`` (our optimizer, lr schedule, data sampling) against the same
   computation written plainly below with torch.optim.Adam(foreach=True). Same networks and
   sizes; the ratio shows the experiment's own overhead.
2. ``fid``: features of generated images through ``trainers.metrics.fid`` (fixed latents,
   uint8 quantisation, clean-fid's per-image "clean" resize to 299 px, extractor) against a plain
   loop doing the same. The extractor is clean-fid's Inception when its weights are present
   (``--inception``), else the random-conv extractor behind the same 299 px resize.

    python benchmarks/train_step.py [--device cpu] [--batch 8] [--width 0.25] [--repeats 5]
    python benchmarks/train_step.py --device cuda --batch 64 --width 1 [--channels-last] [--amp]

``--channels-last`` and ``--amp`` (bf16 autocast) apply to the plain baseline only: they measure
what those settings would buy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
from collections.abc import Callable

import numpy as np
import torch
from timing import alternate  # benchmarks/timing.py (run as scripts)

from trainers import experiments, models
from trainers.metrics import fid


def timed_pair(
    a: Callable[[], None], b: Callable[[], None], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, run alternately (one warm-up run each), so that load
    from other processes affects both alike."""
    a(), b()
    ta, tb = alternate(a, b, repeats, device)
    return statistics.median(ta), statistics.median(tb)


def plain_wgangp_iteration(exp, args) -> Callable[[], None]:
    """The same iteration written plainly (no trainers code in the step)."""
    device = exp.device
    G = copy.deepcopy(exp.players["G"])
    D = copy.deepcopy(exp.players["D"])
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    G, D = G.to(memory_format=fmt), D.to(memory_format=fmt)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9), foreach=True)
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9), foreach=True)
    images = exp.data.images
    b, z_dim = args.batch, exp.cfg["z_dim"]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.amp else contextlib.nullcontext()
    )

    def step() -> None:
        for _ in range(5):
            idx = torch.randint(len(images), (b,), device=device)
            real = (images[idx].float() / 127.5 - 1).contiguous(memory_format=fmt)
            with torch.no_grad(), autocast:
                fake = G(torch.randn(b, z_dim, device=device)).float()
            alpha = torch.rand(b, 1, 1, 1, device=device)
            x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            with autocast:
                loss = D(fake).mean() - D(real).mean()
                (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
                loss = loss + 10 * (grad.flatten(1).norm(dim=1) - 1).square().mean()
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
        with autocast:
            loss_g = -D(G(torch.randn(2 * b, z_dim, device=device))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def bench_wgangp(args) -> None:
    cfg = experiments.resolve_config(
        {
            "experiment": "wgangp",
            "optimizer": "adam",
            "seed": 0,
            "dataset": "generated",
            "generated_size": 512,
            "batch_size": args.batch,
            "width": args.width,
            "device": args.device,
            "fid_extractor": "randconv",
        }
    )
    exp = experiments.build(cfg)
    plain_step = plain_wgangp_iteration(exp, args)
    ours, plain = timed_pair(exp.train_step, plain_step, args.repeats, exp.device)
    flags = f"channels_last={args.channels_last} amp={args.amp} (baseline only)"
    per = 5 * args.batch
    print(f"wgangp iteration, batch {args.batch}, width {args.width}, {exp.device}; {flags}")
    print(f"  ours   {1 / ours:8.3f} it/s  {per / ours:9.1f} critic images/s")
    print(f"  plain  {1 / plain:8.3f} it/s  {per / plain:9.1f} critic images/s")
    print(f"  ratio ours/plain time: {ours / plain:.3f}")


class ResizedRandomConv(fid.RandomConvExtractor):
    """The random-conv extractor behind clean-fid's 299 px "clean" resize (Inception's input)."""

    def __init__(self) -> None:
        super().__init__()
        from cleanfid.resize import build_resizer

        self.resize = build_resizer("clean")
        self.name = "randconv-299"


def bench_fid(args) -> None:
    device = torch.device(args.device)
    if args.inception:
        extractor = fid.build_extractor(fid.INCEPTION_NAME, device)
    else:
        extractor = ResizedRandomConv()
    G, _ = models.build("wgangp_resnet", width=args.width)
    G = G.to(device).eval()
    num, z_dim = args.fid_num, 128

    def ours() -> None:
        fid.features(fid.generator_batches(G, num, z_dim, args.batch, 0, device), extractor, 1)

    def plain() -> None:
        g = torch.Generator().manual_seed(0)
        out = []
        for start in range(0, num, args.batch):
            n = min(args.batch, num - start)
            with torch.no_grad():
                x = G(torch.randn(n, z_dim, generator=g).to(device))
            x = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().permute(0, 2, 3, 1)
            resized = np.stack([extractor.resize(img) for img in x.numpy()])
            batch = torch.from_numpy(resized).permute(0, 3, 1, 2).float()
            out.append(extractor(batch).cpu().numpy())
        np.concatenate(out)

    t_ours, t_plain = timed_pair(ours, plain, args.repeats, device)
    print(f"FID features of {num} generated images, {extractor.name}, {device}")
    print(f"  ours   {num / t_ours:9.1f} images/s")
    print(f"  plain  {num / t_plain:9.1f} images/s")
    print(f"  ratio ours/plain time: {t_ours / t_plain:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=float, default=0.25, help="1 = the paper's networks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fid-num", type=int, default=64)
    parser.add_argument("--inception", action="store_true", help="clean-fid's Inception")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--only", choices=("wgangp", "fid"), default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.only in (None, "wgangp"):
        bench_wgangp(args)
    if args.only in (None, "fid"):
        bench_fid(args)


if __name__ == "__main__":
    main()
