"""Training steps of the synthetic experiments with our optimizer step against the same step
through torch.optim's own wrapper (a profiler label and the step hooks on every call).

``Graft.profile_hook_step`` takes torch's wrapper only when a hook is registered or a profiler
records; on the tiny networks of the bimodal and mixture-of-Gaussians settings the wrapper is a
large share of a step on the CPU. Both arms train the same experiment object (same parameters
and data), interleaved, one intra-op thread as each sweep trial has; the ratio is of medians.

    python benchmarks/step_wrapper.py [--steps 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import types

import torch
from timing import alternate  # benchmarks/timing.py (run as a script)

from trainers import experiments
from trainers.optim.graft import Graft

SETTINGS = {
    "bimodal nsgda": {"experiment": "bimodal", "optimizer": "nsgda", "lr_g": 4e-3, "lr_d": 8e-3},
    "bimodal adam": {"experiment": "bimodal", "optimizer": "adam", "lr_g": 1e-4, "lr_d": 2e-4},
    "mog adam": {"experiment": "mog", "optimizer": "adam", "lr_g": 1e-3, "lr_d": 1e-3},
}
SLOWER = {"mog adam": 10}  # its step is ~15x a bimodal one: a tenth of the steps


def steps_of(experiment: experiments.Experiment, steps: int) -> None:
    for _ in range(steps):
        experiment.train_step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    built = {
        name: experiments.build(experiments.resolve_config({**config, "seed": 0}))
        for name, config in SETTINGS.items()
    }
    ours = Graft.step  # as patched by the first Graft: torch's wrapper only when observed
    assert getattr(ours, "hooked", False), "Graft.step was not patched"
    torchs = torch.optim.Optimizer.profile_hook_step(ours.__wrapped__)  # wrapper every call
    device = torch.device("cpu")
    ratios = []
    for name, experiment in built.items():
        steps = args.steps // SLOWER.get(name, 1)
        optimizers = list(experiment.optimizers.values())

        def arm(step, optimizers=optimizers, experiment=experiment, steps=steps):
            def run() -> None:
                for o in optimizers:
                    o.step = types.MethodType(step, o)
                steps_of(experiment, steps)

            return run

        steps_of(experiment, 200)  # warm up
        a, b = alternate(arm(torchs), arm(ours), args.repeats, device)
        t_torch, t_ours = (statistics.median(t) / steps * 1e6 for t in (a, b))
        ratios.append(t_ours / t_torch)
        print(
            f"{name:14s} step: torch.optim's wrapper {t_torch:7.1f} us, ours {t_ours:7.1f} us,"
            f" ratio {t_ours / t_torch:.2f}",
            flush=True,
        )
    print(
        f"training step, ours / torch.optim's wrapper: median ratio {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
