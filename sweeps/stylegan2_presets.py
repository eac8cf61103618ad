"""What the StyleGAN2 sweeps share: the cells, the two stages of Fig. 5 and a CPU smoke.

Stage 1 trains one ada-nsgda run (seed 0, the experiment's default step size, the sweep's data
and settings) and writes each layer's mean norm(A_Y) over the run as ``profile.json`` in its
experiment directory, ``<storage>/<sweep>_profile`` (``python -m trainers profile`` computes the
same from any checkpoint). Stage 2 is the comparison: adam, ada-nsgda, sgda, nsgda with one step
size for every layer (layer-wise normalised, one global lr: the paper's "nSGDA with the same
global learning rate for each layer", which fails on StyleGAN2) and ``nsgda-profile``, nsgda
whose layer Y steps by lr * profile[Y], each over its log grid. The profile goes into the trial
configs as a mapping, so trials on any node have it and record it with their config.

    python sweeps/stylegan2_ffhq.py [--profile FILE] [--smoke] [--resume] [--storage URI] ...

The engine's ``--smoke`` is replaced here by ``stylegan2_smoke`` (16 px, tiny channels), on the
sweep's own data set: originals of its shape made by ``sweeps.smoke_data`` and put through
``python -m trainers.data prepare`` into the zip its loader reads (a local Ray's workers read it
where the driver wrote it; a cluster's workers would need it on their disks).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from analysis import storage
from sweeps import smoke_data
from sweeps.engine import Cell, StepSizes, Sweep, SweepError
from sweeps.engine import address as addresses
from sweeps.engine.cli import parser, run_from_args
from sweeps.engine.driver import check_options, experiment_path, storage_root
from sweeps.engine.smoke import STYLEGAN2
from sweeps.engine.tuner import EXIT_BAD_INPUT
from sweeps.image_presets import GRIDS, smoke
from trainers import experiments, optim

EXIT_MISSING_FILE = 3
TINY = STYLEGAN2  # 16 px, tiny channels (sweeps.engine.smoke)
PROFILE_LABEL = "nsgda-profile"
PROFILE_FILE = "profile.json"
STAGE_ONE_SUFFIX = "_profile"


def cells(dataset: str) -> list[Cell]:
    """adam, ada-nsgda, sgda and nsgda (one lr for every layer), each over its log grid."""
    return [Cell(n, StepSizes(grid=tuple(GRIDS[n])), dataset=dataset) for n in GRIDS]


def with_profile(sweep: Sweep, profile: Mapping[str, float]) -> Sweep:
    """``sweep`` plus the ``nsgda-profile`` cell (nsgda's grid, each layer scaled)."""
    cell = Cell(
        "nsgda",
        StepSizes(grid=tuple(GRIDS["ada-nsgda"])),  # profile values are Adam-sized steps
        dataset=sweep.cells[0].dataset,
        overrides={"optimizer_options": {"scales": dict(profile)}},
        label=PROFILE_LABEL,
    )
    return replace(sweep, cells=[*sweep.cells, cell])


def stylegan2_smoke(sweep: Sweep, data: Path | None = None) -> Sweep:
    """The image smoke (first two cells, CPU) at 16 px with tiny channels, keeping the profile
    cell when there is one; on generated images, or with ``data`` (the directory ``smoke_data``
    prepared) on the sweep's own data set from there."""
    small = smoke(sweep)
    extra = [
        replace(c, dataset=None, lrs=replace(c.lrs, grid=c.lrs.grid[len(c.lrs.grid) // 2 :][:1]))
        for c in sweep.cells[2:]
        if c.label == PROFILE_LABEL
    ]
    fixed = {**small.fixed, **TINY}
    if data is not None:
        dataset = sweep.cells[0].dataset
        fixed.pop("generated_size", None)
        fixed.update(
            dataset=dataset,
            data_path=str(smoke_data.zip_path(data, dataset, TINY["resolution"])),
            fid_cache=str(data / smoke_data.FID_CACHE),  # never another zip's statistics
        )
    return replace(small, cells=[*small.cells, *extra], fixed=fixed)


def own_data_smoke(sweep: Sweep, args: argparse.Namespace) -> Callable[[Sweep], Sweep]:
    """``stylegan2_smoke`` on the sweep's own data set, its smoke zip prepared first (once per
    storage) when the data set has smoke originals; else on generated images."""
    dataset = sweep.cells[0].dataset
    if dataset not in smoke_data.SHAPES:
        return stylegan2_smoke
    where = smoke_data.place(storage_root(args.storage))
    smoke_data.prepared(where, dataset, TINY["resolution"])
    return functools.partial(stylegan2_smoke, data=where)


def profile_sweep(sweep: Sweep) -> Sweep:
    """Stage 1: one ada-nsgda trial (seed 0) at the experiment's default step size."""
    dataset = sweep.cells[0].dataset
    config = {"experiment": sweep.experiment, "optimizer": "ada-nsgda", "seed": 0, **sweep.fixed}
    lr = experiments.resolve_config({**config, "dataset": dataset})["lr_g"]
    return replace(
        sweep,
        name=sweep.name + STAGE_ONE_SUFFIX,
        cells=[Cell("ada-nsgda", StepSizes(grid=(lr,)), dataset=dataset)],
        seeds=[0],
        confirm_seeds=(),  # one run that measures magnitudes: nothing to confirm
    )


def profile_option(p: argparse.ArgumentParser) -> None:
    """The scripts' own option, beside the engine's."""
    p.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="skip stage 1: the profile (profile.json of a stage 1, or python -m trainers profile)",
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The engine's options and ``--profile``."""
    p = parser()
    profile_option(p)
    return p.parse_args(argv)


def load_profile(path: str) -> dict[str, float]:
    """A two-player profile file ("G/<layer>", "D/<layer>" keys); ValueError if it is not."""
    profile = optim.load_scale_profile(path)
    players = {k.split("/", 1)[0] for k in profile if "/" in k}
    if players != {"G", "D"}:
        raise ValueError(f"{path}: not a two-player profile (keys 'G/<layer>' and 'D/<layer>')")
    return profile


def experiment_dir(name: str, args: argparse.Namespace) -> str:
    """Where the sweep ``name`` lives for these command-line options (``--smoke`` included)."""
    return experiment_path(args.storage, name + ("_smoke" if args.smoke else ""))


def stage_one(
    sweep: Sweep, args: argparse.Namespace, small: Callable[[Sweep], Sweep] = stylegan2_smoke
) -> tuple[int, dict[str, float] | None]:
    """Run stage 1 (or take its saved profile, or resume it) with the smoke version
    ``small``: (exit code, profile)."""
    first = profile_sweep(sweep)
    path = experiment_dir(first.name, args)
    saved = storage.read_text(path, PROFILE_FILE)
    if saved is not None:
        print(f"stage 1: using the profile in {path}/{PROFILE_FILE}")
        return 0, json.loads(saved)
    if args.resume and not storage.exists(path):
        args = argparse.Namespace(**{**vars(args), "resume": False})  # stage 1 never began
    print(f"stage 1: the ada-nsgda profile run ({first.name})")
    outcome = run_from_args(first, args, smoke=small)
    if outcome.code:
        return outcome.code, None
    if not outcome.checkpoints:
        print(f"gansweep: stage 1 left no checkpoint under {path}", file=sys.stderr)
        return 1, None
    (checkpoint,) = outcome.checkpoints.values()
    with checkpoint.as_directory() as local:
        profile = optim.checkpoint_profile(local)
    storage.write_text(path, PROFILE_FILE, json.dumps(profile, indent=1, sort_keys=True) + "\n")
    print(f"stage 1: wrote {len(profile)} layer scales to {path}/{PROFILE_FILE}")
    return 0, profile


def run_with_profile(
    sweep: Sweep, args: argparse.Namespace, profile_from: str | None = None
) -> int:
    """Stage 2 with ``--profile FILE``, else with the profile of the stage 1 named
    ``profile_from`` (another sweep's, e.g. FFHQ's for LSUN Church), else after running this
    sweep's own stage 1. Returns the exit code."""
    try:  # the options, before the smoke writes its data
        check_options(
            storage_root(args.storage),
            args.address,
            args.max_concurrent,
            args.num_cpus,
            args.optuna_storage,
            args.dashboard_port if args.dashboard else None,
        )
        addresses.check(args.address)
    except SweepError as e:
        print(f"gansweep: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    profile = None
    if args.profile is None and profile_from is not None:
        path = experiment_dir(profile_from + STAGE_ONE_SUFFIX, args)
        saved = storage.read_text(path, PROFILE_FILE)
        if saved is None:
            print(
                f"gansweep: no profile at {path}/{PROFILE_FILE}: run the {profile_from} sweep "
                "first (its stage 1 writes it), or pass --profile FILE",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        profile = json.loads(saved)
    elif args.profile is not None:
        try:
            profile = load_profile(args.profile)
        except FileNotFoundError as e:
            print(f"gansweep: --profile: {e}", file=sys.stderr)
            return EXIT_MISSING_FILE
        except (OSError, ValueError) as e:
            print(f"gansweep: --profile: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    small = own_data_smoke(sweep, args) if args.smoke else stylegan2_smoke
    if profile is None:
        code, profile = stage_one(sweep, args, small)
        if code:
            return code
    print(f"stage 2: the comparison ({sweep.name}), nsgda with {len(profile)} layer scales")
    return run_from_args(with_profile(sweep, profile), args, smoke=small).code
