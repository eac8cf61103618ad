"""The StyleGAN2 experiment's iteration equals the plain one of benchmarks/stylegan2_plain.py
bit for bit (the benchmark's check 1, at tiny sizes), so the two cannot drift apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from trainers import experiments

PLAIN = Path(__file__).resolve().parents[1] / "benchmarks" / "stylegan2_plain.py"
ITERS = 5  # iteration 0 takes both regularisers, iteration 4 path length again


def _plain_module():
    """benchmarks/ is scripts, not a package: load the reference iteration from its file."""
    spec = importlib.util.spec_from_file_location("stylegan2_plain", PLAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_experiment_iterates_exactly_as_the_plain_loop(one_thread):
    plain = _plain_module()
    cfg = plain.experiment_config(resolution=8, cbase=64, cmax=16, batch=4, generated_size=16)
    exp = experiments.build(cfg)
    ref = plain.PlainStyleGAN2(cfg, exp.data.images, plain.experiment_adam(cfg), "cpu")
    _, worst, same_init = plain.compare(exp, ref, ITERS)
    assert same_init
    assert worst == dict.fromkeys(plain.LOSSES, 0.0)
    for ours, mine in (
        (exp.players["G"], ref.G),
        (exp.players["D"], ref.D),
        (exp.G_ema, ref.G_ema),
    ):
        for (name, a), b in zip(ours.state_dict().items(), mine.state_dict().values()):
            assert torch.equal(a, b), name
