"""The sweep engine's wall time against a plain sequential loop over the same trials.

N bimodal nsgda trials (4 step sizes x 4 seeds; `--steps` sets their length, about 10 s each by
default on this 2-core CPU) run once by the engine on a local Ray with 2 CPUs and once one after
another in this process through ``trainers.loop.train``. Prints both wall times, their ratio
(target <= 0.7: parallelism must beat overhead) and the engine's overhead per trial (target
< 1 s): (engine wall - loop wall / CPUs) / (N / CPUs).

    python benchmarks/sweep_overhead.py [--steps 8000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from sweeps.engine import Cell, StepSizes, Sweep, run
from trainers import experiments, loop

CPUS = 2


def sweep(steps: int) -> Sweep:
    return Sweep(
        name="overhead",
        experiment="bimodal",
        metric="miss_both",
        seeds=[0, 1, 2, 3],
        fixed={"steps": steps, "eval_every": steps // 20, "checkpoint_every": steps // 4},
        cells=[Cell("nsgda", StepSizes(grid=(2e-3, 4e-3, 8e-3, 1.6e-2), ratios=(2.0,)))],
    )


def plain_loop(spec: Sweep) -> float:
    """Wall seconds to train every trial of ``spec`` one after another in this process."""
    configs = [
        spec.trial_config(cell, lr, cell.lrs.ratios[0], seed)
        for cell in spec.cells
        for lr in cell.lrs.grid
        for seed in spec.seeds
    ]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            cfg = experiments.resolve_config(config)
            loop.train(cfg, on_report=lambda report, ckpt: None, scratch=tmp)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000)
    args = parser.parse_args()
    spec = sweep(args.steps)
    n = spec.total_trials()

    base = plain_loop(spec)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=CPUS, include_dashboard=False, logging_level="WARNING")
    start = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as storage:
        t0 = time.perf_counter()
        outcome = run(spec, ["--storage", storage, "--num-cpus", str(CPUS)])
        engine = time.perf_counter() - t0 + start
    assert outcome.code == 0
    per_trial = (engine - base / CPUS) / (n / CPUS)
    inside = float(outcome.trials["time_s"].mean())
    print(f"\n{n} trials of {args.steps} steps (about {base / n:.1f} s each)")
    print(f"plain sequential loop (1 process): {base:8.1f} s")
    print(
        f"sweep engine (local Ray, {CPUS} CPUs):  {engine:8.1f} s (of which starting Ray {start:.1f} s)"
    )
    print(f"ratio engine / loop: {engine / base:.2f} (target <= 0.7)")
    print(f"engine overhead per trial: {per_trial:.2f} s (target < 1 s)")
    print(f"  without starting Ray: {(engine - start - base / CPUS) / (n / CPUS):.2f} s")
    print(f"  of which training itself ran slower: {inside:.1f} s per trial inside the engine")


if __name__ == "__main__":
    main()
