"""Per-layer scale profiles (paper, Fig. 5): mean Adam magnitude per layer, saved as JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from trainers.atomic import atomic_write
from trainers.optim.graft import Graft


def scale_profile(optimizer: Graft) -> dict[str, float]:
    """Mean of |A_Y| over all steps taken, per group: the scales s_Y for ``nsgda``."""
    if not optimizer.uses_adam:
        raise ValueError("a scale profile needs an optimizer with Adam state, e.g. ada-nsgda")
    means = optimizer.diagnostics(mean=True)
    if not means:
        raise ValueError("the optimizer has taken no step yet: there is nothing to average")
    return {name: row["adam_norm"] for name, row in means.items()}


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
