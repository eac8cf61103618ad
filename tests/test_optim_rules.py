"""Rule objects and the Graft combinator: new rules against references, any graft by name, and
checkpoints written before the rule objects resume (to a few float32 ulps: the file holds its
writer CPU's rounding)."""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import trainers.optim as optim
from trainers import experiments
from trainers.experiments.stylegan2 import lazy_options

FIXTURE = Path(__file__).parent / "fixtures" / "optim_checkpoint_v0.pt"
LR = 0.05


def two_layer(dtype=torch.float64, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)


def random_grads(model: nn.Module, steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        [
            torch.randn(p.shape, generator=gen, dtype=p.dtype) * (k + 1)
            for k, p in enumerate(model.parameters())
        ]
        for _ in range(steps)
    ]


def run(opt: torch.optim.Optimizer, model: nn.Module, grads: list[list[torch.Tensor]]) -> None:
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads):
            p.grad = g.clone()
        opt.step()


def layer_norms(tensors: list[torch.Tensor]) -> list[float]:
    """L2 norm per layer (weight, bias) of a two-layer model's tensors."""
    return [
        math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors[i : i + 2])) for i in (0, 2)
    ]


# -- checkpoints written by the string-dispatched Graft ----------------------------------------


# The file's numbers are the writer's CPU's: its own pre-rule code, rerun on an AVX-512 Xeon, writes
# parameters that differ from the file by up to 6e-8 (2 float32 ulps at these magnitudes) and
# diagnostics by 1 ulp, while the rule objects resume that rerun's file bit for bit on the same
# machine. So across machines the continuation must agree to a few ulps: a resume that drops or
# misreads any state (a momentum buffer, Adam's moments or step count) is off by 1e-4 to 1e-2.
ULPS = 4 * torch.finfo(torch.float32).eps


def assert_within_ulps(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = max(float(expected.abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=ULPS * scale)


def diagnostics_close(actual: dict, expected: dict) -> bool:
    """Nested diagnostics dicts equal in keys and within a few ulps in every number."""
    if actual.keys() != expected.keys():
        return False
    for key, value in actual.items():
        other = expected[key]
        if isinstance(value, dict):
            if not isinstance(other, dict) or not diagnostics_close(value, other):
                return False
        elif not math.isclose(value, other, rel_tol=ULPS, abs_tol=ULPS):
            return False
    return True


@pytest.mark.parametrize("case", range(8))
def test_checkpoint_written_before_the_rule_objects_resumes_to_float_rounding(case):
    saved = torch.load(FIXTURE)
    c = saved["cases"][case]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = optim.build(c["name"], model, saved["lr"], granularity=c["granularity"], **c["options"])
    opt.load_state_dict(c["state_dict"])
    with torch.no_grad():
        for p, q in zip(model.parameters(), c["params"]):
            p.copy_(q)
    for grads, expected in zip(c["grads"], c["expected"]):
        run(opt, model, [grads])
        for p, q in zip(model.parameters(), expected):
            assert_within_ulps(p.detach(), q)
    assert diagnostics_close(opt.diagnostics(mean=True), c["diagnostics_mean"])
    assert opt.state_dict()["state"].keys() == c["state_dict"]["state"].keys()
    for k, state in opt.state_dict()["state"].items():
        assert state.keys() == c["state_dict"]["state"][k].keys()


# -- the new rules against their references ------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", [{}, {"alpha": 0.9, "eps": 1e-6}])
@pytest.mark.parametrize("magnitude", ["rmsprop", None])
def test_rmsprop_equals_torch_rmsprop(dtype, options, magnitude):
    ours, theirs = two_layer(dtype), two_layer(dtype)
    opt = optim.build("graft", ours, 1e-2, magnitude=magnitude, direction="rmsprop", **options)
    ref = torch.optim.RMSprop(theirs.parameters(), lr=1e-2, foreach=True, **options)
    grads = random_grads(ours, 10)
    run(opt, ours, grads)
    run(ref, theirs, grads)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, **tol)


class LionReference:
    """Chen et al. 2023, Algorithm 2 (lambda = 0), in float64."""

    def __init__(self, params, betas=(0.9, 0.99)):
        self.p = [p.detach().clone().double() for p in params]
        self.m = [torch.zeros_like(p) for p in self.p]
        self.b1, self.b2 = betas

    def update(self, g):
        """The update sign(c_t) of every tensor; also m_t."""
        out = []
        for i, gi in enumerate(g):
            c = self.b1 * self.m[i] + (1 - self.b1) * gi
            out.append(torch.sign(c))
            self.m[i] = self.b2 * self.m[i] + (1 - self.b2) * gi
        return out


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.5, 0.8)])
@pytest.mark.parametrize("granularity", ["layer", "global"])
def test_lion_matches_the_published_update(betas, granularity):
    model = two_layer()
    opt = optim.build(
        "graft", model, LR, granularity=granularity, magnitude=None, direction="lion", betas=betas
    )
    ref = LionReference(model.parameters(), betas)
    for g in random_grads(model, 6):
        run(opt, model, [g])
        ref.p = [p - LR * u for p, u in zip(ref.p, ref.update(g))]
        for p, q in zip(model.parameters(), ref.p):
            torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)
    assert set(opt.state[next(iter(model.parameters()))]) == {"exp_avg"}


def test_adam_magnitude_on_lion_direction_keeps_two_sets_of_betas():
    """Adam and Lion share the key names betas and exp_avg: the magnitude's are prefixed."""
    model, shadow = two_layer(), two_layer()
    adam = optim.Adam(betas=(0.3, 0.9))
    opt = optim.Graft(optim.named_param_groups(model), LR, magnitude=adam, direction=optim.Lion())
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert opt.param_groups[0]["magnitude.betas"] == (0.3, 0.9)
    torch_adam = torch.optim.Adam(shadow.parameters(), lr=1.0, betas=(0.3, 0.9))  # steps by -A
    ref = LionReference(model.parameters())
    for g in random_grads(model, 5):
        before = [p.detach().clone() for p in model.parameters()]
        s_before = [p.detach().clone() for p in shadow.parameters()]
        run(opt, model, [g])
        run(torch_adam, shadow, [g])
        a_norm = layer_norms([b - p.detach() for b, p in zip(s_before, shadow.parameters())])
        lion = ref.update(g)
        l_norm = layer_norms(lion)
        want = [
            b - LR * a_norm[i // 2] * u / l_norm[i // 2]
            for i, (b, u) in enumerate(zip(before, lion))
        ]
        for p, q in zip(model.parameters(), want):
            torch.testing.assert_close(p.detach(), q, rtol=1e-10, atol=1e-12)
        diag = opt.diagnostics()
        assert [diag[k]["adam_norm"] for k in ("0", "2")] == pytest.approx(a_norm, rel=1e-10)
    state = opt.state[next(iter(model.parameters()))]
    assert set(state) == {"exp_avg", "magnitude"}
    assert set(state["magnitude"]) == {"step", "exp_avg", "exp_avg_sq"}


# -- any graft by name ---------------------------------------------------------------------------

MAGNITUDES = [None, *optim.RULES]
DIRECTIONS = [r for r, cls in optim.RULES.items() if not cls.magnitude_only]


@pytest.mark.parametrize("magnitude, direction", list(itertools.product(MAGNITUDES, DIRECTIONS)))
def test_every_graft_of_registry_rules_steps_resumes_and_stops_at_zero(magnitude, direction):
    def build(model):
        return optim.build("graft", model, LR, magnitude=magnitude, direction=direction)

    model = two_layer(torch.float32)
    opt = build(model)
    grads = random_grads(model, 6)
    run(opt, model, grads[:3])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    run(opt, model, grads[3:])
    buf.seek(0)
    saved = torch.load(buf)
    resumed = two_layer(torch.float32, seed=7)
    resumed.load_state_dict(saved["model"])
    opt2 = build(resumed)
    opt2.load_state_dict(saved["opt"])
    run(opt2, resumed, grads[3:])
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert opt.diagnostics(mean=True) == opt2.diagnostics(mean=True)

    fresh = two_layer(torch.float32)
    opt3 = build(fresh)
    before = [p.detach().clone() for p in fresh.parameters()]
    run(opt3, fresh, [[torch.zeros_like(p) for p in fresh.parameters()]])
    for p, q in zip(fresh.parameters(), before):
        assert torch.equal(p.detach(), q)
    for row in opt3.diagnostics().values():
        assert all(math.isfinite(v) for v in row.values())
        assert row["step_norm"] == 0.0


def test_grafted_step_has_the_magnitudes_norm_and_the_directions_direction():
    model, shadow = two_layer(), two_layer()
    opt = optim.build("graft", model, LR, magnitude="rmsprop", direction="sgd", alpha=0.9)
    rms = torch.optim.RMSprop(shadow.parameters(), lr=1.0, alpha=0.9)  # steps by -R
    for g in random_grads(model, 4):
        before = [p.detach().clone() for p in model.parameters()]
        s_before = [p.detach().clone() for p in shadow.parameters()]
        run(opt, model, [g])
        run(rms, shadow, [g])
        moved = [b - p.detach() for b, p in zip(before, model.parameters())]
        r_norm = layer_norms([b - p.detach() for b, p in zip(s_before, shadow.parameters())])
        assert layer_norms(moved) == pytest.approx([LR * n for n in r_norm], rel=1e-10)
        for i in (0, 2):  # parallel to the gradient of the layer
            cos = torch.nn.functional.cosine_similarity(
                torch.cat([moved[i].flatten(), moved[i + 1].flatten()]),
                torch.cat([g[i].flatten(), g[i + 1].flatten()]),
                dim=0,
            )
            assert float(cos) == pytest.approx(1.0, rel=1e-12)


@dataclass(frozen=True)
class SignSGD(optim.Rule):
    """sign(g): a rule defined outside the package."""

    def unit(self, batch: optim.Batch, slot: optim.Slot) -> optim.Unit:
        out = batch.workspace(slot.role)
        torch._foreach_copy_(out, batch.grads)
        torch._foreach_sign_(out)
        return optim.Unit(out)


def test_a_new_rule_is_a_class_and_a_registry_line(monkeypatch):
    monkeypatch.setitem(optim.RULES, "sign", SignSGD)
    model = two_layer()
    opt = optim.build("graft", model, LR, magnitude="sgd", direction="sign")
    g = random_grads(model, 1)[0]
    before = [p.detach().clone() for p in model.parameters()]
    run(opt, model, [g])
    signs = [torch.sign(x) for x in g]
    g_norm, s_norm = layer_norms(g), layer_norms(signs)
    for i, (b, p, s) in enumerate(zip(before, model.parameters(), signs)):
        want = b - LR * g_norm[i // 2] * s / s_norm[i // 2]
        torch.testing.assert_close(p.detach(), want, rtol=1e-12, atol=1e-14)


def test_presets_are_grafts_of_their_table_rules():
    for name, preset in optim.PRESETS.items():
        opt = optim.build(name, two_layer(), LR)
        want = None if preset.magnitude is None else optim.RULES[preset.magnitude]
        assert (opt.magnitude is None) == (want is None)
        if want is not None:
            assert isinstance(opt.magnitude, want)
        assert isinstance(opt.direction, optim.RULES[preset.direction])
    assert optim.build("ada-nsgda", two_layer(), LR).direction == optim.SGD(momentum=0.0)


def test_rule_given_as_a_mapping_takes_its_own_options():
    opt = optim.build(
        "graft",
        two_layer(),
        LR,
        magnitude={"name": "rmsprop", "eps": 1e-3},
        direction="adam",
        eps=1e-6,
    )
    assert opt.magnitude == optim.RMSprop(eps=1e-3)
    assert opt.direction == optim.Adam(eps=1e-6)
    group = opt.param_groups[0]
    assert (group["magnitude.eps"], group["eps"]) == (1e-3, 1e-6)


def test_a_graft_cell_in_a_trainer_config_needs_no_new_code():
    cfg = experiments.resolve_config(
        {
            "experiment": "mog",
            "optimizer": "graft",
            "optimizer_options": {"magnitude": "rmsprop", "direction": "sgd", "alpha": 0.9},
            "seed": 0,
            "batch_size": 16,
            "hidden": 8,
        }
    )
    exp = experiments.build(cfg)
    assert exp.optimizers["G"].magnitude == optim.RMSprop(alpha=0.9)
    exp.train_step()
    assert all(
        math.isfinite(v)
        for o in exp.optimizers.values()
        for row in o.diagnostics().values()
        for k, v in row.items()
        if k != "adam_norm"
    )


def test_lazy_regularisation_corrects_betas_only_where_a_rule_takes_them():
    _, sgd = lazy_options("graft", 1.0, {"magnitude": "sgd", "direction": "sgd"}, 4)
    assert "betas" not in sgd
    optim.build("graft", two_layer(), LR, **sgd)
    _, adam = lazy_options("graft", 1.0, {"magnitude": None, "direction": "adam"}, 4)
    assert adam["betas"] == pytest.approx((0.0, 0.99**0.8))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: optim.build("graft", m, LR, magnitude="adam"), r"'graft' needs direction"),
        (
            lambda m: optim.build("graft", m, LR, magnitude="adam", direction="constant"),
            r"direction='constant' is not allowed: it is a magnitude only",
        ),
        (
            lambda m: optim.build("graft", m, LR, magnitude="sgd", direction="sgd", alpha=0.9),
            r"option\(s\) alpha not taken by magnitude 'sgd' or direction 'sgd'",
        ),
        (
            lambda m: optim.build("graft", m, LR, magnitude="sgd", direction="sgd", scales=2.0),
            r"option\(s\) scales not taken",
        ),
        (
            lambda m: optim.build(
                "graft", m, LR, magnitude={"name": "lion", "eps": 1.0}, direction="sgd"
            ),
            r"magnitude option\(s\) eps not allowed .*allowed: betas",
        ),
        (
            lambda m: optim.build("graft", m, LR, magnitude="rmsprop", direction="sgd", alpha=1.0),
            r"alpha=1.0 is not allowed",
        ),
        (lambda m: optim.Graft(m.parameters(), LR, direction=optim.Constant()), r"magnitude only"),
    ],
)
def test_bad_grafts_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(two_layer())
