"""Every GPU measurement of the project in one run, one summary table (issue 17).

    python benchmarks/gpu_check.py                      # on a GPU machine: at most ~8 minutes
    python benchmarks/gpu_check.py --device cpu --quick # the same code paths, tiny sizes, < 2 min

Rows (each a ratio against a baseline measured in the same run, alternated):
optimizer steps against torch.optim.Adam(foreach=True) (``optim_step.py``'s shapes) and the final
``_foreach_addcmul_`` with per-tensor step sizes against one scalar; WGAN-GP iterations against
the loop written plainly (``train_step.py``; channels-last and bf16 AMP on and off); StyleGAN2
s/kimg against the plain loop (``stylegan2_step.py``; NVlabs' recipe at 128 px, batch 32), with
peak memory; fp16 against fp32 outputs per synthesis block for the same weights and a finite
training step with R1 and path length in fp16; FID feature throughput through
``trainers.metrics.fid`` against the raw network (torchvision's ``inception_v3(weights=None)``:
random weights, no download, the real one's cost); host-device synchronisations per training
iteration (``torch.cuda.set_sync_debug_mode``, CUDA only); torch.compile's speed-up of a WGAN-GP
iteration; a two-process NCCL data-parallel equality check (2 GPUs or more).
The table is printed and written to ``benchmarks/results/gpu_<device name>.txt`` (``--out``).
With ``--quick`` on the CPU the fp16 blocks run in float16 here too (as the tests do) and
torch.compile uses Dynamo's "eager" backend (Inductor compiles for minutes on a small CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optim_step  # benchmarks/*.py (run as a script)
import stylegan2_step
import torch
import train_step
from stylegan2_plain import CYCLE, PlainStyleGAN2, experiment_config
from timing import alternate, once

from trainers import experiments, models
from trainers import optim as ours_optim
from trainers.experiments import image_gan
from trainers.metrics import fid
from trainers.models import stylegan2 as sg2

Row = tuple[str, str, str]  # measurement, result, baseline / target
RESULTS = Path(__file__).parent / "results"


def device_label(device: torch.device) -> str:
    """The file-name part naming the device: the GPU's name, or "cpu"."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


@contextlib.contextmanager
def half_here(device: torch.device) -> Iterator[None]:
    """Run StyleGAN2's fp16 blocks in float16 on ``device`` (already so on CUDA)."""
    before = sg2.HALF_DEVICES
    sg2.HALF_DEVICES = before | {device.type}
    try:
        yield
    finally:
        sg2.HALF_DEVICES = before


def median_pair(a: Callable[[], None], b: Callable[[], None], repeats: int, device) -> tuple:
    a(), b()  # warm-up (cuDNN autotuning, compilation)
    ta, tb = alternate(a, b, repeats, device)
    return statistics.median(ta), statistics.median(tb)


# -- the measurements ----------------------------------------------------------------------------


def optimizer_rows(device: torch.device, quick: bool) -> list[Row]:
    rows: list[Row] = []
    repeats = 3 if quick else 30
    sets = [
        ("wgangp_g", optim_step.wgangp_generator),
        ("stylegan2_g", optim_step.stylegan2_generator),
    ]
    for label, make in sets[:1] if quick else sets:
        torch.manual_seed(0)
        model = make().to(device)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        base = torch.optim.Adam(params, lr=1e-8, betas=(0.0, 0.9), foreach=True)
        for name in ("adam", "nsgda", "ada-nsgda", "adadir"):
            opt = ours_optim.build(name, model, 1e-8, granularity="layer")
            t, b = optim_step.time_against(opt, base, device, repeats)
            target = optim_step.TARGETS.get(name, 1.0)
            rows.append(
                (
                    f"optim step {label} {name}",
                    f"{t / b:.2f}x ({t * 1e3:.2f} ms)",
                    f"Adam <= {target}x",
                )
            )
        # the final update of a graft: per-tensor step sizes (a list of 0-d tensors) vs a scalar
        d = [torch.randn_like(p) for p in params]
        alphas = [torch.full([], 1e-8, device=device) for _ in params]

        @torch.no_grad()
        def per_tensor(params=params, d=d, alphas=alphas) -> None:
            torch._foreach_addcmul_(params, d, alphas, value=-1.0)

        @torch.no_grad()
        def one_scalar(params=params, d=d) -> None:
            torch._foreach_addcmul_(params, d, d, value=-1e-8)

        t, b = median_pair(per_tensor, one_scalar, repeats, device)
        rows.append(
            (
                f"_foreach_addcmul_ {label}, per-tensor alphas",
                f"{t / b:.2f}x ({t * 1e3:.3f} ms)",
                "one scalar ~1x",
            )
        )
    return rows


def _wgangp_config(device: torch.device, batch: int, width: float, size: int) -> dict:
    """The WGAN-GP trial the wgangp and compile sections time (adam, generated images)."""
    return experiments.resolve_config(
        {
            "experiment": "wgangp",
            "optimizer": "adam",
            "seed": 0,
            "dataset": "generated",
            "generated_size": size,
            "batch_size": batch,
            "width": width,
            "device": device.type,
            "fid_extractor": "randconv",
        }
    )


def wgangp_rows(device: torch.device, quick: bool) -> list[Row]:
    batch, width, repeats = (4, 0.0625, 1) if quick else (64, 1.0, 5)
    cfg = _wgangp_config(device, batch, width, 64 if quick else 512)
    exp = experiments.build(cfg)
    rows = []
    for channels_last in (False, True):
        for amp in (False, True):
            args = SimpleNamespace(batch=batch, channels_last=channels_last, amp=amp)
            plain = train_step.plain_wgangp_iteration(exp, args)
            t, b = median_pair(exp.train_step, plain, repeats, exp.device)
            rows.append(
                (
                    f"wgangp it/s, batch {batch} width {width}, plain channels_last={channels_last} amp={amp}",
                    f"{1 / t:.2f} it/s, {t / b:.2f}x plain",
                    f"plain {1 / b:.2f} it/s",
                )
            )
    return rows


def stylegan2_rows(device: torch.device, quick: bool) -> list[Row]:
    res, cbase, cmax, batch, repeats = (16, 256, 16, 4, 1) if quick else (128, 16384, 512, 32, 3)
    cfg = experiment_config(res, cbase, cmax, batch, device.type)
    exp = experiments.build(cfg)
    plain = PlainStyleGAN2(cfg, exp.data.images)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def ours() -> None:
        for _ in range(CYCLE):
            exp.train_step()

    def baseline() -> None:
        for _ in range(CYCLE):
            plain.step()

    t, b = median_pair(ours, baseline, repeats, device)
    s_kimg = t / CYCLE * 1000 / batch
    peak = (
        f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        if device.type == "cuda"
        else "n/a on cpu"
    )
    return [
        (
            f"stylegan2 {res} px batch {batch} (fp16 top 4 res), s/kimg",
            f"{s_kimg:.2f} s/kimg, {t / b:.2f}x plain",
            "NVlabs 12.51 V100, 6.79 A100; <= 4 H100",
        ),
        ("stylegan2 peak memory (ours and plain)", peak, ""),
    ]


def fp16_rows(device: torch.device, quick: bool) -> list[Row]:
    res, cbase, cmax, z = (16, 256, 16, 16) if quick else (128, 16384, 512, 512)
    G, D = models.build("stylegan2", resolution=res, cbase=cbase, cmax=cmax, z_dim=z, w_dim=z)
    G, D = G.to(device).eval(), D.to(device).eval()
    G32, D32 = copy.deepcopy(G), copy.deepcopy(D)
    for m in list(G32.synthesis.children()) + list(D32.children()):
        if hasattr(m, "use_fp16"):
            m.use_fp16 = False

    def block_images(gen) -> dict[int, torch.Tensor]:
        out, hooks = {}, []
        for r in gen.synthesis.resolutions:
            block = getattr(gen.synthesis, f"b{r}")
            hooks.append(block.register_forward_hook(lambda m, a, o, r=r: out.__setitem__(r, o[1])))
        gen(z_batch, noise_mode="const")
        for h in hooks:
            h.remove()
        return out

    z_batch = torch.randn(4, z, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad(), half_here(device):
        half, full = block_images(G), block_images(G32)
        logits16, logits32 = D(full[res]), D32(full[res])
    rel = {r: float((half[r] - full[r]).norm() / full[r].norm()) for r in full}
    fp16_res = [r for r in full if getattr(G.synthesis, f"b{r}").use_fp16]
    per_block = " ".join(f"{r}:{rel[r]:.1e}" for r in full)
    d_rel = float((logits16 - logits32).norm() / logits32.norm())
    # one training step with R1 and path length in fp16
    cfg = experiment_config(res, cbase, cmax, 4, device.type)
    cfg.update(r1_interval=1, pl_interval=1)
    with half_here(device):
        exp = experiments.build(cfg)
        losses = exp.train_step()
    finite = all(bool(torch.isfinite(v).all()) for v in losses.values()) and all(
        bool(torch.isfinite(p).all()) for p in exp.players["G"].parameters()
    )
    return [
        (
            f"fp16 vs fp32 images per G block (fp16: {fp16_res})",
            f"max {max(rel.values()):.1e} ({per_block})",
            "< 1e-2",
        ),
        ("fp16 vs fp32 D logits", f"{d_rel:.1e}", "< 2e-2"),
        (
            "fp16 training step with R1 and path length",
            "finite" if finite else "NOT FINITE",
            "finite",
        ),
    ]


class RandomInception:
    """torchvision's inception_v3 with random weights (2048 pool features) behind clean-fid's
    resize: the real extractor's cost without its weights."""

    def __init__(self, device: torch.device) -> None:
        from cleanfid.resize import build_resizer
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        net.fc = torch.nn.Identity()
        self.net, self.device = net.to(device).eval(), device
        self.resize = build_resizer(fid.MODE)
        self.name = "inception_v3-random"

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch.to(self.device) / 127.5 - 1)


def fid_rows(device: torch.device, quick: bool) -> list[Row]:
    num, batch, width, repeats = (8, 4, 0.0625, 1) if quick else (1000, 200, 1.0, 3)
    extractor = RandomInception(device)
    G, _ = models.build("wgangp_resnet", width=width)
    G = G.to(device).eval()
    x = torch.rand(batch, 3, 299, 299, device=device) * 255

    def ours() -> None:
        fid.features(fid.generator_batches(G, num, 128, batch, 0, device), extractor, 4)

    def raw() -> None:
        for _ in range(math.ceil(num / batch)):
            extractor(x)

    t, b = median_pair(ours, raw, repeats, device)
    return [
        (
            f"FID features, {num} generated images, random Inception",
            f"{num / t:.1f} img/s, {t / b:.2f}x raw",
            f"raw network {num / b:.1f} img/s",
        )
    ]


def sync_rows(device: torch.device, quick: bool) -> list[Row]:
    if device.type != "cuda":
        return [("host-device syncs per training iteration", "n/a on cpu", "0")]
    rows = []
    iters = 4 if quick else 16
    for name, cfg in (
        ("stylegan2", experiment_config(32, 2048, 64, 8, "cuda")),
        (
            "wgangp",
            experiments.resolve_config(
                {
                    "experiment": "wgangp",
                    "optimizer": "adam",
                    "seed": 0,
                    "dataset": "generated",
                    "generated_size": 64,
                    "batch_size": 8,
                    "width": 0.25,
                    "device": "cuda",
                    "fid_extractor": "randconv",
                }
            ),
        ),
    ):
        exp = experiments.build(cfg)
        exp.train_step()  # first iteration: allocation, autotuning
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(iters):
                    exp.train_step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        where = syncs[0].filename + ":" + str(syncs[0].lineno) if syncs else ""
        rows.append(
            (
                f"host-device syncs per {name} iteration",
                f"{len(syncs) / iters:.2f} {where}".strip(),
                "0",
            )
        )
    return rows


def compile_rows(device: torch.device, quick: bool) -> list[Row]:
    backend = "eager" if quick and device.type == "cpu" else "inductor"
    batch, width, repeats = (4, 0.0625, 1) if quick else (64, 1.0, 5)
    cfg = _wgangp_config(device, batch, width, 64)
    eager = experiments.build(cfg)
    before = image_gan.COMPILE_BACKEND
    image_gan.COMPILE_BACKEND = backend
    try:
        fast = experiments.build({**cfg, "compile": True})
    finally:
        image_gan.COMPILE_BACKEND = before
    t0 = time.perf_counter()
    fast.train_step()
    first = time.perf_counter() - t0
    t, b = median_pair(fast.train_step, eager.train_step, repeats, device)
    return [
        (
            f"torch.compile ({backend}) wgangp batch {batch} width {width}",
            f"{b / t:.2f}x speed-up (first step {first:.0f} s)",
            "eager",
        )
    ]


def _dp_worker(rank: int, world: int, backend: str, init: str, out: str) -> None:
    import torch.distributed as dist

    device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    # StyleGAN2's G with its constant noise: per-sample (no batch norm), so a split batch
    # must give the whole batch's mean gradient
    G, _ = models.build("stylegan2", resolution=16, cbase=256, cmax=32, z_dim=32, w_dim=32)
    G = G.to(device)
    z = torch.randn(8, 32, generator=torch.Generator().manual_seed(1)).to(device)
    single = copy.deepcopy(G)
    # data parallel: each rank its half of the batch, gradients averaged by all-reduce
    G(z.chunk(world)[rank], noise_mode="const").square().mean().backward()
    for p in G.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    # the same step on the whole batch in one process
    single(z, noise_mode="const").square().mean().backward()
    worst = max(
        float((a.grad - b.grad).abs().max() / b.grad.abs().max().clamp_min(1e-30))
        for a, b in zip(G.parameters(), single.parameters())
    )
    same = torch.tensor([worst], device=device)
    dist.all_reduce(same, op=dist.ReduceOp.MAX)
    if rank == 0:
        Path(out).write_text(f"{float(same):.2e}")
    dist.destroy_process_group()


def dp_rows(device: torch.device, quick: bool) -> list[Row]:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and gpus < 2:
        return [("NCCL 2-process data parallel", f"skipped: {gpus} GPU (needs 2)", "")]
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "worst")
        init = "file://" + os.path.join(tmp, "rendezvous")
        torch.multiprocessing.spawn(_dp_worker, (2, backend, init, out), nprocs=2)
        worst = float(Path(out).read_text())
    label = "NCCL" if backend == "nccl" else "gloo (CPU stand-in for NCCL)"
    # the batch split in two reorders float sums: equal up to rounding
    return [
        (f"{label} 2-process data parallel grads vs one process", f"max rel {worst:.1e}", "< 1e-5")
    ]


SECTIONS = {
    "optim": optimizer_rows,
    "wgangp": wgangp_rows,
    "stylegan2": stylegan2_rows,
    "fp16": fp16_rows,
    "fid": fid_rows,
    "sync": sync_rows,
    "compile": compile_rows,
    "dp": dp_rows,
}


def table(rows: list[Row], seconds: dict[str, float], head: str) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head, f"{'measurement':<{w[0]}}  {'result':<{w[1]}}  baseline / target"]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c}".rstrip() for a, b, c in rows]
    lines.append("seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=None)
    parser.add_argument("--out", type=Path, default=None, help="default results/gpu_<device>.txt")
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error(f"--device {args.device!r}: cpu or cuda")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --quick)")
    if device.type == "cpu" and args.quick:
        torch.set_num_threads(1)  # tiny networks: threads only spin-wait on a shared CPU
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    out = args.out or RESULTS / f"gpu_{device_label(device)}.txt"
    head = stylegan2_step.header(device) + (", --quick" if args.quick else "")
    print(head, flush=True)
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in args.only or SECTIONS:
        t0 = time.perf_counter()
        got = SECTIONS[name](device, args.quick)
        seconds[name] = once(lambda: None, device) + time.perf_counter() - t0
        for r in got:
            print(f"  {r[0]}: {r[1]}  [{r[2]}]", flush=True)
        rows += got
    text = table(rows, seconds, head + f", total {sum(seconds.values()):.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("\n" + text + f"written to {out}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
