"""Per-layer scale profiles (paper, Fig. 5): the mean Adam magnitude |A_Y| per layer, from a
live optimizer, a saved optimizer state, or a finished run; saved as JSON.

The command line (``python -m trainers profile RUN_DIR --out FILE [--player G]``) reads the
newest checkpoint of a trial directory (as written by ``trainers.trial.run``; or one checkpoint
directory, e.g. a Tune trial's ``checkpoint_000004``), takes each optimizer's running
diagnostics (sum over all steps, restored exactly on resume) and writes one JSON file keyed
``"G/<layer>"`` and ``"D/<layer>"``. The StyleGAN2 experiment accepts that file as
``optimizer_options.scales`` for ``nsgda`` and gives each player its part; ``--player G``
writes one player's profile with bare layer names (the form ``build(..., scales=FILE)`` takes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from trainers.optim.diagnostics import DIAGNOSTICS
from trainers.optim.graft import Graft
from trainers.trial import checkpoint
from trainers.trial.atomic import atomic_write

ADAM_OPTIMIZERS = ("adam", "ada-nsgda", "adadir", "graft")


def scale_profile(optimizer: Graft) -> dict[str, float]:
    """Mean of |A_Y| over all steps taken, per group: the scales s_Y for ``nsgda``."""
    if not optimizer.uses_adam:
        raise ValueError("a scale profile needs an optimizer with Adam state, e.g. ada-nsgda")
    means = optimizer.diagnostics(mean=True)
    if not means:
        raise ValueError("the optimizer has taken no step yet: there is nothing to average")
    return {name: row["adam_norm"] for name, row in means.items()}


def optimizer_profile(state: dict[str, Any]) -> dict[str, float]:
    """Mean |A_Y| per group of one ``Graft.state_dict()`` (the same numbers as
    ``scale_profile`` on the live optimizer)."""
    diag = state.get("diagnostics") or {}
    if diag.get("sum") is None or not diag.get("steps"):
        raise ValueError("the optimizer has taken no step yet: there is nothing to average")
    means = (diag["sum"] / diag["steps"])[:, DIAGNOSTICS.index("adam_norm")].tolist()
    if all(math.isnan(m) for m in means):
        raise ValueError("a profile needs Adam state (e.g. ada-nsgda); this optimizer has none")
    return {g["name"]: float(m) for g, m in zip(state["param_groups"], means)}


def save_scale_profile(profile: dict[str, float], path: str | os.PathLike) -> Path:
    """Write ``{layer: scale}`` to ``path`` as JSON, atomically."""
    path = Path(path)
    bad = {k: v for k, v in profile.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"scales must be finite and > 0; bad entries: {bad}")
    with atomic_write(path) as f:
        json.dump(profile, f, indent=1, sort_keys=True)
    return path


def load_scale_profile(path: str | os.PathLike) -> dict[str, float]:
    """Read a profile written by ``save_scale_profile``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scale profile {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"scale profile {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise ValueError(f"scale profile {str(path)!r} must be a JSON object {{layer: number}}")
    return {str(k): float(v) for k, v in data.items()}


def run_profile(run_dir: str | os.PathLike, player: str | None = None) -> dict[str, float]:
    """The profile of the trial in ``run_dir`` from its newest checkpoint; ``run_dir`` may also
    be one checkpoint directory."""
    from trainers.trial.run import (
        CHECKPOINTS,  # trainers.trial.run imports the experiments, which import us
    )

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"{str(run_dir)!r} does not exist")
    if (run_dir / checkpoint.STATE).is_file():  # one checkpoint
        return checkpoint_profile(run_dir, player)
    ckpt = checkpoint.latest(run_dir / CHECKPOINTS) or newest_tune_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(
            f"{str(run_dir)!r} has no checkpoint: neither {CHECKPOINTS}/step_* (python -m "
            f"trainers run) nor checkpoint_* (a Tune trial) holding {checkpoint.STATE}"
        )
    return checkpoint_profile(ckpt, player)


def newest_tune_checkpoint(trial_dir: Path) -> Path | None:
    """The newest ``checkpoint_<n>`` of a Tune trial directory that holds a trainer state."""
    found = [
        d
        for d in trial_dir.glob("checkpoint_*")
        if d.name[len("checkpoint_") :].isdigit() and (d / checkpoint.STATE).is_file()
    ]
    return max(found, key=lambda d: int(d.name[len("checkpoint_") :]), default=None)


def checkpoint_profile(ckpt: str | os.PathLike, player: str | None = None) -> dict[str, float]:
    """The profile in one checkpoint directory (``"G/<layer>"`` keys, or one player's bare
    names); ValueError if the run's optimizer keeps no Adam state."""
    saved = checkpoint.read(ckpt)
    name = saved["config"]["optimizer"]
    if name not in ADAM_OPTIMIZERS:
        raise ValueError(f"a profile needs Adam state (e.g. ada-nsgda); the run used {name!r}")
    optimizers = saved["experiment"]["optimizers"]
    if player is not None:
        if player not in optimizers:
            raise ValueError(f"player {player!r} not in the run; it has {sorted(optimizers)}")
        return optimizer_profile(optimizers[player])
    return {
        f"{p}/{layer}": s
        for p, st in optimizers.items()
        for layer, s in optimizer_profile(st).items()
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``profile RUN_DIR --out FILE [--player G|D]``; prints the number of layers."""
    parser = argparse.ArgumentParser(prog="python -m trainers profile", description=__doc__)
    parser.add_argument("run_dir", help="a trial directory of an ada-nsgda (or adam) run")
    parser.add_argument("--out", required=True, help="the JSON profile to write")
    parser.add_argument("--player", default=None, help="only this player, bare layer names")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        parser.exit(2, f"error: --out {args.out!r} must be a file in an existing directory\n")
    try:
        profile = run_profile(args.run_dir, args.player)
        path = save_scale_profile(profile, out)
    except FileNotFoundError as e:
        parser.exit(3, f"error: {e}\n")
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"wrote {len(profile)} layer scales to {path}")
    return 0
