"""Scale profiles from a finished run (paper, Fig. 5): ``main(["RUN_DIR", "--out", "p.json"])``.

Reads the newest checkpoint of a trial directory (as written by ``trainers.run``; or one
checkpoint directory, e.g. a Tune trial's ``checkpoint_000004``), takes each
optimizer's running diagnostics (sum over all steps, restored exactly on resume) and writes the
per-layer mean of norm(A_Y) as one JSON file keyed ``"G/<layer>"`` and ``"D/<layer>"``. The
StyleGAN2 experiment accepts that file as ``optimizer_options.scales`` for ``nsgda`` and gives
each player its part; ``--player G`` writes one player's profile with bare layer names instead
(the form ``trainers.optim.build(..., scales=FILE)`` takes directly).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from trainers import checkpoint
from trainers.optim import DIAGNOSTICS, save_scale_profile
from trainers.run import CHECKPOINTS

ADAM_OPTIMIZERS = ("adam", "ada-nsgda", "adadir", "graft")


def optimizer_profile(state: dict[str, Any]) -> dict[str, float]:
    """Mean norm(A_Y) per group of one ``Graft.state_dict()`` (the same numbers as
    ``trainers.optim.scale_profile`` on the live optimizer)."""
    diag = state.get("diagnostics") or {}
    if diag.get("sum") is None or not diag.get("steps"):
        raise ValueError("the optimizer has taken no step yet: there is nothing to average")
    means = (diag["sum"] / diag["steps"])[:, DIAGNOSTICS.index("adam_norm")].tolist()
    return {g["name"]: float(m) for g, m in zip(state["param_groups"], means)}


def run_profile(run_dir: str | os.PathLike, player: str | None = None) -> dict[str, float]:
    """The profile of the trial in ``run_dir`` from its newest checkpoint; ``run_dir`` may also
    be one checkpoint directory."""
    run_dir = Path(run_dir)
    if (run_dir / checkpoint.STATE).is_file():  # one checkpoint
        return checkpoint_profile(run_dir, player)
    ckpt = checkpoint.latest(run_dir / CHECKPOINTS)
    if ckpt is None:
        raise FileNotFoundError(f"{str(run_dir)!r} has no checkpoint under {CHECKPOINTS}/")
    return checkpoint_profile(ckpt, player)


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
    try:
        profile = run_profile(args.run_dir, args.player)
        path = save_scale_profile(profile, args.out)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"wrote {len(profile)} layer scales to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
