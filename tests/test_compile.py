"""The ``compile`` config key: validated, recorded, off by default; compiled runs train as eager.

torch.compile on the CPU (Inductor) needs a C++ compiler; without one the comparison skips.
Compiling takes minutes on a shared 2-core CPU, hence ``slow``; StyleGAN2 is compared under
Dynamo's "aot_eager" backend (the same graph capture and AOTAutograd split, no C++ code
generation: Inductor took over 15 minutes for it here), DCGAN and WGAN-GP under Inductor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from trainers import experiments
from trainers.config import ConfigError
from trainers.experiments import image_gan

IMAGE = {
    "dataset": "generated",
    "generated_size": 32,
    "batch_size": 4,
    "fid_extractor": "randconv",
    "fid_num_gen": 8,
    "fid_num_gen_final": 8,
    "fid_workers": 1,
    "kid": "never",
}
TINY = {
    "dcgan": {**IMAGE, "width": 0.0625, "z_dim": 8},
    "wgangp": {**IMAGE, "width": 0.0625, "z_dim": 8, "n_dis": 2},
    "stylegan2": {
        **IMAGE,
        "resolution": 8,
        "cbase": 64,
        "cmax": 8,
        "z_dim": 8,
        "r1_interval": 2,
        "pl_interval": 2,
    },
}
STEPS = 3
BACKEND = {"dcgan": "inductor", "wgangp": "inductor", "stylegan2": "aot_eager"}
RTOL = 1e-4  # Inductor fuses and reorders float32 sums: equal up to rounding, not bit for bit


def config(experiment: str, **extra) -> dict:
    return {"experiment": experiment, "optimizer": "adam", "seed": 0, **TINY[experiment], **extra}


@pytest.mark.parametrize("experiment", sorted(TINY))
def test_compile_is_off_by_default_and_recorded(experiment):
    assert experiments.resolve_config(config(experiment))["compile"] is False
    assert experiments.resolve_config(config(experiment, compile=True))["compile"] is True


def test_a_bad_compile_value_is_exit_2_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="'compile' = 'yes'.*bool"):
        experiments.resolve_config(config("dcgan", compile="yes"))
    out = tmp_path / "trial"
    proc = subprocess.run(
        [sys.executable, "-m", "trainers", "run", json.dumps(config("dcgan", compile=1))]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "'compile' = 1" in proc.stderr
    assert not out.exists()


def losses(cfg: dict) -> list[dict[str, float]]:
    torch.manual_seed(0)  # StyleGAN2's noise comes from the global stream
    exp = experiments.build(experiments.resolve_config(cfg))
    return [{k: float(v) for k, v in exp.train_step().items()} for _ in range(STEPS)]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # Inductor compiles for minutes on a loaded 2-core CPU
@pytest.mark.skipif(not shutil.which("g++"), reason="torch.compile on the CPU needs g++")
@pytest.mark.parametrize("experiment", sorted(TINY))
def test_compiled_runs_give_the_eager_losses(experiment, one_thread, monkeypatch):
    # compiled code draws random numbers as eager code does (StyleGAN2's noise inside G)
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(image_gan, "COMPILE_BACKEND", BACKEND[experiment])
    torch._dynamo.reset()
    # the config module's own patch (monkeypatch's undo of a config attribute can lose it)
    with inductor_config.patch(fallback_random=True):
        eager = losses(config(experiment))
        fast = losses(config(experiment, compile=True))
    assert fast[0].keys() == eager[0].keys()
    for step, (a, b) in enumerate(zip(fast, eager)):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=RTOL, abs=1e-6), (step, key)
