"""The interface between one experiment (models, data, losses) and the training loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainers.optim import Graft


class Experiment:
    """One trial's players, optimizers and data; ``trainers.trial.loop`` drives it.

    Subclasses set ``players`` ({"G": ..., "D": ...}), ``optimizers`` (same keys), ``rng`` (the
    torch.Generator all sampling uses) and ``batch_size`` (images per step, for kimg), and
    implement ``train_step`` and ``evaluate``.
    """

    players: dict[str, nn.Module]
    optimizers: dict[str, Graft]
    rng: torch.Generator
    batch_size: int = 1

    def train_step(self) -> dict[str, torch.Tensor]:
        """One training iteration (all players); returns 0-dim loss tensors, e.g. loss_d, loss_g."""
        raise NotImplementedError

    def evaluate(self, final: bool) -> dict[str, Any]:
        """Task metrics at an evaluation (``final`` at the last one); JSON-able values."""
        return {}

    def stop_reason(self) -> str | None:
        """A reason to end the run early (checked at every step), or None."""
        return None

    def figures(self) -> dict[str, Any]:
        """Matplotlib figures to log with an evaluation (name -> Figure); none by default."""
        return {}

    def final_samples(self) -> dict[str, Any]:
        """Raw samples of the last evaluation (name -> array), saved beside the final checkpoint
        as ``samples.npz``; none by default."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State beyond players, optimizers and RNGs that a resume needs."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically."""
        return {
            "players": {k: m.state_dict() for k, m in self.players.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            # the current CUDA device's generator draws in-model noise (StyleGAN2) on a GPU
            "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``."""
        for k, m in self.players.items():
            m.load_state_dict(state["players"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.load_extra_state(state["extra"])
