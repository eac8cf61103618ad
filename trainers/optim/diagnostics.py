"""Per-group diagnostics of an optimizer, kept on the device: the last step's and their sum.

A step records one row per group (``DIAGNOSTICS``) without a host transfer; ``read`` turns them
into floats with one. ``param_norm`` is measured when first read after a step (a step costs no
pass over the parameters unless someone looks). The running sum travels in the optimizer's
``state_dict`` so that a resumed mean is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

DIAGNOSTICS = ("grad_norm", "adam_norm", "step_norm", "param_norm")
PARAM_NORM = DIAGNOSTICS.index("param_norm")


class Diagnostics:
    """The last row per group and the running sum over all recorded steps."""

    def __init__(self, param_norms: Callable[[], torch.Tensor]) -> None:
        self._param_norms = param_norms
        self.reset()

    def reset(self) -> None:
        """Forget everything (the groups changed)."""
        self._last: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self.steps = 0
        self._stale = False

    def record(
        self,
        grad_norm: torch.Tensor,
        adam_norm: torch.Tensor,
        step_norm: torch.Tensor,
        nan: torch.Tensor,
    ) -> None:
        """Add one step's per-group norms (device tensors of shape (groups,); ``nan``: a NaN
        vector, the ``param_norm`` placeholder)."""
        row = torch.stack([grad_norm, adam_norm, step_norm, nan], 1)
        self._last = row
        self._sum = row.clone() if self._sum is None else self._sum.add_(row)
        self.steps += 1
        self._stale = True

    @property
    def last(self) -> torch.Tensor | None:
        """The last step's rows, shape (groups, len(DIAGNOSTICS)), with ``param_norm`` filled."""
        if self._last is not None and self._stale:
            self._last[:, PARAM_NORM] = self._param_norms()
            self._stale = False
        return self._last

    def read(
        self, names: Iterable[str], mean: bool = False, adam: bool = True
    ) -> dict[str, dict[str, float]]:
        """``{group: {column: value}}`` of the last step (or the mean over all steps, without
        ``param_norm``); without ``adam_norm`` unless ``adam``. One host transfer."""
        last = self.last
        if last is None:
            return {}
        table = self._sum / self.steps if mean else last
        skip = {"param_norm"} if mean else set()
        if not adam:
            skip.add("adam_norm")
        keys = [(k, DIAGNOSTICS.index(k)) for k in DIAGNOSTICS if k not in skip]
        return {name: {k: row[i] for k, i in keys} for name, row in zip(names, table.tolist())}

    def state_dict(self) -> dict[str, Any]:
        """``{"last", "sum", "steps"}`` (copies)."""
        last = self.last
        return {
            "last": None if last is None else last.clone(),
            "sum": None if self._sum is None else self._sum.clone(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any] | None, device: torch.device) -> None:
        """Restore what ``state_dict`` wrote (None: start empty)."""
        self.reset()
        if state is not None and state["sum"] is not None:
            self._last = state["last"].to(device)
            self._sum = state["sum"].to(device)
            self.steps = int(state["steps"])
            self._stale = True
