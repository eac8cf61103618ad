"""The study's optimizers against hand-computed float64 references and torch.optim."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import trainers.optim as optim

LR = 0.05
BETAS = (0.3, 0.9)
EPS = 1e-8


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


def layers(model: nn.Module) -> list[list[int]]:
    """Indices of model.parameters() per layer (weight, bias) of a two-layer model."""
    return [[0, 1], [2, 3]]


class Reference:
    """Float64 transcription of DESIGN.md's optimizer table, one group = a list of tensor indices."""

    def __init__(self, params, groups, kind, scales=None, momentum=0.0, form="torch"):
        self.p = [p.detach().clone() for p in params]
        self.groups, self.kind, self.scales, self.mu, self.form = (
            groups,
            kind,
            scales,
            momentum,
            form,
        )
        self.m = [torch.zeros_like(p) for p in self.p]
        self.v = [torch.zeros_like(p) for p in self.p]
        self.buf = [None] * len(self.p)
        self.t = 0

    def adam(self, g):
        b1, b2 = BETAS
        out = []
        for i, gi in enumerate(g):
            if self.form == "torch":
                self.m[i] = b1 * self.m[i] + (1 - b1) * gi
                self.v[i] = b2 * self.v[i] + (1 - b2) * gi * gi
                mhat = self.m[i] / (1 - b1**self.t)
                vhat = self.v[i] / (1 - b2**self.t)
                out.append(mhat / (vhat.sqrt() + EPS))
            else:  # the paper's Algorithm 1
                self.m[i] = b1 * self.m[i] + gi
                self.v[i] = b2 * self.v[i] + gi * gi
                out.append(self.m[i] / (self.v[i].sqrt() + EPS))
        return out

    def sgd(self, g):
        if self.mu == 0:
            return list(g)
        for i, gi in enumerate(g):
            self.buf[i] = gi.clone() if self.buf[i] is None else self.mu * self.buf[i] + gi
        return list(self.buf)

    def step(self, g):
        self.t += 1
        a = self.adam(g)
        s = self.sgd(g)

        def norm(ts, idx):
            return math.sqrt(sum(float((ts[i] ** 2).sum()) for i in idx))

        for k, idx in enumerate(self.groups):
            for i in idx:
                if self.kind == "sgda":
                    upd = s[i]
                elif self.kind == "adam":
                    upd = a[i]
                elif self.kind == "ada-nsgda":
                    upd = norm(a, idx) * s[i] / norm(s, idx)
                elif self.kind == "adadir":
                    upd = norm(s, idx) * a[i] / norm(a, idx)
                elif self.kind == "nsgda":
                    upd = self.scales[k] * s[i] / norm(s, idx)
                self.p[i] = self.p[i] - LR * upd


RULE_CASES = [("sgda", "torch"), ("nsgda", "torch")] + [
    (name, form) for name in ("adam", "ada-nsgda", "adadir") for form in ("torch", "paper")
]


@pytest.mark.parametrize("name, form", RULE_CASES)
@pytest.mark.parametrize("granularity", ["layer", "global"])
def test_update_rules_match_hand_formulas(name, granularity, form):
    model = two_layer()
    opts = {}
    if name in ("adam", "ada-nsgda", "adadir"):
        opts = dict(betas=BETAS, eps=EPS, adam_form=form)
    scales = [0.7, 2.0] if granularity == "layer" else [1.3]
    if name == "nsgda":
        opts = dict(scales={"0": 0.7, "2": 2.0} if granularity == "layer" else 1.3)
    groups = layers(model) if granularity == "layer" else [[0, 1, 2, 3]]
    ref = Reference(model.parameters(), groups, name, scales=scales, form=form)
    opt = optim.build(name, model, LR, granularity=granularity, **opts)
    grads = random_grads(model, 5)
    run(opt, model, grads)
    for g in grads:
        ref.step(g)
    for p, q in zip(model.parameters(), ref.p):
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sgda", "adadir"])
def test_momentum_matches_hand_formula(name):
    model = two_layer()
    ref = Reference(model.parameters(), layers(model), name, momentum=0.8)
    extra = dict(betas=BETAS, eps=EPS) if name == "adadir" else {}
    opt = optim.build(name, model, LR, momentum=0.8, **extra)
    grads = random_grads(model, 4)
    run(opt, model, grads)
    for g in grads:
        ref.step(g)
    for p, q in zip(model.parameters(), ref.p):
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("betas", [(0.0, 0.9), (0.5, 0.999)])
def test_adam_equals_torch_adam(dtype, betas):
    ours, theirs = two_layer(dtype), two_layer(dtype)
    opt = optim.build("adam", ours, 1e-2, betas=betas, eps=1e-8)
    ref = torch.optim.Adam(theirs.parameters(), lr=1e-2, betas=betas, eps=1e-8, foreach=True)
    grads = random_grads(ours, 20)
    run(opt, ours, grads)
    run(ref, theirs, grads)
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-15)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, **tol)


def test_default_betas_are_the_papers():
    opt = optim.build("adam", two_layer(), 1e-3)
    assert opt.param_groups[0]["betas"] == (0.0, 0.9)


def test_graft_of_a_rule_onto_itself_is_the_rule():
    for rule, plain in [("adam", "adam"), ("sgd", "sgda")]:
        a, b = two_layer(), two_layer()
        graft = optim.build("graft", a, LR, magnitude=rule, direction=rule)
        ref = optim.build(plain, b, LR)
        grads = random_grads(a, 6)
        run(graft, a, grads)
        run(ref, b, grads)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def layer_moves(before: list[torch.Tensor], model: nn.Module) -> list[float]:
    after = [p.detach() for p in model.parameters()]
    d = [(x - y).pow(2).sum() for x, y in zip(after, before)]
    return [float(d[0] + d[1]) ** 0.5, float(d[2] + d[3]) ** 0.5]


def test_nsgda_moves_each_layer_by_lr_times_its_scale():
    model = two_layer()
    opt = optim.build("nsgda", model, LR, scales={"0": 0.5, "2": 3.0})
    for g in random_grads(model, 3):
        before = [p.detach().clone() for p in model.parameters()]
        run(opt, model, [g])
        assert layer_moves(before, model) == pytest.approx([LR * 0.5, LR * 3.0], rel=1e-12)


def test_ada_nsgda_moves_each_layer_by_lr_times_adams_norm():
    model, shadow = two_layer(), two_layer()
    opt = optim.build("ada-nsgda", model, LR, betas=BETAS)
    adam = torch.optim.Adam(shadow.parameters(), lr=1.0, betas=BETAS)  # its step is -A
    for g in random_grads(model, 4):
        before = [p.detach().clone() for p in model.parameters()]
        s_before = [p.detach().clone() for p in shadow.parameters()]
        run(opt, model, [g])
        run(adam, shadow, [g])
        assert layer_moves(before, model) == pytest.approx(
            [LR * n for n in layer_moves(s_before, shadow)], rel=1e-12
        )


def test_global_and_layer_granularity_differ_as_they_should():
    grads = random_grads(two_layer(), 1)
    moves = {}
    for granularity in ("layer", "global"):
        model = two_layer()
        before = [p.detach().clone() for p in model.parameters()]
        run(optim.build("nsgda", model, LR, granularity=granularity), model, grads)
        moves[granularity] = layer_moves(before, model)
    g = grads[0]
    gnorm = [
        float(g[0].pow(2).sum() + g[1].pow(2).sum()) ** 0.5,
        float(g[2].pow(2).sum() + g[3].pow(2).sum()) ** 0.5,
    ]
    total = math.hypot(*gnorm)
    assert moves["layer"] == pytest.approx([LR, LR], rel=1e-12)
    assert moves["global"] == pytest.approx(
        [LR * gnorm[0] / total, LR * gnorm[1] / total], rel=1e-12
    )
    assert math.hypot(*moves["global"]) == pytest.approx(LR, rel=1e-12)


@pytest.mark.parametrize("name", ["sgda", "adam", "ada-nsgda", "adadir", "nsgda"])
def test_zero_and_missing_gradients_give_no_step_and_no_nan(name):
    model = two_layer()
    opt = optim.build(name, model, LR)
    before = [p.detach().clone() for p in model.parameters()]
    params = list(model.parameters())
    for p in params[:2]:
        p.grad = torch.zeros_like(p)
    for p in params[2:]:
        p.grad = None
    opt.step()
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p.detach(), q)
    for p in params[2:]:
        assert p not in opt.state or not opt.state[p]
    for row in opt.diagnostics().values():
        assert all(math.isfinite(v) for v in row.values())
        assert row["step_norm"] == 0.0 and row["grad_norm"] == 0.0


def test_diagnostics_measure_what_they_name():
    model = two_layer()
    opt = optim.build("ada-nsgda", model, LR)
    grads = random_grads(model, 3)
    history = []
    for g in grads:
        before = [p.detach().clone() for p in model.parameters()]
        run(opt, model, [g])
        diag = opt.diagnostics()
        history.append(diag)
        moved = layer_moves(before, model)
        for k, (name, idx) in enumerate(zip(["0", "2"], layers(model))):
            gn = math.sqrt(sum(float(g[i].pow(2).sum()) for i in idx))
            params = [p.detach() for p in model.parameters()]
            pn = math.sqrt(sum(float(params[i].pow(2).sum()) for i in idx))
            assert diag[name]["grad_norm"] == pytest.approx(gn, rel=1e-12)
            assert diag[name]["step_norm"] == pytest.approx(moved[k], rel=1e-12)
            assert diag[name]["param_norm"] == pytest.approx(pn, rel=1e-12)
            assert diag[name]["step_norm"] == pytest.approx(LR * diag[name]["adam_norm"], rel=1e-12)
    mean = opt.diagnostics(mean=True)
    assert mean["2"]["adam_norm"] == pytest.approx(
        sum(h["2"]["adam_norm"] for h in history) / 3, rel=1e-12
    )
    sgd = optim.build("sgda", model, LR)
    run(sgd, model, grads[:1])
    assert set(sgd.diagnostics()["0"]) == {"grad_norm", "step_norm", "param_norm"}


def test_first_adam_step_is_sign_like():
    """On the first step |A_Y| is about sqrt(#entries): one origin of per-layer scales."""
    model = two_layer()
    opt = optim.build("ada-nsgda", model, LR)
    run(opt, model, random_grads(model, 1))
    diag = opt.diagnostics()
    assert diag["0"]["adam_norm"] == pytest.approx(math.sqrt(3 * 4 + 4), rel=1e-6)
    assert diag["2"]["adam_norm"] == pytest.approx(math.sqrt(4 * 2 + 2), rel=1e-6)


@pytest.mark.parametrize("name", ["sgda", "adam", "ada-nsgda", "adadir", "nsgda"])
def test_checkpoint_round_trip_is_bit_identical(name):
    torch.manual_seed(0)
    data = torch.randn(64, 3)

    def train(model, opt, start, stop):
        for t in range(start, stop):
            opt.zero_grad()
            x = data[(t * 8) % 64 :][:8]
            model(x).pow(2).mean().backward()
            opt.step()

    opts = dict(momentum=0.9) if name in ("sgda", "adadir", "nsgda") else {}
    model = two_layer(torch.float32)
    opt = optim.build(name, model, 1e-2, **opts)
    train(model, opt, 0, 5)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    train(model, opt, 5, 12)

    buf.seek(0)
    saved = torch.load(buf)
    resumed = two_layer(torch.float32, seed=123)
    resumed.load_state_dict(saved["model"])
    opt2 = optim.build(name, resumed, 1e-2, **opts)
    opt2.load_state_dict(saved["opt"])
    train(resumed, opt2, 5, 12)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert opt.diagnostics(mean=True) == opt2.diagnostics(mean=True)


def test_lr_set_on_a_group_takes_effect():
    model = two_layer()
    opt = optim.build("nsgda", model, LR)
    opt.param_groups[1]["lr"] = LR / 10
    before = [p.detach().clone() for p in model.parameters()]
    run(opt, model, random_grads(model, 1))
    assert layer_moves(before, model) == pytest.approx([LR, LR / 10], rel=1e-12)


def test_groups_are_named_by_layer_and_shared_parameters_appear_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1))
            self.enc = nn.Linear(2, 2)
            self.dec = nn.Linear(2, 2)
            self.dec.weight = self.enc.weight
            self.frozen = nn.Linear(2, 2).requires_grad_(False)

    groups = optim.named_param_groups(Tied())
    assert [g["name"] for g in groups] == ["root", "enc", "dec"]
    assert [len(g["params"]) for g in groups] == [1, 2, 1]
    assert [g["name"] for g in optim.named_param_groups(Tied(), "global")] == ["global"]
    tensor = optim.named_param_groups(Tied(), "tensor")
    assert [g["name"] for g in tensor] == ["gain", "enc.weight", "enc.bias", "dec.bias"]


def test_scale_profile_round_trip(tmp_path):
    model = two_layer()
    ada = optim.build("ada-nsgda", model, LR)
    run(ada, model, random_grads(model, 5))
    profile = optim.scale_profile(ada)
    path = optim.save_scale_profile(profile, tmp_path / "profile.json")
    assert optim.load_scale_profile(path) == pytest.approx(profile)
    nsgda = optim.build("nsgda", model, LR, scales=path)
    assert [g["scale"] for g in nsgda.param_groups] == pytest.approx([profile["0"], profile["2"]])
    with pytest.raises(ValueError, match="Adam state"):
        optim.scale_profile(nsgda)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: optim.build("adamw", m, 1e-3),
            r"unknown optimizer 'adamw'; allowed: sgda, adam",
        ),
        (lambda m: optim.build("adam", m, 0.0), r"lr=0.0 is not allowed"),
        (lambda m: optim.build("adam", m, -1e-3), r"lr=-0.001 is not allowed"),
        (lambda m: optim.build("adam", m, float("nan")), r"lr=nan is not allowed"),
        (lambda m: optim.build("adam", m, float("inf")), r"lr=inf is not allowed"),
        (lambda m: optim.build("adam", m, "1e-3"), r"lr='1e-3' is not allowed"),
        (
            lambda m: optim.build("adam", m, 1e-3, granularity="block"),
            r"granularity='block' .*layer, global",
        ),
        (
            lambda m: optim.build("nsgda", m, 1e-3, betas=(0.0, 0.9)),
            r"option\(s\) betas not allowed .*scales",
        ),
        (lambda m: optim.build("adam", m, 1e-3, betas=(0.0, 1.0)), r"betas\[1\]=1.0"),
        (lambda m: optim.build("nsgda", m, 1e-3, scales={"0": 1.0}), r"missing \['2'\]"),
        (lambda m: optim.build("nsgda", m, 1e-3, scales=0.0), r"scale of group '0' is 0.0"),
        (lambda m: optim.build("nsgda", m, 1e-3, scales="/nonexistent/p.json"), r"does not exist"),
        (
            lambda m: optim.build("graft", m, 1e-3, magnitude="adam", direction="sign"),
            r"direction='sign'",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call(two_layer())


def test_diagnostics_read_with_grad_enabled_survive_a_checkpoint():
    model = two_layer()
    opt = optim.build("ada-nsgda", model, LR)
    run(opt, model, random_grads(model, 2))
    assert not opt.last_diagnostics.requires_grad  # read outside torch.no_grad()
    restored = optim.build("ada-nsgda", model, LR)
    restored.load_state_dict(opt.state_dict())
    run(restored, model, random_grads(model, 1, seed=5))
    assert math.isfinite(restored.diagnostics()["0"]["param_norm"])


def test_step_hooks_and_the_profiler_still_see_a_step():
    """Our step skips torch.optim's wrapper only where nothing would see it: hooks registered
    on the optimizer or for all optimizers run, a profiler records the step, and the
    parameters move the same with and without them."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    grads = random_grads(two_layer(), 3)
    plain, watched = two_layer(), two_layer()
    opt_plain = optim.build("adam", plain, LR)
    opt = optim.build("adam", watched, LR)
    seen: list[str] = []
    handles = [
        opt.register_step_pre_hook(lambda o, a, k: seen.append("pre")),
        opt.register_step_post_hook(lambda o, a, k: seen.append("post")),
        register_optimizer_step_post_hook(lambda o, a, k: seen.append("global")),
    ]
    try:
        run(opt, watched, grads)
        run(opt_plain, plain, grads)  # the global hook sees this one too
    finally:
        for handle in handles:
            handle.remove()
    assert seen == ["pre", "post", "global"] * 3 + ["global"] * 3
    for a, b in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(a, b)
    run(opt, watched, grads[:1])  # hooks removed: they are not called again
    assert len(seen) == 12
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run(opt, watched, grads[:2])
    names = [e.name for e in prof.events()]
    assert names.count(f"Optimizer.step#{type(opt).__name__}.step") == 2
