"""What the StyleGAN2 sweeps share: cells (with the nsgda-with-profile cell) and a CPU smoke."""

from __future__ import annotations

import sys
from dataclasses import replace

from sweeps.engine import Cell, StepSizes, Sweep
from sweeps.image_presets import GRIDS, smoke

TINY = {"resolution": 16, "cbase": 128, "cmax": 16, "z_dim": 16, "batch_size": 4}


def take_profile(argv: list[str]) -> str | None:
    """Remove ``--profile FILE`` from ``argv`` (the engine's own options stay); return FILE."""
    if "--profile" not in argv:
        return None
    i = argv.index("--profile")
    if i + 1 >= len(argv):
        sys.exit("--profile needs a file (written by trainers.profiles)")
    path = argv[i + 1]
    del argv[i : i + 2]
    return path


def cells(profile: str | None, dataset: str) -> list[Cell]:
    """adam, ada-nsgda, sgda, nsgda (global scale 1) and, given a profile, nsgda with it."""
    out = [Cell(n, StepSizes(grid=tuple(GRIDS[n])), dataset=dataset) for n in GRIDS]
    if profile:
        out.append(
            Cell(
                "nsgda",
                StepSizes(grid=tuple(GRIDS["ada-nsgda"])),
                dataset=dataset,
                overrides={"optimizer_options": {"scales": profile}},
                label="nsgda-profile",
            )
        )
    return out


def stylegan2_smoke(sweep: Sweep) -> Sweep:
    """The image smoke (two cells, generated images, CPU) at 16 px with tiny channels."""
    small = smoke(sweep)
    return replace(small, fixed={**small.fixed, **TINY})
