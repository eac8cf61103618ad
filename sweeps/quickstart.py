"""The quickstart: the paper's synthetic experiments on a laptop CPU in minutes.

Two sweeps on a local Ray, each cell with its own Optuna grid study and several seeds, then
each cell's chosen step size on fresh confirmation seeds (what the tables report):
- bimodal theory setting (Sec. 3): does the generator learn both modes? sgda vs nsgda vs
  ada-nsgda vs adam (metric: share of seeds that miss "both");
- mixture of 8 Gaussians (Nagarajan & Kolter): adam with and without the GD-regulariser, and
  nsgda (metric: KL of the mode histogram to uniform; 0 is balanced, log 8 = 2.08 collapsed).

    python sweeps/quickstart.py [--smoke] [--storage DIR] [--num-cpus N]

Results go under runs/quickstart/ (rerunning resumes and reprints the tables); the report
(tables, figures, parquet) under runs/quickstart/report/.
"""

from __future__ import annotations

import shlex
import sys

from analysis import storage
from sweeps.engine import Cell, StepSizes, Sweep, run, smoke_version
from sweeps.engine.cli import describe, parser
from sweeps.engine.driver import DEFAULT_STORAGE, storage_root

SEEDS = [0, 1, 2]

BIMODAL = Sweep(
    name="bimodal",
    experiment="bimodal",
    metric="miss_both",
    seeds=SEEDS,
    confirm_seeds=3,  # each cell's chosen step size on fresh seeds 3-5: the table's numbers
    cells=[
        Cell("sgda", StepSizes(grid=(0.1, 1.0))),
        Cell("nsgda", StepSizes(grid=(3.75e-3, 7.5e-3), ratios=(2.0,))),
        Cell("ada-nsgda", StepSizes(grid=(2.5e-4, 1e-3), ratios=(2.0,))),
        Cell("adam", StepSizes(grid=(2.5e-4, 1e-3), ratios=(2.0,))),
    ],
)

MOG = Sweep(
    name="mog",
    experiment="mog",
    metric="mode_kl",
    seeds=SEEDS[:2],
    confirm_seeds=2,  # fresh seeds 2-3
    fixed={"steps": 2000, "eval_every": 500, "checkpoint_every": 1000, "eval_samples": 4000},
    cells=[
        Cell("adam", StepSizes(grid=(1e-4,)), overrides={"gd_reg": 0.5}, label="adam+gd_reg"),
        Cell("adam", StepSizes(grid=(1e-4,)), overrides={"gd_reg": 0.0}, label="adam"),
        Cell("nsgda", StepSizes(grid=(1e-3,)), overrides={"gd_reg": 0.0}, label="nsgda"),
    ],
)


def smoke(sweep: Sweep) -> Sweep:
    """Two seeds, one step size per cell, one confirmation seed, short runs."""
    from dataclasses import replace

    cells = [replace(c, lrs=replace(c.lrs, grid=c.lrs.grid[:1])) for c in sweep.cells]
    fixed = {**sweep.fixed, "steps": 300, "eval_every": 100, "checkpoint_every": 100}
    confirm = sweep.confirmation_seeds()[:1]
    return replace(sweep, cells=cells, seeds=sweep.seeds[:2], confirm_seeds=confirm, fixed=fixed)


def main(argv: list[str] | None = None) -> int:
    epilog = "\n\n".join(describe(s) for s in (BIMODAL, MOG))
    args = parser(__doc__.strip(), epilog).parse_args(argv)
    root = storage_root(args.storage or f"{DEFAULT_STORAGE}/quickstart")
    problem = storage.directory_problem(root)
    if problem is not None:
        print(f"gansweep: --storage {problem}: give a directory or a bucket URI", file=sys.stderr)
        return 2
    command = sys.argv if argv is None else ["sweeps/quickstart.py", *argv]
    hint = shlex.join(["python", *(a for a in command if a != "--resume")])  # a rerun resumes
    code = 0
    for sweep in (BIMODAL, MOG):
        if args.smoke:
            sweep = smoke_version(sweep, smoke)
        outcome = run(
            sweep,
            storage=root,
            address=args.address,
            resume=storage.exists(storage.join(root, sweep.name)),  # each resumes when it exists
            max_concurrent=args.max_concurrent,
            num_cpus=args.num_cpus,
            resume_hint=hint,
            optuna_storage=args.optuna_storage,
            dashboard_port=args.dashboard_port if args.dashboard else None,
        )
        code = outcome.code
        if code != 0:  # bad input, interrupted or incomplete: the next sweep waits
            break
    if code == 0:
        import analysis

        report = analysis.report([root], out=f"{root}/report")
        print(f"\nreport: {report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
