"""The update rules. Each is one small class: its options, its state, its unit-lr step.

To add a rule: write a frozen dataclass subclass of ``Rule`` here (listed in ``__all__``, which
``trainers.optim`` exports) and give it a name in ``registry.RULES``; ``build("graft", ...,
magnitude=NAME, direction=NAME)`` then takes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainers.optim.checks import (
    check_betas,
    check_non_negative,
    check_scale,
    check_unit_interval,
)
from trainers.optim.kernels import sqrt_into
from trainers.optim.rule import Batch, Rule, Slot, Unit

__all__ = ["SGD", "Adam", "Constant", "Lion", "RMSprop"]

ADAM_FORMS = ("torch", "paper")


@dataclass(frozen=True)
class SGD(Rule):
    """The gradient g, or the heavy-ball buffer b = momentum * b + g (torch.optim.SGD)."""

    momentum: float = 0.0

    hyper = ("momentum",)
    state_keys = ("momentum_buffer",)

    def __post_init__(self) -> None:
        check_unit_interval("momentum", self.momentum)
        object.__setattr__(self, "momentum", float(self.momentum))

    def unit(self, batch: Batch, slot: Slot) -> Unit:
        grads = out = batch.grads
        key = slot.key("momentum")
        for mu, ts in batch.buckets(lambda t, g: g[key]).items():
            if mu == 0.0:
                continue
            states = batch.states(slot, ts)
            old, bufs = [], []
            for t, state in zip(ts, states):
                if "momentum_buffer" in state:
                    old.append(t)
                    bufs.append(state["momentum_buffer"])
                else:
                    state["momentum_buffer"] = grads[t].detach().clone()
            if old:
                torch._foreach_mul_(bufs, mu)
                torch._foreach_add_(bufs, [grads[t] for t in old])
            if out is grads:
                out = list(grads)
            for t, state in zip(ts, states):
                out[t] = state["momentum_buffer"]
        return Unit(out)


@dataclass(frozen=True)
class Adam(Rule):
    """Adam's step A. ``form="torch"``: m_hat / (sqrt(v_hat) + eps) (torch.optim.Adam).
    ``form="paper"``: M1 / (sqrt(M2) + eps), M1 = b1 M1 + g, M2 = b2 M2 + g^2 (the paper's
    Algorithm 1, no bias correction). With b1 = 0 the first moment is g and is not stored."""

    betas: tuple[float, float] = (0.0, 0.9)
    eps: float = 1e-8
    form: str = "torch"

    hyper = ("betas", "eps")
    state_keys = ("step", "exp_avg", "exp_avg_sq")
    aliases = {"form": "adam_form"}
    reports = "adam_norm"

    def __post_init__(self) -> None:
        if self.form not in ADAM_FORMS:
            allowed = ", ".join(ADAM_FORMS)
            raise ValueError(f"adam_form={self.form!r} is not allowed; allowed: {allowed}")
        object.__setattr__(self, "betas", check_betas(self.betas))
        check_non_negative("eps", self.eps)
        object.__setattr__(self, "eps", float(self.eps))

    def unit(self, batch: Batch, slot: Slot) -> Unit:
        """A = factor * raw per tensor: torch form raw = m / (sqrt(v) + eps sqrt(bc2)),
        factor = sqrt(bc2) / bc1; paper form factor = 1. ``raw`` lives in the workspace."""
        paper = self.form == "paper"
        params, grads = batch.params, batch.grads
        raw = batch.workspace(slot.role)
        factor = [1.0] * len(params)
        states = batch.states(slot, list(range(len(params))))
        for p, state in zip(params, states):
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        torch._foreach_add_([s["step"] for s in states], 1.0)
        bk, ek = slot.key("betas"), slot.key("eps")
        buckets = batch.buckets(lambda t, g: (g[bk], g[ek], states[t]["step"].item()))
        for ((beta1, beta2), eps, step), ts in buckets.items():
            g = [grads[t] for t in ts]
            v = [states[t]["exp_avg_sq"] for t in ts]
            w = [raw[t] for t in ts]
            m = g
            if beta1 != 0.0:
                m = []
                for t in ts:
                    if "exp_avg" not in states[t]:
                        states[t]["exp_avg"] = torch.zeros_like(params[t])
                    m.append(states[t]["exp_avg"])
                if paper:
                    torch._foreach_mul_(m, beta1)
                    torch._foreach_add_(m, g)
                else:
                    torch._foreach_lerp_(m, g, 1.0 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, g, g, 1.0 if paper else 1.0 - beta2)
            sqrt_into(w, v)
            bc2_sqrt = 1.0 if paper else math.sqrt(1.0 - beta2**step)
            bc1 = 1.0 if paper else 1.0 - beta1**step
            torch._foreach_add_(w, eps * bc2_sqrt)
            torch._foreach_reciprocal_(w)
            torch._foreach_mul_(w, m)
            for t in ts:
                factor[t] = bc2_sqrt / bc1
        return Unit(raw, factor)


@dataclass(frozen=True)
class Constant(Rule):
    """A magnitude only: the group's ``scale`` s_Y (nsgda; per group from a profile)."""

    scale: float = 1.0

    hyper = ("scale",)
    aliases = {"scale": "scales"}
    magnitude_only = True

    def check_group(self, name: str, group: dict, slot: Slot) -> None:
        check_scale(name, group[slot.key("scale")])

    def unit(self, batch: Batch, slot: Slot) -> Unit:
        return Unit(norms=batch.vector(slot.key("scale")))


@dataclass(frozen=True)
class RMSprop(Rule):
    """g / (sqrt(v) + eps), v = alpha v + (1 - alpha) g^2 (torch.optim.RMSprop, not centered,
    no momentum)."""

    alpha: float = 0.99
    eps: float = 1e-8

    hyper = ("alpha", "eps")
    state_keys = ("square_avg",)

    def __post_init__(self) -> None:
        check_unit_interval("alpha", self.alpha)
        check_non_negative("eps", self.eps)
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "eps", float(self.eps))

    def unit(self, batch: Batch, slot: Slot) -> Unit:
        params, grads = batch.params, batch.grads
        raw = batch.workspace(slot.role)
        states = batch.states(slot, list(range(len(params))))
        ak, ek = slot.key("alpha"), slot.key("eps")
        for (alpha, eps), ts in batch.buckets(lambda t, g: (g[ak], g[ek])).items():
            for t in ts:
                if "square_avg" not in states[t]:
                    states[t]["square_avg"] = torch.zeros_like(params[t])
            g = [grads[t] for t in ts]
            v = [states[t]["square_avg"] for t in ts]
            w = [raw[t] for t in ts]
            torch._foreach_mul_(v, alpha)
            torch._foreach_addcmul_(v, g, g, 1.0 - alpha)
            sqrt_into(w, v)
            torch._foreach_add_(w, eps)
            torch._foreach_reciprocal_(w)
            torch._foreach_mul_(w, g)
        return Unit(raw)


@dataclass(frozen=True)
class Lion(Rule):
    """Lion (Chen et al. 2023, Algorithm 2, without weight decay): sign(b1 m + (1 - b1) g),
    then m = b2 m + (1 - b2) g."""

    betas: tuple[float, float] = (0.9, 0.99)

    hyper = ("betas",)
    state_keys = ("exp_avg",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas))

    def unit(self, batch: Batch, slot: Slot) -> Unit:
        params, grads = batch.params, batch.grads
        raw = batch.workspace(slot.role)
        states = batch.states(slot, list(range(len(params))))
        key = slot.key("betas")
        for (beta1, beta2), ts in batch.buckets(lambda t, g: g[key]).items():
            for t in ts:
                if "exp_avg" not in states[t]:
                    states[t]["exp_avg"] = torch.zeros_like(params[t])
            g = [grads[t] for t in ts]
            m = [states[t]["exp_avg"] for t in ts]
            w = [raw[t] for t in ts]
            torch._foreach_copy_(w, m)
            torch._foreach_lerp_(w, g, 1.0 - beta1)
            torch._foreach_sign_(w)
            torch._foreach_lerp_(m, g, 1.0 - beta2)
        return Unit(raw)
