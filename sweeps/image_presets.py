"""What the image sweeps share: the paper's step-size grids and a CPU smoke version."""

from __future__ import annotations

from dataclasses import replace

from sweeps.engine import Cell, Resources, StepSizes, Sweep, log_grid
from sweeps.engine.smoke import IMAGES

# Coarse log grids (the paper's protocol). nSGDA's lr is the absolute per-layer step, about
# sqrt(layer size) times Adam's (whose unit step is sign-like), hence its higher range.
GRIDS = {
    "adam": log_grid(1e-5, 1e-2, 7),
    "ada-nsgda": log_grid(1e-5, 1e-2, 7),
    "sgda": log_grid(1e-4, 1e-1, 7),
    "nsgda": log_grid(1e-3, 1e0, 7),
}

SMOKE = IMAGES  # generated images, tiny networks, CPU (sweeps.engine.smoke)


def optimizer_cells(dataset: str, optimizers: tuple[str, ...] = tuple(GRIDS)) -> list[Cell]:
    """One cell per optimizer over its grid, on ``dataset``."""
    return [Cell(name, StepSizes(grid=tuple(GRIDS[name])), dataset=dataset) for name in optimizers]


def smoke(sweep: Sweep) -> Sweep:
    """Two cells, one step size each, two seeds (and one confirmation seed if the sweep has
    them), tiny networks on generated images of the sweep's own image size (48 px for STL-10,
    so its networks are the 48 px ones), CPU only."""
    from trainers.data.images import NATIVE_RESOLUTION

    sizes = {NATIVE_RESOLUTION.get(c.dataset or "") for c in sweep.cells} - {None}
    shape = {"resolution": sizes.pop()} if len(sizes) == 1 else {}
    cells = [
        replace(c, dataset=None, lrs=replace(c.lrs, grid=c.lrs.grid[len(c.lrs.grid) // 2 :][:1]))
        for c in sweep.cells[:2]
    ]
    return replace(
        sweep,
        cells=cells,
        seeds=list(sweep.seeds)[:2],
        confirm_seeds=sweep.confirmation_seeds()[:1],
        fixed={**sweep.fixed, **SMOKE, **shape},
        resources=Resources(cpu=1, gpu=0),
    )
