"""Time one optimizer step of every optimizer against torch.optim.Adam(foreach=True).

Two parameter sets shaped like the study's networks (the same tensor shapes, random values):
``wgangp_g`` (ResNet WGAN-GP generator, about 1.2M parameters in 36 tensors) and ``stylegan2_g``
(StyleGAN2 generator at 128 px, about 23M parameters in about 100 tensors). Diagnostics are
computed in every timed step (they always are). Targets: nsgda <= 0.8x Adam's step time,
ada-nsgda and adadir <= 1.2x.

    python benchmarks/optim_step.py [--device cuda] [--repeats 30] [--quick]

``--quick`` times the WGAN-GP set only, 5 repeats: seconds, a check that every optimizer steps
(its ratios are noisy).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import alternate  # benchmarks/timing.py (run as a script)
from torch import nn

import trainers.optim as optim

TARGETS = {"nsgda": 0.8, "ada-nsgda": 1.2, "adadir": 1.2}


class Layer(nn.Module):
    """A layer that owns the given parameter shapes (a stand-in with the real shapes)."""

    def __init__(self, **shapes: tuple[int, ...]) -> None:
        super().__init__()
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.randn(shape) * 0.02))


def wgangp_generator() -> nn.Module:
    """Shapes of the ResNet WGAN-GP CIFAR-10 generator (128 channels)."""
    c = 128
    layers = {"linear": Layer(weight=(4 * 4 * c, 128), bias=(4 * 4 * c,))}
    for b in range(3):
        layers[f"b{b}_bn1"] = Layer(weight=(c,), bias=(c,))
        layers[f"b{b}_conv1"] = Layer(weight=(c, c, 3, 3), bias=(c,))
        layers[f"b{b}_bn2"] = Layer(weight=(c,), bias=(c,))
        layers[f"b{b}_conv2"] = Layer(weight=(c, c, 3, 3), bias=(c,))
        layers[f"b{b}_skip"] = Layer(weight=(c, c, 1, 1), bias=(c,))
    layers["bn"] = Layer(weight=(c,), bias=(c,))
    layers["to_rgb"] = Layer(weight=(3, c, 3, 3), bias=(3,))
    return nn.ModuleDict(layers)


def stylegan2_generator() -> nn.Module:
    """Shapes of the StyleGAN2 generator at 128 px (cbase 16384, mapping depth 2)."""
    w = 512
    layers = {f"map{i}": Layer(weight=(w, w), bias=(w,)) for i in range(2)}
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}
    layers["const"] = Layer(const=(512, 4, 4))
    prev = 512
    for res, c in ch.items():
        convs = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for k in convs:
            cin = prev if k == "conv0" else c
            layers[f"b{res}_{k}_affine"] = Layer(weight=(cin, w), bias=(cin,))
            layers[f"b{res}_{k}"] = Layer(weight=(c, cin, 3, 3), bias=(c,), noise_strength=())
        layers[f"b{res}_torgb_affine"] = Layer(weight=(c, w), bias=(c,))
        layers[f"b{res}_torgb"] = Layer(weight=(3, c, 1, 1), bias=(3,))
        prev = c
    return nn.ModuleDict(layers)


def time_against(
    opt: torch.optim.Optimizer, base: torch.optim.Optimizer, device: torch.device, repeats: int
) -> tuple[float, float]:
    """Median seconds per step of ``opt`` and of ``base``, their steps alternated so that load
    from other processes slows both alike."""
    for _ in range(3):
        opt.step()
        base.step()
    t, b = alternate(opt.step, base.step, repeats, device)
    return statistics.median(t), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 30)")
    parser.add_argument("--quick", action="store_true", help="WGAN-GP shapes only, 5 repeats")
    args = parser.parse_args()
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 30)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        "ratio = median step time / median torch.optim.Adam(foreach=True) step time, same "
        "parameters, the two stepped alternately"
    )
    failed = []
    sets = [("wgangp_g", wgangp_generator), ("stylegan2_g", stylegan2_generator)]
    for label, make in sets[:1] if args.quick else sets:
        model = make().to(device)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        n = sum(p.numel() for p in params)
        print(f"\n{label}: {n / 1e6:.2f}M parameters in {len(params)} tensors")
        baseline = torch.optim.Adam(params, lr=1e-8, betas=(0.0, 0.9), foreach=True)
        print(f"  {'optimizer':<24}{'ms/step':>10}{'Adam ms':>10}{'ratio':>8}{'target':>8}")
        for name in optim.NAMES:
            if name == "graft":
                continue
            for granularity in ("layer", "global"):
                opt = optim.build(name, model, 1e-8, granularity=granularity)
                t, base = time_against(opt, baseline, device, repeats)
                ratio = t / base
                target = TARGETS.get(name)
                mark = ""
                if target is not None:
                    mark = f"{'<=' + str(target):>8}" + ("" if ratio <= target else "  MISSED")
                    if ratio > target:
                        failed.append(f"{label}/{name}/{granularity}")
                row = f"{name + ' (' + granularity + ')':<24}{t * 1e3:>10.2f}{base * 1e3:>10.2f}"
                print(f"  {row}{ratio:>8.2f}{mark}")
    print("\nall targets met" if not failed else f"\ntargets missed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
