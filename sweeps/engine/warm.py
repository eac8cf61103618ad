"""Imports a local Ray's trial worker does as it starts, before Tune's actor runs in it: torch,
Ray Tune, the experiments, and the ``torch._dynamo`` that the first optimizer would import
(``Optimizer.add_param_group`` is wrapped by ``torch._disable_dynamo``; about 2 s here).
Installed as Ray's ``worker_process_setup_hook`` by ``sweeps.engine.driver`` for a local Ray
only. Measured against importing on first use (2026-12-03, interleaved): no difference in a
sweep's wall time; it keeps the imports out of the first trial's ``time_total_s``."""

from __future__ import annotations

import sys

HOOK = "sweeps.engine.warm.imports"


def imports() -> None:
    """Import what every trial needs. Never raises: a worker that cannot warm up still starts
    (and imports what it needs when its first trial runs)."""
    try:
        import torch._dynamo  # noqa: F401  (torch.optim's first optimizer imports it)

        import sweeps.engine.trainable  # noqa: F401  (torch, Ray Tune, the experiments)
    except Exception as e:  # noqa: BLE001
        print(
            f"gansweep: warming this worker's imports failed ({e!r}); continuing", file=sys.stderr
        )
