"""StyleGAN2: parameter parity, layer names, regularisers, lazy schedules, EMA, resume, profiles."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import nn

from trainers import experiments, optim
from trainers.experiments import stylegan2 as exp_mod
from trainers.models import stylegan2
from trainers.optim import profile as profiles
from trainers.trial.run import run_trial

TINY = {
    "experiment": "stylegan2",
    "dataset": "generated",
    "generated_size": 32,
    "resolution": 16,
    "cbase": 128,
    "cmax": 16,
    "z_dim": 16,
    "batch_size": 4,
    "fid_extractor": "randconv",
    "fid_num_gen": 8,
    "fid_num_gen_final": 8,
    "fid_workers": 1,
    "kid": "never",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _count(module: nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params), len(params)


def test_parameter_counts_match_nvlabs_at_128px():
    G, D = stylegan2.build(resolution=128)
    assert _count(G) == (22_949_277, 84)
    assert _count(G.mapping) == (525_312, 4)
    assert _count(D) == (23_882_369, 33)
    assert G.num_ws == 12


def test_shapes_and_stable_layer_names():
    G, D = stylegan2.build(resolution=16, cbase=128, cmax=16, z_dim=8, w_dim=8)
    img = G(torch.randn(3, 8))
    assert img.shape == (3, 3, 16, 16) and D(img).shape == (3, 1)
    names = [g["name"] for g in optim.named_param_groups(G)]
    assert names[:3] == ["mapping.fc0", "mapping.fc1", "synthesis.b4"]
    assert "synthesis.b16.conv0.affine" in names and names[-1] == "synthesis.b16.torgb.affine"
    d_names = [g["name"] for g in optim.named_param_groups(D)]
    assert d_names[:4] == ["b16.fromrgb", "b16.conv0", "b16.conv1", "b16.skip"]
    assert d_names[-3:] == ["b4.conv", "b4.fc", "b4.out"]
    G2, _ = stylegan2.build(resolution=16, cbase=128, cmax=16, z_dim=8, w_dim=8, seed=5)
    assert [g["name"] for g in optim.named_param_groups(G2)] == names


def test_demodulation_makes_output_independent_of_style_scale():
    torch.manual_seed(0)
    conv = stylegan2.ModulatedConv(4, 5, w_dim=6, resolution=8)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 6)
    y = conv(x, w, noise_mode="none")
    with torch.no_grad():
        conv.affine.weight.mul_(3.0)
        conv.affine.bias.mul_(3.0)
    assert torch.allclose(conv(x, w, noise_mode="none"), y, atol=1e-5)
    up = stylegan2.ModulatedConv(4, 5, w_dim=6, resolution=16, up=True)
    assert up(x, w).shape == (2, 5, 16, 16)


def test_r1_matches_hand_computation_on_a_linear_discriminator():
    a = torch.randn(1, 3, 4, 4)

    class Linear(nn.Module):
        def forward(self, x):
            return (x * a).sum([1, 2, 3])[:, None]

    r1 = exp_mod.r1_penalty(Linear(), torch.randn(5, 3, 4, 4), gamma=0.1024)
    assert torch.allclose(r1, 0.1024 / 2 * a.square().sum())


def test_path_length_of_a_linear_synthesis():
    G, _ = stylegan2.build(resolution=8, cbase=64, cmax=8, z_dim=4, w_dim=4)
    m = torch.randn(3 * 8 * 8, 4)
    G.synthesis.forward = lambda ws, noise_mode="random": (ws.sum(1) @ m.T).reshape(-1, 3, 8, 8)
    ws = torch.randn(2, G.num_ws, 4, requires_grad=True)
    noise = torch.randn(2, 3, 8, 8)
    got = exp_mod.path_lengths(G, ws, noise)
    jt_y = (noise.reshape(2, -1) / 8.0) @ m  # the same for every w
    assert torch.allclose(got, jt_y.square().sum(1).sqrt(), atol=1e-5)


@pytest.mark.parametrize("name", optim.NAMES)
def test_lazy_regularisation_correction_for_every_optimizer(name):
    extra = (
        {"optimizer_options": {"magnitude": "adam", "direction": "sgd"}} if name == "graft" else {}
    )
    cfg = experiments.resolve_config({**TINY, "optimizer": name, "seed": 0, **extra})
    exp = experiments.build(cfg)
    for player, ratio in (("G", 0.8), ("D", 16 / 17)):
        group = exp.optimizers[player].param_groups[0]
        base = cfg["lr_g"] if player == "G" else cfg["lr_d"]
        assert group["lr"] == pytest.approx(base * ratio)
        if "betas" in optim.options_of(name):
            assert group["betas"] == pytest.approx((0.0, 0.99**ratio))


def test_paper_defaults():
    cfg = experiments.resolve_config(
        {"experiment": "stylegan2", "optimizer": "adam", "seed": 0, "data_path": "x.zip"}
    )
    assert cfg["steps"] * cfg["batch_size"] / 1000 == 2600
    assert (cfg["lr_g"], cfg["optimizer_options"]["betas"]) == (0.0025, [0.0, 0.99])
    assert (cfg["r1_gamma"], cfg["r1_interval"], cfg["pl_interval"]) == (0.1024, 16, 4)
    assert (cfg["resolution"], cfg["cbase"], cfg["map_depth"]) == (128, 16384, 2)


def test_ema_beta_formula():
    assert exp_mod.ema_beta(32, 10.0, 10**9, 0.05) == pytest.approx(0.5 ** (32 / 10_000))
    assert exp_mod.ema_beta(32, 10.0, 320, 0.05) == pytest.approx(0.25)  # ramp-up: 16 images
    assert exp_mod.ema_beta(32, 10.0, 320, None) == pytest.approx(0.5 ** (32 / 10_000))


def test_lazy_phases_fire_on_schedule_and_stay_finite(monkeypatch):
    cfg = experiments.resolve_config(
        {**TINY, "optimizer": "adam", "seed": 0, "pl_interval": 2, "r1_interval": 3}
    )
    exp = experiments.build(cfg)
    fired: list[tuple[str, int]] = []
    for phase in ("g_reg", "d_reg"):
        real = getattr(exp, phase)

        def spy(real=real, phase=phase):
            fired.append((phase, exp.g_steps))
            return real()

        monkeypatch.setattr(exp, phase, spy)
    ema_before = [p.clone() for p in exp.G_ema.parameters()]
    for _ in range(6):
        out = exp.train_step()
        assert all(math.isfinite(float(v)) for v in out.values())
    assert [s for p, s in fired if p == "g_reg"] == [0, 2, 4]
    assert [s for p, s in fired if p == "d_reg"] == [0, 3]
    assert float(out["loss_r1"]) > 0 and float(out["loss_pl"]) > 0
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, exp.G_ema.parameters()))


def _rows(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("time_s")
    return rows


def _run_config(tmp_path, optimizer: str, **extra):
    return {
        **TINY,
        "optimizer": optimizer,
        "seed": 1,
        "steps": 4,
        "eval_every": 2,
        "checkpoint_every": 2,
        "fid_cache": str(tmp_path / "fid"),
        **extra,
    }


@pytest.mark.parametrize("augment", ["none", "ada"])
def test_resume_is_exact(tmp_path, augment):
    ada = {"augment": augment, "ada_interval": 3, "ada_target": -1.0, "ada_kimg": 0.04}
    config = _run_config(tmp_path, "ada-nsgda", pl_interval=2, r1_interval=2, **ada)
    straight = run_trial(config, tmp_path / "a", quiet=True)
    run_trial(config, tmp_path / "b", quiet=True)
    shutil.rmtree(sorted((tmp_path / "b" / "checkpoints").glob("step_*"))[-1])
    resumed = run_trial(config, tmp_path / "b", quiet=True)
    rows_a, rows_b = (
        _rows(tmp_path / "a" / "results.jsonl"),
        _rows(tmp_path / "b" / "results.jsonl"),
    )
    assert rows_a == rows_b and len(rows_a) == 2
    assert straight["fid"] == resumed["fid"]
    assert any(k.startswith("mag/G/synthesis.") for k in rows_a[-1])
    if augment == "ada":  # p rose by 4 * 3 / 40 = 0.3 after step 3 (the resume: at 2)
        assert [r["augment_p"] for r in rows_a] == pytest.approx([0.0, 0.3])


def test_profile_from_a_run_drives_nsgda(tmp_path):
    run_trial(_run_config(tmp_path, "ada-nsgda"), tmp_path / "run", quiet=True)
    out = tmp_path / "profile.json"
    assert profiles.main([str(tmp_path / "run"), "--out", str(out)]) == 0
    profile = json.loads(out.read_text())
    assert "G/synthesis.b4" in profile and "D/b4.out" in profile

    # the same numbers as scale_profile on the optimizer restored from the checkpoint
    cfg = experiments.resolve_config(_run_config(tmp_path, "ada-nsgda"))
    exp = experiments.build(cfg)
    from trainers.trial import checkpoint

    state = checkpoint.read(checkpoint.latest(tmp_path / "run" / "checkpoints"))
    exp.optimizers["G"].load_state_dict(state["experiment"]["optimizers"]["G"])
    with torch.no_grad():  # graft.py: param norms read with grad on taint _diag_last
        live = optim.scale_profile(exp.optimizers["G"])
    assert {f"G/{k}": v for k, v in live.items()} == {
        k: v for k, v in profile.items() if k.startswith("G/")
    }

    # nsgda with the profile: every layer moves by lr x s_Y
    cfg = experiments.resolve_config(
        {**_run_config(tmp_path, "nsgda"), "optimizer_options": {"scales": str(out)}}
    )
    exp = experiments.build(cfg)
    exp.train_step()
    for player in ("G", "D"):
        opt = exp.optimizers[player]
        lr = opt.param_groups[0]["lr"]
        with torch.no_grad():
            rows = opt.diagnostics(mean=False)
        for layer, row in rows.items():
            if row["grad_norm"] > 0:
                want = lr * profile[f"{player}/{layer}"]
                assert row["step_norm"] == pytest.approx(want, rel=1e-3), layer


def test_profile_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        profiles.main([str(tmp_path), "--out", str(tmp_path / "p.json")])
    assert e.value.code == 3  # a directory without a checkpoint: the file is missing


def _ada_run(target: float, steps: int, **extra) -> list[float]:
    cfg = experiments.resolve_config(
        {**TINY, "optimizer": "adam", "seed": 0, "augment": "ada", "ada_target": target, **extra}
    )
    exp = experiments.build(cfg)
    return [float(exp.train_step()["augment_p"]) for _ in range(steps)]


def test_ada_moves_p_by_the_sign_of_real_logits_every_interval():
    # step size batch * interval / (kimg * 1000) = 4 * 2 / 40 = 0.2
    up = _ada_run(-1.0, 5, ada_interval=2, ada_kimg=0.04)  # r_t > -1: p rises
    assert up == pytest.approx([0.0, 0.2, 0.2, 0.4, 0.4])
    # r_t <= 1: p never rises; it falls by 0.2 at an update unless every real logit was > 0
    down = _ada_run(1.0, 6, ada_interval=2, ada_kimg=0.04, augment_p=0.5)
    assert all(b <= a for a, b in zip(down, down[1:])) and down[-1] < 0.5
    assert {round(p, 6) for p in down} <= {0.5, 0.3, 0.1}


def test_augmentation_reaches_every_discriminator_input(monkeypatch):
    """With augment "fixed", D's inputs in all four phases went through trainers.data.augment at
    the configured p, with one row of uniforms per image."""
    seen = []

    def spy(images, p, u, pipeline=exp_mod.augment.BGC):
        seen.append((images.shape[0], p, tuple(u.shape)))
        return images

    monkeypatch.setattr(exp_mod.augment, "augment", spy)
    cfg = experiments.resolve_config(
        {**TINY, "optimizer": "adam", "seed": 0, "augment": "fixed", "augment_p": 0.25}
    )
    cfg.update(r1_interval=1, pl_interval=1)
    experiments.build(cfg).train_step()
    k = exp_mod.augment.RANDOM_PER_SAMPLE
    # G main (fake), D main (fake, real), R1 (real); path length never meets D
    assert seen == [(4, 0.25, (4, k))] * 4


def test_augment_options_are_checked():
    with pytest.raises(ValueError, match="'augment'.*'none', 'ada', 'fixed'"):
        experiments.resolve_config({**TINY, "optimizer": "adam", "seed": 0, "augment": True})
    with pytest.raises(ValueError, match="augment_p"):
        experiments.resolve_config({**TINY, "optimizer": "adam", "seed": 0, "augment_p": 1.5})


def test_path_length_trains_the_mapping_and_r1_reuses_d_mains_reals(monkeypatch):
    cfg = experiments.resolve_config({**TINY, "optimizer": "sgda", "seed": 0})
    exp = experiments.build(cfg)
    exp.g_reg()
    mapping = exp.players["G"].mapping
    assert all(float(p.grad.abs().sum()) > 0 for p in mapping.parameters())
    seen = []
    monkeypatch.setattr(
        exp_mod, "r1_penalty", lambda D, real, gamma: seen.append(real) or 0 * D(real).sum()
    )
    exp.d_main()
    drawn = exp._real
    exp.d_reg()
    assert seen[0] is drawn


def test_evaluation_neither_varies_with_nor_disturbs_the_training_streams(tmp_path):
    cfg = experiments.resolve_config(
        {**TINY, "optimizer": "adam", "seed": 0, "fid_cache": str(tmp_path), "kid": "never"}
    )
    exp = experiments.build(cfg)
    before = (exp.rng.get_state(), torch.get_rng_state())
    first = exp.evaluate(final=False)["fid"]
    assert torch.equal(exp.rng.get_state(), before[0])
    assert torch.equal(torch.get_rng_state(), before[1])
    torch.randn(100)  # training moves the global stream on; the next evaluation is the same
    assert exp.evaluate(final=False)["fid"] == first


@pytest.fixture
def half_on_cpu(monkeypatch):
    """Run the fp16 blocks in float16, with activation clamps, on the CPU (as on CUDA)."""
    monkeypatch.setattr(stylegan2, "HALF_DEVICES", {"cpu", "cuda"})


def _fp16_models():
    return stylegan2.build(
        resolution=32, cbase=256, cmax=32, z_dim=32, w_dim=32, num_fp16_res=2, seed=3
    )


def _dtypes_seen(module: nn.Module) -> list[torch.dtype]:
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append(args[0].dtype))
    return seen


def test_fp16_blocks_agree_with_float32(monkeypatch):
    G, D = _fp16_models()
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img32 = G(z, noise_mode="const")
        logits32 = D(img32)
        monkeypatch.setattr(stylegan2, "HALF_DEVICES", {"cpu", "cuda"})
        top, low = _dtypes_seen(G.synthesis.b32.conv0), _dtypes_seen(G.synthesis.b4.conv1)
        d_top = _dtypes_seen(D.b32.conv0)
        img16 = G(z, noise_mode="const")
        logits16 = D(img32)
    # the 2 highest resolutions (16, 32) in float16, the rest in float32
    assert top == [torch.float16] and low == [torch.float32] and d_top == [torch.float16]
    assert img16.dtype == torch.float32 and logits16.dtype == torch.float32
    assert float((img16 - img32).norm() / img32.norm()) < 1e-2
    torch.testing.assert_close(logits16, logits32, rtol=2e-2, atol=2e-2)


def test_fp16_activations_are_clamped_and_stay_finite(half_on_cpu):
    G, _ = _fp16_models()
    peaks = []
    G.synthesis.b32.conv0.register_forward_hook(lambda m, a, out: peaks.append(out.abs().max()))
    with torch.no_grad():
        G.synthesis.b32.conv0.bias.fill_(1e5)  # far beyond float16's range after the activation
        img = G(torch.randn(2, 32), noise_mode="const")
    assert float(peaks[0]) == 256.0  # clamped to conv_clamp
    assert torch.isfinite(img).all()


def test_a_training_step_in_fp16_is_finite(half_on_cpu):
    cfg = experiments.resolve_config(
        {**TINY, "optimizer": "adam", "seed": 0, "r1_interval": 1, "pl_interval": 1}
    )
    exp = experiments.build(cfg)
    losses = exp.train_step()
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert all(torch.isfinite(p).all() for p in exp.players["G"].parameters())


# -- NVlabs' fp16 and clamp rules (REFERENCES.md, "NVlabs StyleGAN2: fp16 and clamping") ---------


def _fp16_blocks(module: nn.Module) -> list[int]:
    return sorted(int(n[1:]) for n, m in module.named_children() if getattr(m, "use_fp16", False))


@pytest.mark.parametrize(
    "resolution, num_fp16_res, first",
    [(128, 4, 16), (32, 4, 8), (32, 9, 8), (32, 2, 16), (128, 0, 256), (8, 1, 8)],
)
def test_fp16_resolution_is_nvlabs_rule(resolution, num_fp16_res, first):
    assert stylegan2.fp16_resolution(resolution, num_fp16_res) == first


def test_the_4x4_synthesis_block_never_runs_in_fp16(half_on_cpu):
    G, D = stylegan2.build(
        resolution=32, cbase=256, cmax=32, z_dim=32, w_dim=32, num_fp16_res=4, seed=3
    )
    assert _fp16_blocks(G.synthesis) == [8, 16, 32]  # NVlabs: 4 fp16 resolutions, floor 8
    assert _fp16_blocks(D) == [8, 16, 32]
    b4, b8 = _dtypes_seen(G.synthesis.b4.conv1), _dtypes_seen(G.synthesis.b8.conv0)
    with torch.no_grad():
        img = G(torch.randn(2, 32), noise_mode="const")
    assert b4 == [torch.float32] and b8 == [torch.float16] and torch.isfinite(img).all()


def test_num_fp16_res_zero_is_an_all_float32_network(half_on_cpu):
    G, D = stylegan2.build(
        resolution=16, cbase=128, cmax=16, z_dim=8, w_dim=8, num_fp16_res=0, conv_clamp=None
    )
    assert _fp16_blocks(G.synthesis) == [] and _fp16_blocks(D) == []
    g_seen, d_seen = _dtypes_seen(G.synthesis.b16.conv1), _dtypes_seen(D.b16.conv0)
    with torch.no_grad():
        D(G(torch.randn(2, 8)))
    assert g_seen == [torch.float32] and d_seen == [torch.float32]
    with pytest.raises(ValueError, match="num_fp16_res=-1"):
        stylegan2.build(resolution=16, cbase=128, cmax=16, num_fp16_res=-1)


def _peaks(module: nn.Module, names: list[str]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for name in names:
        layer = module.get_submodule(name)
        hook = lambda m, a, out, name=name: peaks.__setitem__(name, float(out.abs().max()))  # noqa: E731
        layer.register_forward_hook(hook)
    return peaks


def test_clamps_run_in_float32_on_the_cpu_scaled_by_each_layers_gain():
    _, D = stylegan2.build(resolution=16, cbase=128, cmax=16, num_fp16_res=0, conv_clamp=256)
    peaks = _peaks(D, ["b16.fromrgb", "b16.conv0", "b16.conv1", "b16.skip"])
    with torch.no_grad():
        for name in ("fromrgb", "conv0", "conv1"):  # far beyond the clamp after the activation
            D.get_submodule(f"b16.{name}").bias.fill_(1e4)
        D.b16.skip.weight.fill_(1.0)  # sees 256 everywhere: 256 * sqrt(8 / 2) = 512 out
        D(torch.randn(2, 3, 16, 16))
    assert peaks["b16.fromrgb"] == 256.0 and peaks["b16.conv0"] == 256.0
    assert peaks["b16.conv1"] == pytest.approx(256 * math.sqrt(0.5), rel=1e-6)  # 181.02
    assert peaks["b16.skip"] > 256  # the 1x1 skip has no clamp (as in NVlabs)


def test_clamps_leave_a_float32_network_at_initialisation_unchanged():
    """At the activations a trained or fresh network has (far below 256) the clamp is the
    identity, so the float32 outputs (those compared with NVlabs') are unchanged bit for bit."""
    kwargs = dict(resolution=32, cbase=256, cmax=32, z_dim=32, w_dim=32, num_fp16_res=0, seed=3)
    G, D = stylegan2.build(conv_clamp=256, **kwargs)
    G_off, D_off = stylegan2.build(conv_clamp=None, **kwargs)
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img, img_off = G(z, noise_mode="const"), G_off(z, noise_mode="const")
        assert torch.equal(img, img_off)
        assert torch.equal(D(img), D_off(img))
