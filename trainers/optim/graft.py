"""``Graft``: the per-group magnitude of one update rule on the direction of another.

For a parameter group ``Y`` (a layer, the whole network, or one tensor), with ``M`` and ``D``
the unit-lr steps of the magnitude and direction rules (``trainers.optim.rules``):

    Y -= lr * |M_Y| * D_Y / (|D_Y| + graft_eps)        (grafted)
    Y -= lr * D_Y                                       (magnitude=None: the direction rule)

Norms are L2 over the group. A zero direction gives a zero step. All tensors of all groups are
processed together with ``torch._foreach_*`` ops; per-group norms are segment sums on the
device, so a step never waits on the host. Per-group diagnostics: ``trainers.optim.diagnostics``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.optim.optimizer as torch_optimizer

from trainers.optim.checks import check_lr, check_non_negative
from trainers.optim.diagnostics import Diagnostics
from trainers.optim.kernels import group_norms, onehot
from trainers.optim.rule import Batch, Rule, Slot, Unit
from trainers.optim.rules import SGD, Adam

RESERVED = ("lr", "graft_eps", "name", "params")
DEFAULT_MAGNITUDE = Adam()  # rules are frozen: safe to share
DEFAULT_DIRECTION = SGD()


def slots(magnitude: Rule | None, direction: Rule) -> tuple[Slot | None, Slot]:
    """Where each rule keeps its keys: bare names unless the two rules share a key name (then
    the magnitude's are prefixed); one slot when the rules are equal (computed once)."""
    if direction.magnitude_only:
        raise ValueError(f"direction={direction!r} is not allowed: it is a magnitude only")
    for rule in (magnitude, direction):
        clash = sorted(set(RESERVED) & set(getattr(rule, "hyper", ())))
        if clash:
            raise ValueError(f"{rule!r} uses the reserved group key(s) {clash}")
    d = Slot("direction")
    if magnitude is None or magnitude == direction:
        return (None if magnitude is None else d), d
    shared = set(magnitude.hyper) & set(direction.hyper)
    shared |= set(magnitude.state_keys) & set(direction.state_keys)
    return Slot("magnitude", prefixed=bool(shared)), d


class Graft(torch.optim.Optimizer):
    """Graft the per-group norm of ``magnitude``'s step onto the direction of ``direction``'s.

    Args:
        params: parameters or param groups; a group's ``name`` labels its diagnostics.
        lr: step size.
        magnitude: a rule, or None for the direction rule itself (no grafting).
        direction: a rule with a direction (not ``Constant``).
        graft_eps: added to |D_Y| before dividing (0: exact normalisation).

    The rules' per-group options (e.g. Adam's betas) are param-group keys, with the rules'
    values as defaults; they may be set per group like ``lr``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        magnitude: Rule | None = DEFAULT_MAGNITUDE,
        direction: Rule = DEFAULT_DIRECTION,
        graft_eps: float = 0.0,
    ) -> None:
        check_lr(lr)
        check_non_negative("graft_eps", graft_eps)
        self.magnitude, self.direction = magnitude, direction
        self._mslot, self._dslot = slots(magnitude, direction)
        defaults: dict[str, Any] = {"lr": lr}
        if magnitude is not None:
            defaults.update(magnitude.group_defaults(self._mslot))
        defaults.update(direction.group_defaults(self._dslot))
        defaults["graft_eps"] = float(graft_eps)
        reporting = [(r, s) for r, s in self._rules() if r.reports == "adam_norm"]
        self._adam_slot = reporting[0][1] if reporting else None
        self._diag = Diagnostics(self._param_norms)
        self._work: dict[str, dict[torch.Tensor, torch.Tensor]] = {}
        self._const_key: tuple | None = None
        self._const: dict[str, Any] = {}
        self._vectors: dict[str, tuple[tuple, torch.Tensor]] = {}
        super().__init__(params, defaults)

    def _rules(self) -> list[tuple[Rule, Slot]]:
        """The distinct rules and their slots, magnitude first."""
        out = [] if self.magnitude is None else [(self.magnitude, self._mslot)]
        if self._mslot is not self._dslot:
            out.append((self.direction, self._dslot))
        return out

    # -- bookkeeping ---------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; it gets the name ``group<i>`` unless it has one."""
        param_group.setdefault("name", f"group{len(self.param_groups)}")
        name = param_group["name"]
        if any(g["name"] == name for g in self.param_groups):
            raise ValueError(f"param group name {name!r} is used twice; names must be unique")
        super().add_param_group(param_group)
        for rule, slot in self._rules():
            rule.check_group(name, self.param_groups[-1], slot)
        self._diag.reset()

    @property
    def uses_adam(self) -> bool:
        """Whether the optimizer keeps Adam moments (and reports ``adam_norm``)."""
        return self._adam_slot is not None

    @property
    def group_names(self) -> list[str]:
        """Names of the param groups, in the order of the diagnostics rows."""
        return [g["name"] for g in self.param_groups]

    @property
    def last_diagnostics(self) -> torch.Tensor | None:
        """Diagnostics of the last step, shape (groups, len(DIAGNOSTICS)), on the device;
        ``param_norm`` is measured on first read after a step."""
        return self._diag.last

    def diagnostics(self, mean: bool = False) -> dict[str, dict[str, float]]:
        """Per-group diagnostics of the last step (or their mean over all steps), as floats.

        Keys of each group: ``DIAGNOSTICS``, without ``adam_norm`` when no Adam state exists;
        the mean has no ``param_norm`` (it is measured on read, not every step).
        """
        return self._diag.read(self.group_names, mean=mean, adam=self.uses_adam)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the running diagnostics (so a resumed mean is exact)."""
        state = super().state_dict()
        state["diagnostics"] = self._diag.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state written by ``state_dict`` (group names must match)."""
        state_dict = dict(state_dict)
        diag = state_dict.pop("diagnostics", None)
        saved = [g.get("name") for g in state_dict["param_groups"]]
        if saved != self.group_names:
            raise ValueError(f"param group names differ: saved {saved}, here {self.group_names}")
        super().load_state_dict(state_dict)
        self._diag.load_state_dict(diag, self.param_groups[0]["params"][0].device)

    # -- the step --------------------------------------------------------------------------------

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """``torch.optim.Optimizer``'s wrapper of ``step`` (a profiler label and the step
        pre/post hooks) only where something would see it: a registered hook or a running
        profiler. Otherwise ``step`` itself: about 40 us less per call on the CPU, 5-22% of a
        bimodal training step (``benchmarks/step_wrapper.py``)."""
        hooked = torch.optim.Optimizer.profile_hook_step(func)

        @functools.wraps(func)
        def step(self: Graft, *args: Any, **kwargs: Any) -> Any:
            if _observed(self):
                return hooked(self, *args, **kwargs)
            return func(self, *args, **kwargs)

        return step

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Take one step for every group; parameters without gradient are left alone."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params, grads, gidx = self._collect()
        c = self._constants(gidx, [p.dtype for p in params])
        g_norm = step_norm = c["zeros"]
        a_norm = c["nan"]
        if params:
            batch = Batch(
                params,
                grads,
                gidx,
                self.param_groups,
                self.state,
                lambda role: self._workspace(role, params),
                self._vector,
            )
            g_norm = group_norms(grads, c["onehot"])
            measured = {}
            for rule, slot in self._rules():
                measured[slot] = self._measure(rule.unit(batch, slot), grads, g_norm, c)
            d_raw, d_norm, d_factor = measured[self._dslot]
            lr = c["lr"]
            if self.magnitude is None:
                lr_scale = lr
            else:
                m_norm = measured[self._mslot][1]
                # a zero (or underflowing) direction gives 0/0 or x/0: a zero step, not NaN
                scale = torch.nan_to_num(m_norm / (d_norm + c["graft_eps"]), nan=0.0, posinf=0.0)
                lr_scale = lr * scale
            if self._adam_slot is not None:
                a_norm = measured[self._adam_slot][1]
            step_norm = lr_scale * d_norm
            alpha = lr_scale.index_select(0, c["idx"])
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
        self._diag.record(g_norm, a_norm, step_norm, c["nan"])
        return loss

    @staticmethod
    def _measure(
        unit: Unit, grads: list[torch.Tensor], g_norm: torch.Tensor, c: dict[str, Any]
    ) -> tuple[list[torch.Tensor] | None, torch.Tensor, float | torch.Tensor | None]:
        """(tensors, per-group norm, factor) of a unit step; the factor is one number when it
        is the same for every tensor, else a device vector."""
        if unit.norms is not None:
            return None, unit.norms, None
        if unit.factor is None:
            norm = g_norm if unit.tensors is grads else group_norms(unit.tensors, c["onehot"])
            return unit.tensors, norm, None
        f = unit.factor
        if all(x == f[0] for x in f):
            return unit.tensors, group_norms(unit.tensors, c["onehot"]) * f[0], f[0]
        ft = torch.tensor(f, dtype=c["acc"]).to(c["zeros"].device, non_blocking=True)
        return unit.tensors, group_norms(unit.tensors, c["onehot"], ft), ft

    def _constants(self, gidx: list[int], dtypes: list[torch.dtype]) -> dict[str, Any]:
        """Small device tensors that only change with the groups' structure or lr and
        graft_eps (group index of each tensor, lr, graft_eps), cached between steps."""
        hyper = tuple((g["lr"], g["graft_eps"]) for g in self.param_groups)
        key = (tuple(gidx), hyper, tuple(dtypes))
        if self._const_key == key:
            return self._const
        device, acc = self._device_and_dtype()
        n = len(self.param_groups)
        lr, graft_eps = torch.tensor(hyper, dtype=acc).to(device).unbind(1)
        self._const_key = key
        self._const = {
            "acc": acc,
            "idx": torch.tensor(gidx, dtype=torch.long).to(device),
            "onehot": onehot(gidx, n, acc).to(device),
            "lr": lr,
            "graft_eps": graft_eps,
            "zeros": torch.zeros(n, dtype=acc, device=device),
            "nan": torch.full((n,), float("nan"), dtype=acc, device=device),
            "same_dtype": all(d == acc for d in dtypes),
        }
        return self._const

    def _vector(self, key: str) -> torch.Tensor:
        """Group key ``key`` of every group as a device vector, cached while it is unchanged."""
        values = tuple(g[key] for g in self.param_groups)
        cached = self._vectors.get(key)
        if cached is not None and cached[0] == values:
            return cached[1]
        device, acc = self._device_and_dtype()
        vector = torch.tensor(values, dtype=acc).to(device)
        self._vectors[key] = (values, vector)
        return vector

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
        return group_norms(params, onehot(gidx, len(self.param_groups), acc).to(device))

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

    def _workspace(self, role: str, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """One scratch tensor per parameter for ``role``, kept between steps."""
        work = self._work.setdefault(role, {})
        for p in params:
            if p not in work:
                work[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        return [work[p] for p in params]


def _observed(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a step hook is registered (on ``optimizer`` or for every optimizer) or torch's
    profiler is recording; True where this torch lacks the attributes read."""
    try:
        return bool(
            optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks
            or torch_optimizer._global_optimizer_pre_hooks
            or torch_optimizer._global_optimizer_post_hooks
            or torch.autograd._profiler_enabled()
        )
    except AttributeError:
        return True
