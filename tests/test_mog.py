"""The mixture-of-Gaussians experiment: data, networks, mode metrics, config, determinism, resume."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from trainers import experiments, optim
from trainers.__main__ import main as cli
from trainers.config import ConfigError
from trainers.data import mog as data
from trainers.metrics.modes import mode_metrics
from trainers.models import mog as models
from trainers.trial.run import run_trial

TINY = {
    "experiment": "mog",
    "batch_size": 64,
    "z_dim": 16,
    "hidden": 32,
    "eval_samples": 500,
    "steps": 40,
    "eval_every": 10,
    "checkpoint_every": 10,
}


def tiny(**overrides) -> dict:
    return {**TINY, "optimizer": "adam", "seed": 0, **overrides}


# -- data ----------------------------------------------------------------------------------------


def test_ring_and_grid_centres():
    ring = data.build("ring8")
    assert ring.num_modes == 8 and ring.std == 0.02
    torch.testing.assert_close(ring.centres.norm(dim=1), torch.full((8,), 2.0))
    gaps = torch.cdist(ring.centres, ring.centres) + 10 * torch.eye(8)
    assert float(gaps.min()) == pytest.approx(2 * 2 * math.sin(math.pi / 8), rel=1e-6)
    grid = data.build("grid25")
    assert grid.num_modes == 25
    assert sorted(set(grid.centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="moons"):
        data.build("moons")


def test_samples_are_seeded_balanced_and_have_the_right_spread():
    ring = data.build("ring8")
    a = ring.sample(16_000, torch.Generator().manual_seed(5))
    b = ring.sample(16_000, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    idx = torch.cdist(a, ring.centres).argmin(dim=1)
    counts = torch.bincount(idx, minlength=8)
    assert int(counts.min()) > 1800 and int(counts.max()) < 2200
    spread = (a - ring.centres[idx]).std()
    assert float(spread) == pytest.approx(0.02, rel=0.05)


# -- mode metrics on hand-made samples ----------------------------------------------------------


def test_mode_metrics_on_hand_made_samples():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    std = 1.0
    samples = torch.cat(
        [
            torch.tensor([[0.5, 0.0]]).repeat(50, 1),  # mode 0, within 3 std
            torch.tensor([[10.0, 2.9]]).repeat(20, 1),  # mode 1, within 3 std
            torch.tensor([[13.5, 10.0]]).repeat(10, 1),  # nearest mode 3, but 3.5 std away
            torch.tensor([[0.0, 7.05]]).repeat(4, 1),  # mode 2, 2.95 std away: high quality
            torch.tensor([[float("nan"), 0.0]]).repeat(16, 1),  # unusable
        ]
    )
    m = mode_metrics(samples, centres, std, threshold=0.25)  # needs 0.25 * 100 / 4 = 6.25
    assert m["mode_counts"] == [50, 20, 4, 0]
    assert m["modes_covered"] == 2
    assert m["hq_fraction"] == pytest.approx(74 / 100)
    p = torch.tensor([50, 20, 4, 10], dtype=torch.float64) / 84
    assert m["mode_kl"] == pytest.approx(float((p * (4 * p).log()).sum()), rel=1e-12)
    assert mode_metrics(samples, centres, std, threshold=0.16)["modes_covered"] == 3


def test_mode_metrics_extremes():
    ring = data.build("ring8")
    perfect = ring.centres.repeat(25, 1)
    m = mode_metrics(perfect, ring.centres, ring.std)
    assert (m["modes_covered"], m["hq_fraction"], m["mode_kl"]) == (8, 1.0, 0.0)
    collapsed = ring.centres[:1].repeat(200, 1)
    m = mode_metrics(collapsed, ring.centres, ring.std)
    assert m["modes_covered"] == 1
    assert m["mode_kl"] == pytest.approx(math.log(8))


# -- networks ------------------------------------------------------------------------------------


def test_networks_layout_and_init():
    G, D = models.build(seed=0)
    assert [g["name"] for g in optim.named_param_groups(G)] == ["fc1", "fc2", "out"]
    assert [g["name"] for g in optim.named_param_groups(D)] == ["fc1", "out"]
    assert G.fc1.weight.shape == (128, 256) and G.out.weight.shape == (2, 128)
    w = G.fc1.weight.detach()  # 128 x 256: orthonormal rows times the gain
    torch.testing.assert_close(w @ w.T, 0.64 * torch.eye(128), atol=1e-5, rtol=0)
    assert float(D.fc1.bias.detach().abs().max()) == 0.0
    x = torch.randn(5, 2)
    by_hand = D.out(torch.relu(D.fc1(x / 4))).squeeze(-1)
    torch.testing.assert_close(D(x), by_hand)
    assert G(torch.randn(3, 256)).shape == (3, 2)
    G2, _ = models.build(seed=0)
    assert torch.equal(G.fc2.weight, G2.fc2.weight)
    assert not torch.equal(G.fc2.weight, models.build(seed=1)[0].fc2.weight)


# -- config --------------------------------------------------------------------------------------


def test_defaults_reproduce_nagarajan_kolter():
    cfg = experiments.resolve_config({"experiment": "mog", "optimizer": "adam", "seed": 0})
    assert (cfg["lr_d"], cfg["lr_g"], cfg["batch_size"]) == (1e-4, 1e-4, 512)
    assert cfg["gd_reg"] == 0.0  # the GD-regulariser is a variant named explicitly
    assert cfg["optimizer_options"]["betas"] == [0.5, 0.999]
    assert (cfg["dataset"], cfg["g_loss"], cfg["updates"]) == ("ring8", "saturating", "alternating")
    for name in optim.NAMES:
        if name != "graft":
            experiments.resolve_config({"experiment": "mog", "optimizer": name, "seed": 0})


@pytest.mark.parametrize(
    "key, value",
    [
        ("gd_reg", -0.5),
        ("gd_reg", "high"),
        ("dataset", "moons"),
        ("updates", "sometimes"),
        ("g_loss", "wasserstein"),
        ("batch_size", 0),
        ("mode_threshold", 0.0),
        ("z_dim", 2.5),
    ],
)
def test_bad_config_names_key_and_value(key, value):
    with pytest.raises(ConfigError) as err:
        experiments.resolve_config(tiny(**{key: value}))
    assert err.value.key == key and repr(value) in str(err.value)


def test_cli_bad_config_exits_2(tmp_path, capsys):
    assert cli(["run", json.dumps(tiny(gd_reg=-1)), "--out", str(tmp_path / "t")]) == 2
    assert "'gd_reg' = -1" in capsys.readouterr().err


# -- training ------------------------------------------------------------------------------------


def params_after(cfg: dict, steps: int) -> list[torch.Tensor]:
    exp = experiments.build(experiments.resolve_config(cfg))
    for _ in range(steps):
        losses = exp.train_step()
    assert all(math.isfinite(float(v)) for v in losses.values())
    return [p.detach().clone() for m in exp.players.values() for p in m.parameters()]


@pytest.mark.parametrize("updates", ["alternating", "simultaneous"])
def test_training_is_deterministic_per_seed(updates):
    a = params_after(tiny(updates=updates), 15)
    b = params_after(tiny(updates=updates), 15)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = params_after(tiny(updates=updates, seed=1), 15)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_gd_reg_changes_only_the_generator_step():
    """With simultaneous updates one step of D is the same with and without the regulariser,
    while G's step differs (the term reaches G through double backprop)."""
    on = params_after(tiny(updates="simultaneous", optimizer="sgda", gd_reg=5.0), 1)
    off = params_after(tiny(updates="simultaneous", optimizer="sgda", gd_reg=0.0), 1)
    n_g = 6  # G: 3 layers x (weight, bias), listed first
    assert all(torch.equal(x, y) for x, y in zip(on[n_g:], off[n_g:]))
    assert not all(torch.equal(x, y) for x, y in zip(on[:n_g], off[:n_g]))


def rows(path: Path) -> list[dict]:
    out = [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]
    for row in out:
        row.pop("time_s")
    return out


def test_resume_is_exact(tmp_path):
    cfg = tiny(optimizer="nsgda", gd_reg=0.5)
    straight = run_trial(cfg, tmp_path / "straight", quiet=True)
    assert straight["step"] == 40 and 0 <= straight["modes_covered"] <= 8
    run_trial(cfg, tmp_path / "cut", quiet=True)
    # interrupt after step 30: drop the final checkpoint, leave a half-written row behind
    ckpts = sorted((tmp_path / "cut" / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_0000000030", "step_0000000040"]
    shutil.rmtree(ckpts[-1])
    with open(tmp_path / "cut" / "results.jsonl", "a") as f:
        f.write('{"step": 5')
    resumed = run_trial(cfg, tmp_path / "cut", quiet=True)
    assert rows(tmp_path / "cut") == rows(tmp_path / "straight")
    assert resumed["loss_d"] == straight["loss_d"] and len(rows(tmp_path / "cut")) == 4


def test_report_names_and_figure():
    cfg = experiments.resolve_config(tiny(dataset="grid25"))
    exp = experiments.build(cfg)
    exp.train_step()
    report = exp.evaluate(final=True)
    assert set(report) == {"modes_covered", "modes_total", "hq_fraction", "mode_kl"}
    assert report["modes_total"] == 25
    json.dumps(report)
    fig = exp.figures()["samples"]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_study_table_summarises_seeds():
    from sweeps.mog_gdreg import summarise, trial_config

    results = []
    for eta, modes in ((0.0, [1, 2, 1]), (0.5, [8, 8, 7])):
        for seed, m in enumerate(modes):
            last = {"modes_covered": m, "modes_total": 8, "hq_fraction": m / 10, "mode_kl": 0.1}
            results.append(
                (trial_config("adam", eta, seed, 100), {**last, "time_s": 1, "step": 100})
            )
    table = summarise(results).splitlines()
    assert len(table) == 4 and table[0].startswith("| optimizer")
    assert "| adam | 0.0001 | 0 | 1.3 ± 0.6 / 8 (1, 2, 1) | 0/3 |" in table[2]
    assert "| adam | 0.0001 | 0.5 | 7.7 ± 0.6 / 8 (8, 8, 7) | 2/3 |" in table[3]
    assert table[3].endswith("| 10.0 |")
