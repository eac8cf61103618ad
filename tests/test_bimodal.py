"""The bimodal theory setting: verdict rule, hand gradients, data, training facts, resume."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from trainers import experiments
from trainers.__main__ import main
from trainers.config import ConfigError
from trainers.data.bimodal import Sampler, latent_support, modes
from trainers.metrics import verdict as V
from trainers.models.bimodal import build, saturating_grads
from trainers.trial import checkpoint
from trainers.trial.run import CHECKPOINTS, RESULTS, run_trial

D = 20


def _near(direction: torch.Tensor, n: int, gen: torch.Generator, noise: float = 0.05):
    """``n`` vectors close to ``direction`` (cosine well above 0.9)."""
    unit = direction / direction.norm()
    return unit + noise * torch.randn(n, D, generator=gen, dtype=torch.float64) / math.sqrt(D)


def _verdict(rows: torch.Tensor, p_two: float = 0.0) -> tuple[str, dict[str, float]]:
    support, probs = latent_support(rows.shape[0], p_two, torch.float64)
    return V.verdict(support @ rows, probs, modes(D, 0.1, torch.float64))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_verdict_on_hand_made_generators(gen):
    u = modes(D, 0.1, torch.float64)
    ubar = u[0] + u[1]
    init = 0.01 * torch.randn(8, D, generator=gen, dtype=torch.float64)
    cases = {
        "both": torch.cat([_near(u[0], 4, gen), _near(u[1], 6, gen)]),
        "average": _near(ubar, 10, gen),
        # one neuron per mode, the rest near initialisation: not a success
        "none": torch.cat([_near(u[0], 1, gen), _near(u[1], 1, gen), init]),
    }
    for expected, rows in cases.items():
        assert _verdict(rows)[0] == expected, expected
    # mode collapse onto u1 with one neuron at u2: below mode_mass
    assert _verdict(torch.cat([_near(u[0], 9, gen), _near(u[1], 1, gen)]))[0] == "none"
    # the average learned by a few neurons while the rest did not move is still "average"
    assert _verdict(torch.cat([_near(ubar, 2, gen), init]))[0] == "average"
    # an average beaten by the mode mass is not "average"
    assert _verdict(torch.cat([_near(ubar, 1, gen), _near(u[0], 2, gen), init[:7]]))[0] == "none"


def test_verdict_labels_and_two_hot_mass(gen):
    u = modes(D, 0.1, torch.float64)
    ubar = u[0] + u[1]
    lab = V.labels(torch.stack([u[0], u[1], ubar, torch.ones(D)]).double(), u, 0.9)
    assert [V.LABELS[i] for i in lab.tolist()] == ["u1", "u2", "average", "none"]
    rows = torch.cat([_near(u[0], 5, gen), _near(u[1], 5, gen)])
    # half the z-mass on two-hot latents: the 25 mixed pairs (of 45) land at the average,
    # so the modes hold 0.5 + 0.5 * 20/45 < 0.8 of the mass and the verdict is not "both"
    verdict, mass = _verdict(rows, p_two=0.5)
    assert mass["average"] == pytest.approx(0.5 * 25 / 45)
    assert mass["u1"] + mass["u2"] == pytest.approx(0.5 + 0.5 * 20 / 45)
    assert verdict == "none"
    assert _verdict(rows, p_two=0.05)[0] == "both"


def test_hand_gradients_equal_autograd_in_float64(gen):
    G, Dn = build(d=7, m_g=4, m_d=3, init_std=0.5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        Dn.cubic.b.fill_(0.3)
    x = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    z = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    with torch.no_grad():
        hand = saturating_grads(G, Dn, x, z)
    loss_d = -(F.logsigmoid(Dn(x)).mean() + F.logsigmoid(-Dn(G(z))).mean())
    loss_g = F.logsigmoid(-Dn(G(z))).mean()
    layer = Dn.cubic
    auto_d = torch.autograd.grad(loss_d, [layer.weight, layer.a, layer.b])
    (auto_v,) = torch.autograd.grad(loss_g, [G.linear.weight])
    for got, want in zip([hand.grad_w, hand.grad_a, hand.grad_b, hand.grad_v], [*auto_d, auto_v]):
        assert want.abs().max() > 1e-3  # the check is not vacuous
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(hand.loss_d, loss_d.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(hand.loss_g, loss_g.detach(), rtol=1e-12, atol=0)


def test_data_modes_and_latents(gen):
    u = modes(50, 0.2)
    assert torch.allclose(u.norm(dim=1), torch.ones(2))
    assert float(u[0] @ u[1]) == pytest.approx(0.2)
    x, z = Sampler(u, 6, 0.25, gen).sample(4000)
    assert set(z.sum(1).tolist()) == {1.0, 2.0} and z.max() == 1.0
    assert (z.sum(1) == 2).double().mean() == pytest.approx(0.25, abs=0.03)
    assert z.mean(0).tolist() == pytest.approx([(0.75 + 0.5) / 6] * 6, abs=0.02)
    is_u1 = (x == u[0]).all(1)
    assert (is_u1 | (x == u[1]).all(1)).all() and is_u1.double().mean() == pytest.approx(
        0.5, abs=0.03
    )
    support, probs = latent_support(6, 0.25)
    assert support.shape == (6 + 15, 6) and float(probs.sum()) == pytest.approx(1.0)


SMALL = {"experiment": "bimodal", "d": 50, "m_d": 8, "m_g": 8}


def _final(config: dict, out) -> dict:
    return run_trial(config, out, quiet=True)


def test_nsgda_learns_both_modes_more_often_than_sgda(tmp_path):
    # seeded, so these counts are fixed facts of the code, not a flaky statistic
    seeds = range(5)
    nsgda = {**SMALL, "optimizer": "nsgda", "lr_d": 2e-2, "lr_g": 1e-2, "steps": 1000}
    sgda = {**SMALL, "optimizer": "sgda", "lr_d": 10.0, "lr_g": 10.0, "steps": 5000}
    once = {"eval_every": 5000, "checkpoint_every": 5000}
    both = {}
    for name, cfg in (("nsgda", nsgda), ("sgda", sgda)):
        finals = [_final({**cfg, **once, "seed": s}, tmp_path / f"{name}{s}") for s in seeds]
        both[name] = sum(f["verdict"] == "both" for f in finals)
        if name == "sgda":  # every sgda run ends by the stop rule, at a finite state
            assert all("stop_reason" in f and f["norm/G/max"] <= 2 for f in finals)
    assert both["nsgda"] >= 2 and both["nsgda"] > both["sgda"], both


def test_stop_rule_undoes_the_blow_up_step(tmp_path):
    cfg = {**SMALL, "optimizer": "sgda", "seed": 3, "lr_d": 100.0, "lr_g": 100.0}
    final = _final({**cfg, "steps": 5000, "eval_every": 5000}, tmp_path / "run")
    assert final["step"] < 5000 and final["stop_reason"].startswith("blow-up")
    assert final["norm/G/max"] <= 2.0 and final["norm/D/max"] <= 10.0
    assert final["verdict"] in V.VERDICTS and not final["diverged"]


def _rows(path) -> list[dict]:
    rows = [json.loads(line) for line in (path / RESULTS).read_text().splitlines()]
    for row in rows:
        row.pop("time_s")
    return rows


def _params(path) -> dict:
    state = checkpoint.read(checkpoint.latest(path / CHECKPOINTS))
    return state["experiment"]["players"]


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    cfg = {**SMALL, "optimizer": "nsgda", "seed": 1, "steps": 300, "eval_every": 30}
    cfg["checkpoint_every"] = 150
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_trial(cfg, straight, quiet=True)
    run_trial(cfg, resumed, quiet=True)
    # go back to the step-150 checkpoint, as if the process had died after it
    ckpts = sorted((resumed / CHECKPOINTS).glob("step_*"))
    assert [c.name for c in ckpts] == ["step_0000000150", "step_0000000300"]
    shutil.rmtree(ckpts[-1])
    with open(resumed / RESULTS, "a") as f:
        f.write('{"step": 999, "partial": tru')  # a torn row from the dead process
    assert main(["run", json.dumps(cfg), "--out", str(resumed), "--quiet"]) == 0
    assert _rows(resumed) == _rows(straight) and len(_rows(straight)) == 10
    a, b = _params(straight), _params(resumed)
    for player in ("G", "D"):
        for key, value in a[player].items():
            assert torch.equal(value, b[player][key]), (player, key)


@pytest.mark.parametrize(
    ("key", "value"),
    [("gamma", 0.7), ("m_g", 1), ("p_two", -0.1), ("init_std", 0), ("model", "mog"), ("d", 2.5)],
)
def test_bad_config_names_key_and_value(tmp_path, capsys, key, value):
    config = {"experiment": "bimodal", "optimizer": "nsgda", "seed": 0, key: value}
    with pytest.raises(ConfigError) as err:
        experiments.resolve_config(config)
    assert err.value.key == key and repr(value) in str(err.value)
    assert main(["run", json.dumps(config), "--out", str(tmp_path / "x")]) == 2
    assert key in capsys.readouterr().err
