"""Group-wise optimizers of the study: SGDA, Adam and their grafts.

Every optimizer here is one rule, ``Graft``: for a parameter group ``Y`` (a layer, the whole
network, or one tensor) with gradient ``g`` it takes

    Y -= lr * |M_Y| * D_Y / (|D_Y| + graft_eps)        (grafted)
    Y -= lr * D_Y                                       (magnitude=None: the direction rule itself)

where ``D`` and ``M`` are unit-lr steps of the base rules

    "sgd":      S = g, or the heavy-ball buffer b = momentum * b + g (torch.optim.SGD semantics)
    "adam":     A = m_hat / (sqrt(v_hat) + eps)  (torch.optim.Adam semantics, ``adam_form="torch"``)
                A = M1 / (sqrt(M2) + eps)        (the paper's Algorithm 1, ``adam_form="paper"``:
                M1 = beta1 M1 + g, M2 = beta2 M2 + g^2, no bias correction)
    "constant": |M_Y| = the group's ``scale`` (magnitude only)

Norms are L2 over the group. A zero direction gives a zero step. All tensors of all groups are
processed together with ``torch._foreach_*`` ops; per-group norms are segment sums on the device,
so a step never waits on the host.

After each step the optimizer holds per-group diagnostics on the device (``last_diagnostics``,
columns ``DIAGNOSTICS``) and their running sum over all steps; ``diagnostics()`` reads them with
one host transfer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

RULES = ("sgd", "adam")
MAGNITUDES = ("sgd", "adam", "constant")
ADAM_FORMS = ("torch", "paper")
DIAGNOSTICS = ("grad_norm", "adam_norm", "step_norm", "param_norm")


def _check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a number in [0, 1)")


def _check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number >= 0")


def check_lr(lr: Any) -> None:
    """Raise ValueError unless ``lr`` is a finite positive number."""
    ok = isinstance(lr, (int, float)) and not isinstance(lr, bool)
    if not (ok and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is not allowed: it must be a finite number > 0")


def check_scale(name: str, scale: Any) -> None:
    """Raise ValueError unless ``scale`` is a finite positive number."""
    ok = isinstance(scale, (int, float)) and not isinstance(scale, bool)
    if not (ok and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale of group {name!r} is {scale!r}: it must be a finite number > 0")


class Graft(torch.optim.Optimizer):
    """Graft the per-group magnitude of one rule onto the direction of another.

    Args:
        params: parameters or param groups; a group's ``name`` labels its diagnostics.
        lr: step size.
        magnitude: "sgd", "adam", "constant" (the group's ``scale``), or None for no grafting.
        direction: "sgd" or "adam".
        betas, eps: Adam's moment decays and denominator epsilon.
        adam_form: "torch" (bias-corrected EMAs) or "paper" (Algorithm 1 of the paper).
        momentum: heavy-ball momentum of the "sgd" rule.
        scale: the constant magnitude s_Y (per group via the group's ``scale`` key).
        graft_eps: added to |D_Y| before dividing (0: exact normalisation).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        magnitude: str | None,
        direction: str,
        betas: tuple[float, float] = (0.0, 0.9),
        eps: float = 1e-8,
        adam_form: str = "torch",
        momentum: float = 0.0,
        scale: float = 1.0,
        graft_eps: float = 0.0,
    ) -> None:
        if direction not in RULES:
            raise ValueError(f"direction={direction!r} is not allowed; allowed: {', '.join(RULES)}")
        if magnitude is not None and magnitude not in MAGNITUDES:
            allowed = ", ".join(MAGNITUDES)
            raise ValueError(f"magnitude={magnitude!r} is not allowed; allowed: {allowed}, None")
        if adam_form not in ADAM_FORMS:
            allowed = ", ".join(ADAM_FORMS)
            raise ValueError(f"adam_form={adam_form!r} is not allowed; allowed: {allowed}")
        check_lr(lr)
        if not (isinstance(betas, Sequence) and len(betas) == 2):
            raise ValueError(f"betas={betas!r} is not allowed: it must be a pair of numbers")
        _check_unit_interval("betas[0]", betas[0])
        _check_unit_interval("betas[1]", betas[1])
        _check_non_negative("eps", eps)
        _check_unit_interval("momentum", momentum)
        _check_non_negative("graft_eps", graft_eps)
        defaults = dict(
            lr=lr,
            betas=(float(betas[0]), float(betas[1])),
            eps=float(eps),
            momentum=float(momentum),
            scale=scale,
            graft_eps=float(graft_eps),
        )
        self.magnitude = magnitude
        self.direction = direction
        self.adam_form = adam_form
        super().__init__(params, defaults)
        self._diag_last: torch.Tensor | None = None
        self._diag_sum: torch.Tensor | None = None
        self._diag_steps = 0
        self._work: dict[torch.Tensor, torch.Tensor] = {}
        self._param_norm_stale = False
        self._const_key: tuple | None = None
        self._const: dict[str, Any] = {}

    # -- bookkeeping ---------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; it gets the name ``group<i>`` unless it has one."""
        param_group.setdefault("name", f"group{len(self.param_groups)}")
        name = param_group["name"]
        if any(g["name"] == name for g in self.param_groups):
            raise ValueError(f"param group name {name!r} is used twice; names must be unique")
        super().add_param_group(param_group)
        check_scale(name, param_group["scale"])
        self._diag_last = self._diag_sum = None
        self._diag_steps = 0

    @property
    def uses_adam(self) -> bool:
        """Whether the optimizer keeps Adam moments (and reports ``adam_norm``)."""
        return "adam" in (self.magnitude, self.direction)

    @property
    def group_names(self) -> list[str]:
        """Names of the param groups, in the order of the diagnostics rows."""
        return [g["name"] for g in self.param_groups]

    @property
    def last_diagnostics(self) -> torch.Tensor | None:
        """Diagnostics of the last step, shape (groups, len(DIAGNOSTICS)), on the device.

        ``param_norm`` is measured when first read after a step (the parameters after it), so
        a step costs no pass over the parameters unless someone looks.
        """
        if self._diag_last is not None and self._param_norm_stale:
            self._diag_last[:, DIAGNOSTICS.index("param_norm")] = self._param_norms()
            self._param_norm_stale = False
        return self._diag_last

    def diagnostics(self, mean: bool = False) -> dict[str, dict[str, float]]:
        """Per-group diagnostics of the last step (or their mean over all steps), as floats.

        Keys of each group: ``DIAGNOSTICS``, without ``adam_norm`` when no Adam state exists;
        the mean has no ``param_norm`` (it is measured on read, not every step).
        """
        last = self.last_diagnostics
        if last is None:
            return {}
        table = self._diag_sum / self._diag_steps if mean else last
        skip = {"param_norm"} if mean else set()
        if not self.uses_adam:
            skip.add("adam_norm")
        keys = [k for k in DIAGNOSTICS if k not in skip]
        rows = table.tolist()
        return {
            name: {k: row[DIAGNOSTICS.index(k)] for k in keys}
            for name, row in zip(self.group_names, rows)
        }

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the running diagnostics (so a resumed mean is exact)."""
        state = super().state_dict()
        last = self.last_diagnostics
        state["diagnostics"] = {
            "last": None if last is None else last.clone(),
            "sum": None if self._diag_sum is None else self._diag_sum.clone(),
            "steps": self._diag_steps,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state written by ``state_dict`` (group names must match)."""
        state_dict = dict(state_dict)
        diag = state_dict.pop("diagnostics", None)
        saved = [g.get("name") for g in state_dict["param_groups"]]
        if saved != self.group_names:
            raise ValueError(f"param group names differ: saved {saved}, here {self.group_names}")
        super().load_state_dict(state_dict)
        self._diag_last = self._diag_sum = None
        self._diag_steps = 0
        if diag is not None and diag["sum"] is not None:
            device = self.param_groups[0]["params"][0].device
            self._diag_last = diag["last"].to(device)
            self._diag_sum = diag["sum"].to(device)
            self._diag_steps = int(diag["steps"])
            self._param_norm_stale = True

    # -- the step --------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Take one step for every group; parameters without gradient are left alone."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params, grads, gidx = self._collect()
        c = self._constants(gidx, [p.dtype for p in params])
        acc, zeros, nan = c["acc"], c["zeros"], c["nan"]

        def group_norms(tensors: list[torch.Tensor], factor=None):
            return _group_norms(tensors, c["onehot"], factor)

        g_norm = step_norm = zeros
        a_norm = nan
        if params:
            idx, lr, const, graft_eps = c["idx"], c["lr"], c["scale"], c["graft_eps"]
            g_norm = group_norms(grads)
            sgd, s_norm = grads, g_norm
            if "sgd" in (self.magnitude, self.direction):
                sgd = self._sgd_steps(params, grads, gidx)
                if sgd is not grads:
                    s_norm = group_norms(sgd)
            if self.uses_adam:
                adam, factor = self._adam_steps(params, grads, gidx)
                if all(f == factor[0] for f in factor):
                    a_factor = factor[0]
                    a_norm = group_norms(adam) * a_factor
                else:
                    a_factor = torch.tensor(factor, dtype=acc).to(zeros.device, non_blocking=True)
                    a_norm = group_norms(adam, a_factor)
            if self.direction == "sgd":
                d_raw, d_norm, d_factor = sgd, s_norm, None
            else:
                d_raw, d_norm, d_factor = adam, a_norm, a_factor
            if self.magnitude is None:
                lr_scale = lr
            else:
                mag = {"sgd": s_norm, "adam": a_norm, "constant": const}[self.magnitude]
                # a zero (or underflowing) direction gives 0/0 or x/0: a zero step, not NaN
                scale = torch.nan_to_num(mag / (d_norm + graft_eps), nan=0.0, posinf=0.0)
                lr_scale = lr * scale
            step_norm = lr_scale * d_norm
            alpha = lr_scale.index_select(0, idx)
            value = -1.0
            if isinstance(d_factor, torch.Tensor):
                alpha = alpha * d_factor
            elif d_factor is not None:
                value = -d_factor
            if c["same_dtype"]:
                alphas = list(alpha.unbind(0))
            else:
                alphas = [a.to(p.dtype) for a, p in zip(alpha.unbind(0), params)]
            torch._foreach_addcmul_(params, d_raw, alphas, value=value)
        if not self.uses_adam:
            a_norm = nan
        diag = torch.stack([g_norm, a_norm, step_norm, nan], 1)
        self._diag_last = diag
        self._diag_sum = diag.clone() if self._diag_sum is None else self._diag_sum.add_(diag)
        self._diag_steps += 1
        self._param_norm_stale = True
        return loss

    def _constants(self, gidx: list[int], dtypes: list[torch.dtype]) -> dict[str, Any]:
        """Small device tensors that only change with the groups' structure or hyperparameters
        (group index of each tensor, lr, scale, graft_eps), cached between steps."""
        hyper = tuple((g["lr"], g["scale"], g["graft_eps"]) for g in self.param_groups)
        key = (tuple(gidx), hyper, tuple(dtypes))
        if self._const_key == key:
            return self._const
        device, acc = self._device_and_dtype()
        n = len(self.param_groups)
        values = torch.tensor(hyper, dtype=acc).to(device)
        lr, scale, graft_eps = values.unbind(1)
        self._const_key = key
        self._const = {
            "acc": acc,
            "idx": torch.tensor(gidx, dtype=torch.long).to(device),
            "onehot": _onehot(gidx, n, acc).to(device),
            "lr": lr,
            "scale": scale,
            "graft_eps": graft_eps,
            "zeros": torch.zeros(n, dtype=acc, device=device),
            "nan": torch.full((n,), float("nan"), dtype=acc, device=device),
            "same_dtype": all(d == acc for d in dtypes),
        }
        return self._const

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        """The parameters' device and the dtype in which norms are accumulated."""
        params = [p for g in self.param_groups for p in g["params"]]
        acc = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
        return params[0].device, acc

    @torch.no_grad()
    def _param_norms(self) -> torch.Tensor:
        """Per-group norm of the parameters, shape (groups,)."""
        params, gidx = [], []
        for i, group in enumerate(self.param_groups):
            params += group["params"]
            gidx += [i] * len(group["params"])
        device, acc = self._device_and_dtype()
        return _group_norms(params, _onehot(gidx, len(self.param_groups), acc).to(device))

    def _collect(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int]]:
        """Parameters with gradients, their gradients and their group index."""
        params, grads, gidx = [], [], []
        for i, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"group {group['name']!r}: sparse gradients are not supported"
                    )
                params.append(p)
                grads.append(p.grad)
                gidx.append(i)
        return params, grads, gidx

    def _sgd_steps(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], gidx: list[int]
    ) -> list[torch.Tensor]:
        """The unit-lr SGD step of every tensor: the gradient or the momentum buffer."""
        out = grads
        buckets: dict[float, list[int]] = defaultdict(list)
        for t, i in enumerate(gidx):
            mu = self.param_groups[i]["momentum"]
            if mu != 0.0:
                buckets[mu].append(t)
        for mu, ts in buckets.items():
            fresh = [t for t in ts if "momentum_buffer" not in self.state[params[t]]]
            fresh_set = set(fresh)
            for t in fresh:
                self.state[params[t]]["momentum_buffer"] = grads[t].detach().clone()
            old = [t for t in ts if t not in fresh_set]
            if old:
                bufs = [self.state[params[t]]["momentum_buffer"] for t in old]
                torch._foreach_mul_(bufs, mu)
                torch._foreach_add_(bufs, [grads[t] for t in old])
            if out is grads:
                out = list(grads)
            for t in ts:
                out[t] = self.state[params[t]]["momentum_buffer"]
        return out

    def _workspace(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """One scratch tensor per parameter, kept between steps (no allocation per step)."""
        work = self._work
        missing = [p for p in params if p not in work]
        for p in missing:
            work[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        return [work[p] for p in params]

    def _adam_steps(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], gidx: list[int]
    ) -> tuple[list[torch.Tensor], list[float]]:
        """Update Adam's moments; return per tensor ``raw`` and ``factor`` with A = factor * raw.

        ``adam_form="torch"``: raw = m / (sqrt(v) + eps sqrt(bc2)), factor = sqrt(bc2) / bc1,
        which is torch.optim.Adam's m_hat / (sqrt(v_hat) + eps). ``"paper"``: raw = M1 /
        (sqrt(M2) + eps), factor = 1. With beta1 = 0 the first moment is the gradient itself
        and is not stored. ``raw`` lives in the workspace.
        """
        paper = self.adam_form == "paper"
        raw = self._workspace(params)
        factor = [1.0] * len(params)
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        torch._foreach_add_([s["step"] for s in states], 1.0)
        buckets: dict[tuple, list[int]] = defaultdict(list)
        for t, (state, i) in enumerate(zip(states, gidx)):
            group = self.param_groups[i]
            buckets[(group["betas"], group["eps"], state["step"].item())].append(t)
        for ((beta1, beta2), eps, step), ts in buckets.items():
            g = [grads[t] for t in ts]
            v = [self.state[params[t]]["exp_avg_sq"] for t in ts]
            w = [raw[t] for t in ts]
            m = g
            if beta1 != 0.0:
                m = []
                for t in ts:
                    state = self.state[params[t]]
                    if "exp_avg" not in state:
                        state["exp_avg"] = torch.zeros_like(params[t])
                    m.append(state["exp_avg"])
                if paper:
                    torch._foreach_mul_(m, beta1)
                    torch._foreach_add_(m, g)
                else:
                    torch._foreach_lerp_(m, g, 1.0 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, g, g, 1.0 if paper else 1.0 - beta2)
            _sqrt_into(w, v)
            bc2_sqrt = 1.0 if paper else math.sqrt(1.0 - beta2**step)
            bc1 = 1.0 if paper else 1.0 - beta1**step
            torch._foreach_add_(w, eps * bc2_sqrt)
            torch._foreach_reciprocal_(w)
            torch._foreach_mul_(w, m)
            for t in ts:
                factor[t] = bc2_sqrt / bc1
        return raw, factor


def _sqrt_into(out: list[torch.Tensor], tensors: list[torch.Tensor]) -> None:
    """out[t] = sqrt(tensors[t]) without allocating (on the CPU one fused pass per tensor)."""
    if out and out[0].device.type == "cpu":
        for o, x in zip(out, tensors):
            torch.sqrt(x, out=o)
    else:
        torch._foreach_copy_(out, tensors)
        torch._foreach_sqrt_(out)


def _onehot(gidx: list[int], groups: int, dtype: torch.dtype) -> torch.Tensor:
    """Matrix (groups, tensors) with a 1 where tensor t belongs to group g."""
    out = torch.zeros(groups, len(gidx), dtype=dtype)
    out[gidx, list(range(len(gidx)))] = 1.0
    return out


def _group_norms(
    tensors: list[torch.Tensor], onehot: torch.Tensor, factor: torch.Tensor | None = None
) -> torch.Tensor:
    """L2 norm per group of ``factor_t * tensors[t]``; ``onehot`` maps tensors to groups."""
    sq = torch.stack(torch._foreach_norm(tensors)).to(onehot.dtype).square()
    if factor is not None:
        sq = sq * factor.square()
    return (onehot @ sq).sqrt()


class SGDA(Graft):
    """SGD (descent for every player): Y -= lr * g, optional heavy-ball momentum."""

    def __init__(self, params, lr: float, *, momentum: float = 0.0) -> None:
        super().__init__(params, lr, magnitude=None, direction="sgd", momentum=momentum)


class Adam(Graft):
    """Adam with torch.optim.Adam semantics (or the paper's Algorithm 1); beta1 = 0 by default."""

    def __init__(
        self,
        params,
        lr: float,
        *,
        betas: tuple[float, float] = (0.0, 0.9),
        eps: float = 1e-8,
        adam_form: str = "torch",
    ) -> None:
        super().__init__(
            params, lr, magnitude=None, direction="adam", betas=betas, eps=eps, adam_form=adam_form
        )


class AdaNSGDA(Graft):
    """Ada-nSGDA, the paper's eq. (3): Y -= lr * |A_Y| * g / (|g| + graft_eps)."""

    def __init__(
        self,
        params,
        lr: float,
        *,
        betas: tuple[float, float] = (0.0, 0.9),
        eps: float = 1e-8,
        adam_form: str = "torch",
        graft_eps: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr,
            magnitude="adam",
            direction="sgd",
            betas=betas,
            eps=eps,
            adam_form=adam_form,
            graft_eps=graft_eps,
        )


class AdaDir(Graft):
    """AdaDir: Y -= lr * |g_Y| * A / (|A_Y| + graft_eps) (SGD magnitude, Adam direction)."""

    def __init__(
        self,
        params,
        lr: float,
        *,
        betas: tuple[float, float] = (0.0, 0.9),
        eps: float = 1e-8,
        adam_form: str = "torch",
        momentum: float = 0.0,
        graft_eps: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr,
            magnitude="sgd",
            direction="adam",
            betas=betas,
            eps=eps,
            adam_form=adam_form,
            momentum=momentum,
            graft_eps=graft_eps,
        )


class NSGDA(Graft):
    """Normalised SGDA: Y -= lr * s_Y * g / (|g| + graft_eps); s_Y is the group's ``scale``."""

    def __init__(
        self,
        params,
        lr: float,
        *,
        scale: float = 1.0,
        momentum: float = 0.0,
        graft_eps: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr,
            magnitude="constant",
            direction="sgd",
            scale=scale,
            momentum=momentum,
            graft_eps=graft_eps,
        )
