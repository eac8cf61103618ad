"""Imports a local Ray's worker processes do as they start, while the driver is still setting
up the sweep: a trial's process would otherwise spend its first seconds importing torch, Ray
Tune and the experiments, and its first optimizer importing ``torch._dynamo`` (about 2 s),
with both CPUs of a small machine idle or shared with the driver. Installed as Ray's
``worker_process_setup_hook`` by ``sweeps.engine.driver`` for a local Ray only."""

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
