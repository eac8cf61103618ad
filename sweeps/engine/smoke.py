"""The ``--smoke`` version of a sweep: the same cells in minutes on a CPU, under its own name.

Every sweep has one: each cell keeps one step size (the middle of its grid, or one TPE trial)
and its first lr_D/lr_G ratio, the first two seeds run (and the first confirmation seed, if the
sweep has them), and the experiment's short settings
below replace the long ones (tiny networks on generated images for the image GANs), on one
CPU per trial. A script may pass its own (``main(sweep, smoke=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sweeps.engine.spec import Cell, Resources, Sweep

SHORT = {"steps": 300, "eval_every": 100, "checkpoint_every": 100}
IMAGES = {
    "dataset": "generated",
    "generated_size": 64,
    "device": "cpu",
    "width": 0.125,
    "batch_size": 8,
    "steps": 6,
    "eval_every": 3,
    "checkpoint_every": 3,
    "lr_decay_steps": None,
    "fid_num_gen": 32,
    "fid_num_gen_final": 64,
    "fid_extractor": "randconv",
    "kid": "never",
}
STYLEGAN2 = {"resolution": 16, "cbase": 128, "cmax": 16, "z_dim": 16, "batch_size": 4}

# trainer-config keys each experiment's smoke version sets
SETTINGS: dict[str, dict[str, Any]] = {
    "bimodal": SHORT,
    "mog": {**SHORT, "eval_samples": 2000},
    "dcgan": IMAGES,
    "wgangp": IMAGES,
    "stylegan2": {**IMAGES, **STYLEGAN2},
}


def one_step_size(cell: Cell, settings: dict[str, Any]) -> Cell:
    """The cell with the middle step size of its grid (or one TPE trial) and its first ratio;
    on the smoke's own data when ``settings`` name a dataset."""
    lrs = cell.lrs
    if lrs.grid:
        lrs = replace(lrs, grid=(lrs.grid[len(lrs.grid) // 2],), ratios=lrs.ratios[:1])
    else:
        lrs = replace(lrs, trials=1, ratios=lrs.ratios[:1])
    if "dataset" in settings:
        return replace(cell, lrs=lrs, dataset=None)
    return replace(cell, lrs=lrs)


def default_smoke(sweep: Sweep) -> Sweep:
    """Every cell at one step size, two seeds, the experiment's short settings, one CPU."""
    settings = SETTINGS.get(sweep.experiment, SHORT)
    cells = [one_step_size(c, settings) for c in sweep.cells]
    if len({c.name for c in cells}) < len(cells):  # cells that differed only by their data
        cells = [replace(c, label=o.name) for c, o in zip(cells, sweep.cells, strict=True)]
    return replace(
        sweep,
        cells=cells,
        seeds=list(sweep.seeds)[:2],
        confirm_seeds=sweep.confirmation_seeds()[:1],
        fixed={**sweep.fixed, **settings},
        resources=Resources(cpu=1, gpu=0),
    )


def smoke_version(sweep: Sweep, smoke: Callable[[Sweep], Sweep] | None = None) -> Sweep:
    """The sweep's smoke version (``smoke``, or ``default_smoke``), named ``<name>_smoke`` so
    its results never mix with the real sweep's."""
    small = (smoke or default_smoke)(sweep)
    return replace(small, name=f"{sweep.name}_smoke")
