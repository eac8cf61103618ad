"""Training-dynamics metrics of the paper, from the optimizers' per-group diagnostics.

- ``grad_ratio`` (Fig. 1): sum over players of ||grad(t)|| / ||grad(0)||, where ||.|| is the sum
  of the per-tensor L2 norms of a network's gradient (the paper's "sum of all the parameters norm").
- ``mag/<player>/<layer>`` (Fig. 2b,c; 5b): ||A_Y(t)|| / ||A_Y(0)||, where Adam state exists.
- ``speed/<player>/<layer>`` (Fig. 3a): lr * ||g_Y|| / ||Y||, the paper's relative update speed.
- ``update/<player>/<layer>``: ||step_Y|| / ||Y||, the relative size of the step actually taken
  (equal to ``speed`` for SGDA; lr * s_Y / ||Y|| for nSGDA).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trainers.optim import Graft


def grad_norm_sum(module: nn.Module) -> float:
    """Sum of the L2 norms of the module's parameter gradients (0 when there are none)."""
    grads = [p.grad.detach() for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.stack(torch._foreach_norm(grads)).double().sum())


class Dynamics:
    """Keeps the step-0 references and turns diagnostics into the named metrics."""

    def __init__(self, players: dict[str, nn.Module], optimizers: dict[str, Graft]) -> None:
        self.players, self.optimizers = players, optimizers
        self.ref_grad: dict[str, float] = {}
        self.ref_mag: dict[str, dict[str, float]] = {}

    def observe_first_step(self) -> None:
        """Record the references after the first step (gradients and Adam magnitudes at t=0)."""
        self.ref_grad = {k: grad_norm_sum(m) for k, m in self.players.items()}
        self.ref_mag = {
            k: {layer: row["adam_norm"] for layer, row in o.diagnostics().items()}
            for k, o in self.optimizers.items()
            if o.uses_adam
        }

    def metrics(self) -> dict[str, float]:
        """The metrics named in the module docstring, for the current step."""
        out: dict[str, float] = {}
        ratio = 0.0
        for k, m in self.players.items():
            ref = self.ref_grad.get(k, 0.0)
            ratio += grad_norm_sum(m) / ref if ref > 0 else math.nan
        out["grad_ratio"] = ratio
        for k, o in self.optimizers.items():
            lrs = {g["name"]: g["lr"] for g in o.param_groups}
            for layer, row in o.diagnostics().items():
                pn = row["param_norm"]
                out[f"speed/{k}/{layer}"] = (
                    lrs[layer] * row["grad_norm"] / pn if pn > 0 else math.nan
                )
                out[f"update/{k}/{layer}"] = row["step_norm"] / pn if pn > 0 else math.nan
                if o.uses_adam:
                    ref = self.ref_mag.get(k, {}).get(layer, 0.0)
                    out[f"mag/{k}/{layer}"] = row["adam_norm"] / ref if ref > 0 else math.nan
        return out

    def state_dict(self) -> dict[str, Any]:
        """The references, for checkpoints."""
        return {
            "ref_grad": dict(self.ref_grad),
            "ref_mag": {k: dict(v) for k, v in self.ref_mag.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``."""
        self.ref_grad = dict(state["ref_grad"])
        self.ref_mag = {k: dict(v) for k, v in state["ref_mag"].items()}
