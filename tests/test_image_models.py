"""DCGAN and ResNet WGAN-GP networks, the gradient penalty, and the image experiments."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from trainers import experiments, models
from trainers.experiments.wgangp import WGANGP
from trainers.losses import wgan as penalties
from trainers.optim import named_param_groups
from trainers.trial.run import run_trial

SMALL = {
    "dataset": "generated",
    "generated_size": 64,
    "width": 0.0625,
    "batch_size": 4,
    "fid_extractor": "randconv",
    "fid_num_gen": 16,
    "fid_num_gen_final": 24,
    "fid_workers": 1,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_wgangp_cifar10_networks_have_the_published_sizes_and_shapes():
    G, D = models.build("wgangp_resnet", resolution=32)
    # Linear 128->2048 (264,192) + 3 up-blocks (312,192 each) + BN and conv to RGB (3,715)
    assert n_params(G) == 264_192 + 3 * 312_192 + 3_715 == 1_204_483
    # optimised block 151,680 + down block 311,680 + 2 plain blocks 295,168 each + linear 129
    assert n_params(D) == 151_680 + 311_680 + 2 * 295_168 + 129 == 1_053_825
    x = G(torch.randn(3, 128))
    assert x.shape == (3, 3, 32, 32) and x.abs().max() <= 1
    assert D(x).shape == (3,)


def test_wgangp_stl10_networks_are_48px():
    G, D = models.build("wgangp_resnet", resolution=48, width=0.25)
    x = G(torch.randn(2, 128))
    assert x.shape == (2, 3, 48, 48)
    assert D(x).shape == (2,)
    assert G.fc.out_features == 6 * 6 * 128  # 512 channels at width 1
    assert D.fc.in_features == 256  # 1024 channels at width 1
    with pytest.raises(ValueError, match="resolution=64"):
        models.build("wgangp_resnet", resolution=64)


def test_dcgan_networks_have_the_radford_32px_layout():
    G, D = models.build("dcgan")
    # ConvT 100->512, 512->256, 256->128, 128->3 (4x4, no bias) + BN 512, 256, 128
    assert n_params(G) == 16 * (100 * 512 + 512 * 256 + 256 * 128 + 128 * 3) + 2 * 896
    # Conv 3->128, 128->256, 256->512, 512->1 (4x4, no bias) + BN 256, 512
    assert n_params(D) == 16 * (3 * 128 + 128 * 256 + 256 * 512 + 512) + 2 * 768
    x = G(torch.randn(5, 100))
    assert x.shape == (5, 3, 32, 32)
    assert D(x).shape == (5,)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in list(D.net)[:2])


@pytest.mark.parametrize("name", ["dcgan", "wgangp_resnet"])
def test_every_layer_is_its_own_param_group_and_init_follows_the_seed(name):
    G, D = models.build(name, seed=3)
    G2, _ = models.build(name, seed=3)
    G3, _ = models.build(name, seed=4)
    for net in (G, D):
        groups = named_param_groups(net, "layer")
        owners = [m for m in net.modules() if list(m.parameters(recurse=False))]
        assert len(groups) == len(owners)
        assert all(len(g["params"]) <= 2 for g in groups)  # weight (+ bias)
    same = all(torch.equal(a, b) for a, b in zip(G.parameters(), G2.parameters()))
    differ = any(not torch.equal(a, b) for a, b in zip(G.parameters(), G3.parameters()))
    assert same and differ


def test_gradient_penalty_matches_a_hand_computation_for_a_linear_critic():
    w = torch.tensor([[[[3.0]], [[0.0]], [[4.0]]]], requires_grad=True)  # ||w|| = 5 per pixel

    def critic(x):
        return (x * w).sum(dim=(1, 2, 3))

    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    gp = penalties.gradient_penalty(critic, real, fake, torch.rand(4), weight=10.0)
    # grad_x critic = w at every pixel: norm sqrt(4 pixels * 25) = 10 for every sample
    assert gp.item() == pytest.approx(10.0 * (10.0 - 1.0) ** 2)
    (dw,) = torch.autograd.grad(gp, w)  # d/dw 10 (2||w|| - 1)^2 = 10 * 2 * 9 * 2 w / ||w||
    assert torch.allclose(dw, 10 * 2 * 9 * 2 * w.detach() / 5)


def test_gradient_penalty_uses_one_alpha_per_sample():
    def critic(x):  # grad_x = x_hat, so the norm is that of the interpolate
        return 0.5 * x.square().sum(dim=(1, 2, 3))

    real, fake = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    alpha = torch.tensor([0.0, 0.5, 1.0])
    gp = penalties.gradient_penalty(critic, real, fake, alpha, weight=2.0)
    norms = torch.stack([fake[0].norm(), (0.5 * real[1] + 0.5 * fake[1]).norm(), real[2].norm()])
    assert gp.item() == pytest.approx(2.0 * (norms - 1).square().mean().item(), rel=1e-5)


def test_a_few_critic_steps_on_generated_images_lower_the_critic_loss():
    cfg = experiments.resolve_config(
        {"experiment": "wgangp", "optimizer": "adam", "seed": 0, **SMALL, "lr_d": 1e-3}
    )
    exp = WGANGP(cfg)
    D, G = exp.players["D"], exp.players["G"]
    g = torch.Generator().manual_seed(7)
    real = exp.data.sample(32, g)
    with torch.no_grad():
        fake = G(torch.randn(32, cfg["z_dim"], generator=g))
    alpha = torch.rand(32, generator=g)

    def held_out_loss() -> float:
        w = -penalties.wgan_critic_loss(D(real), D(fake))
        return (penalties.gradient_penalty(D, real, fake, alpha) - w).item()

    before = held_out_loss()
    for _ in range(15):
        exp.critic_step()
    after = held_out_loss()
    assert after < before - 0.1, (before, after)


def test_dcgan_discriminator_steps_lower_its_loss():
    from trainers.losses import minimax as losses

    cfg = experiments.resolve_config(
        {"experiment": "dcgan", "optimizer": "adam", "seed": 0, **SMALL, "width": 0.125}
    )
    exp = experiments.build(cfg)
    G, D = exp.players["G"], exp.players["D"]
    g = torch.Generator().manual_seed(1)
    real = exp.data.sample(16, g)
    with torch.no_grad():
        fake = G(torch.randn(16, cfg["z_dim"], generator=g))
    before = float(losses.d_loss(D(real), D(fake)))
    for _ in range(10):
        exp.d_step()
    after = float(losses.d_loss(D(real), D(fake)))
    assert after < before - 0.1, (before, after)
    out = exp.train_step()
    assert math.isfinite(float(out["loss_g"])) and math.isfinite(float(out["loss_d"]))


def test_wgangp_defaults_reproduce_the_paper_and_lr_decays_linearly():
    cfg = experiments.resolve_config({"experiment": "wgangp", "optimizer": "adam", "seed": 0})
    assert (cfg["n_dis"], cfg["gp_weight"], cfg["batch_size"], cfg["g_batch_factor"]) == (
        5,
        10,
        64,
        2,
    )
    assert (cfg["steps"], cfg["lr_decay"], cfg["lr_decay_steps"]) == (45_000, "linear", 100_000)
    assert cfg["lr_d"] == cfg["lr_g"] == 2e-4
    assert cfg["optimizer_options"]["betas"] == [0.0, 0.9]
    assert cfg["steps"] * cfg["batch_size"] / 1000 == 2880  # kimg
    small = experiments.resolve_config(
        {
            "experiment": "wgangp",
            "optimizer": "sgda",
            "seed": 0,
            **SMALL,
            "steps": 4,
            "n_dis": 1,
            "lr_decay_steps": None,
            "eval_every_kimg": 0.008,
        }
    )
    assert small["eval_every"] == 2
    exp = experiments.build(small)
    lrs = []
    for _ in range(4):
        exp.train_step()
        lrs.append(exp.optimizers["D"].param_groups[0]["lr"] / small["lr_d"])
    assert lrs == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_image_config_errors_name_the_key():
    bad = {"experiment": "wgangp", "optimizer": "adam", "seed": 0}
    with pytest.raises(experiments.ConfigError, match="resolution"):
        experiments.resolve_config({**bad, "dataset": "cifar10", "resolution": 48})
    with pytest.raises(experiments.ConfigError, match="data_path"):
        experiments.resolve_config({**bad, "dataset": "folder"})
    with pytest.raises(experiments.ConfigError, match="resolution"):
        experiments.resolve_config({**bad, "experiment": "dcgan", "dataset": "stl10"})


def _rows(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("time_s")
    return rows


def test_resume_is_exact_and_rows_carry_the_fid_protocol(tmp_path):
    config = {
        "experiment": "wgangp",
        "optimizer": "ada-nsgda",
        "seed": 1,
        **SMALL,
        "steps": 4,
        "n_dis": 2,
        "eval_every": 2,
        "checkpoint_every": 2,
        "fid_cache": str(tmp_path / "fid"),
    }
    straight = run_trial(config, tmp_path / "a", quiet=True)
    run_trial(config, tmp_path / "b", quiet=True)
    checkpoints = sorted((tmp_path / "b" / "checkpoints").glob("step_*"))
    assert [c.name[-2:] for c in checkpoints] == ["02", "04"]
    shutil.rmtree(checkpoints[-1])  # as if killed before the last checkpoint
    resumed = run_trial(config, tmp_path / "b", quiet=True)
    rows_a, rows_b = (
        _rows(tmp_path / "a" / "results.jsonl"),
        _rows(tmp_path / "b" / "results.jsonl"),
    )
    assert rows_a == rows_b and len(rows_a) == 2
    assert straight["fid"] == resumed["fid"]
    for row in rows_a:
        for key in (
            "fid",
            "fid_best",
            "kid",
            "fid_num_gen",
            "fid_ref",
            "fid_mode",
            "fid_extractor",
        ):
            assert key in row
        assert row["fid_mode"] == "clean" and row["fid_extractor"] == "randconv32-s0"
        assert row["fid"] > 0 and row["fid_best"] <= row["fid"]
    assert [r["fid_num_gen"] for r in rows_a] == [16, 24]


def test_an_evaluation_gives_a_sample_grid_figure(tmp_path):
    cfg = experiments.resolve_config(
        {
            "experiment": "dcgan",
            "optimizer": "adam",
            "seed": 0,
            **SMALL,
            "fid_cache": str(tmp_path / "fid"),
        }
    )
    exp = experiments.build(cfg)
    assert exp.figures() == {}
    row = exp.evaluate(final=False)
    assert row["fid_num_gen"] == 16 and row["kid"] is None
    fig = exp.figures()["samples"]
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert exp.evaluate(final=True)["kid"] is not None


def test_experiments_set_the_cuda_backends_they_are_configured_with():
    import torch

    from trainers import experiments

    base = {"experiment": "dcgan", "optimizer": "adam", "seed": 0, "dataset": "generated"}
    base["fid_extractor"] = "randconv"
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    try:
        experiments.build(experiments.resolve_config({**base, "generated_size": 8}))
        assert torch.backends.cudnn.benchmark  # NVlabs' defaults: benchmark on, TF32 off
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        cfg = {**base, "generated_size": 8, "cudnn_benchmark": False, "allow_tf32": True}
        experiments.build(experiments.resolve_config(cfg))
        assert not torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = before
        torch.backends.cuda.matmul.allow_tf32 = False
