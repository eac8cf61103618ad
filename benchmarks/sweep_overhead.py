"""The sweep engine's wall time against a plain sequential loop over the same trials.

Bimodal nsgda trials (4 step sizes x S seeds; ``--steps`` sets their length, about 7 s each at
16000 steps on this 2-core CPU) run by the engine on a local Ray with 2 CPUs and one after
another in this process through ``trainers.trial.loop.train``. Prints the wall times, their ratio for
N = 16 trials (target <= 0.7: parallelism must beat overhead) and the engine's overhead per trial
(target < 1 s), two ways:

* amortised: (engine wall - loop wall / CPUs) / (N / CPUs), everything included: starting Ray,
  the first trial of each worker importing torch, the end-of-sweep collection and table, and the
  last trial running alone on one CPU;
* marginal (``--marginal``): the engine on N and on 2N trials; the extra N trials' engine time
  minus their loop time / CPUs, per N / CPUs trials: what each further trial costs.

A second baseline says what this machine's CPUs allow: the same trials on a process pool of
``CPUS`` spawned processes without Ray (one queue, one intra-op thread each; each process
starts Python and imports torch, as each engine worker does). Its summed trial time against
the loop's is how much slower a trial trains while every CPU is busy (on this shared 2-vCPU
machine: 1.2-1.3x), so ``pool trial seconds / CPUS / loop`` is the best ratio any engine
could reach in that run (slightly below it: each pool process imports ``torch._dynamo``, ~2 s,
in its first trial, the loop once); ``engine / pool`` is what Ray and the engine add beyond it.

    python benchmarks/sweep_overhead.py [--steps 16000] [--marginal]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from sweeps.engine import Cell, StepSizes, Sweep, run
from trainers import experiments
from trainers.trial import loop

CPUS = 2


def sweep(steps: int, seeds: int = 4, name: str = "overhead") -> Sweep:
    return Sweep(
        name=name,
        experiment="bimodal",
        metric="miss_both",
        seeds=list(range(seeds)),
        fixed={"steps": steps, "eval_every": steps // 20, "checkpoint_every": steps // 4},
        cells=[Cell("nsgda", StepSizes(grid=(2e-3, 4e-3, 8e-3, 1.6e-2), ratios=(2.0,)))],
    )


def trial_configs(spec: Sweep) -> list[tuple[int, dict]]:
    """(seed, trial config) of every trial of ``spec``, in the engine's order (step size, seed)."""
    return [
        (seed, spec.trial_config(cell, lr, cell.lrs.ratios[0], seed))
        for cell in spec.cells
        for lr in cell.lrs.grid
        for seed in spec.seeds
    ]


def train_one(config: dict) -> float:
    """Wall seconds to train one trial here, on one intra-op thread as each engine trial has
    (Ray gives a 1-CPU trial OMP_NUM_THREADS=1; two threads make these tiny networks slower
    here, which would flatter the engine)."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        loop.train(experiments.resolve_config(config), on_report=lambda r, c: None, scratch=tmp)
        return time.perf_counter() - t0


def plain_loop(spec: Sweep) -> dict[int, float]:
    """Wall seconds per seed to train every trial of ``spec`` one after another here."""
    per_seed = dict.fromkeys(spec.seeds, 0.0)
    for seed, config in trial_configs(spec):
        per_seed[seed] += train_one(config)
    return per_seed


def pool(spec: Sweep) -> tuple[float, float]:
    """(wall seconds, summed trial seconds) of every trial of ``spec`` on a pool of ``CPUS``
    spawned processes taking trials from one queue, in the engine's order."""
    import multiprocessing

    configs = [config for _, config in trial_configs(spec)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(CPUS) as workers:
        seconds = list(workers.imap_unordered(train_one, configs, chunksize=1))
    return time.perf_counter() - t0, sum(seconds)


def engine(spec: Sweep) -> tuple[float, float]:
    """(wall seconds of the sweep on a fresh local Ray, of which starting Ray)."""
    import ray

    from sweeps.engine import driver

    ray.shutdown()
    t0 = time.perf_counter()
    driver.start_ray(None, CPUS)  # as run() starts it, with the trial workers' import hook
    start = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as storage:
        outcome = run(spec, storage=storage, num_cpus=CPUS)
    wall = time.perf_counter() - t0
    assert outcome.code == 0
    ray.shutdown()
    return wall, start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--marginal", action="store_true", help="also run 2N trials")
    args = parser.parse_args()
    seeds = 8 if args.marginal else 4
    per_seed = plain_loop(sweep(args.steps, seeds))
    small = sweep(args.steps, 4)
    n = small.total_trials()
    base = sum(per_seed[s] for s in small.seeds)
    pool_wall, pool_trials = pool(small)
    wall, start = engine(small)
    per_trial = (wall - base / CPUS) / (n / CPUS)
    print(f"\n{n} trials of {args.steps} steps (about {base / n:.1f} s each)")
    print(f"plain sequential loop (1 process): {base:8.1f} s")
    print(
        f"sweep engine (local Ray, {CPUS} CPUs):  {wall:8.1f} s (of which starting Ray {start:.1f} s)"
    )
    print(f"ratio engine / loop: {wall / base:.2f} (target <= 0.7)")
    print(
        f"process pool ({CPUS} spawned processes, no Ray): {pool_wall:8.1f} s; its trials "
        f"{pool_trials:.1f} s summed, {pool_trials / base:.2f}x the loop's with every CPU busy"
    )
    print(
        f"  best ratio this machine allowed in this run: {pool_trials / CPUS / base:.2f}; "
        f"ratio engine / pool: {wall / pool_wall:.2f}"
    )
    print(f"engine overhead per trial, amortised: {per_trial:.2f} s (target < 1 s)")
    print(f"  without starting Ray: {(wall - start - base / CPUS) / (n / CPUS):.2f} s")
    if args.marginal:
        big = sweep(args.steps, 8, name="overhead2")
        wall2, start2 = engine(big)
        extra_loop = sum(per_seed.values()) - base
        extra = (wall2 - start2) - (wall - start)
        marginal = (extra - extra_loop / CPUS) / (n / CPUS)
        loop2 = sum(per_seed.values())
        print(f"{2 * n} trials: loop {loop2:.1f} s, engine {wall2:.1f} s")
        amortised2 = (wall2 - loop2 / CPUS) / (2 * n / CPUS)
        print(f"  amortised over {2 * n} trials: {amortised2:.2f} s per trial")
        print(f"engine overhead per trial, marginal (N -> 2N): {marginal:.2f} s (target < 1 s)")
        fixed = (wall - start - base / CPUS) - marginal * n / CPUS
        print(f"  fixed per sweep beyond starting Ray: {fixed:.1f} s")


if __name__ == "__main__":
    main()
