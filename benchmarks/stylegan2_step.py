"""Time StyleGAN2 training iterations of the experiment next to a plain baseline.

``ours`` is ``trainers.experiments.stylegan2``'s ``train_step()`` (our optimizer, the lazy
regularisation schedule, EMA, latent and data sampling). ``plain`` is the same computation
written out in ``benchmarks/stylegan2_plain.py`` with torch.optim.Adam(foreach=True): the same networks (built by
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
import os
import statistics

import torch
from stylegan2_plain import (  # benchmarks/stylegan2_plain.py (run as scripts)
    CYCLE,
    LOSSES,
    PL_INTERVAL,
    R1_INTERVAL,
    PlainStyleGAN2,
    compare,
    experiment_adam,
    experiment_config,
)
from timing import alternate

from trainers import experiments


def header(device: torch.device) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    line = (
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {load} on {os.cpu_count()} cores"
    )
    if device.type == "cuda":
        line += f", {torch.cuda.get_device_name(device)}"
    return line


# -- the check -----------------------------------------------------------------------------------


def check(cfg: dict, exp, plain: PlainStyleGAN2, iters: int) -> None:
    """Part 1 on a fresh experiment and plain loop (the experiment's optimizer class), part 2 on
    the timed pair (one iteration: the warm-up)."""
    if iters > 0 and cfg["optimizer"] == "adam":
        exp1 = experiments.build(cfg)
        plain1 = PlainStyleGAN2(cfg, exp1.data.images, experiment_adam(cfg), draw_device="cpu")
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
    cfg = experiment_config(
        args.resolution, args.cbase, args.cmax, args.batch, args.device, args.optimizer, args.seed
    )
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
