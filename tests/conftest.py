"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny networks: they gain nothing from more, and a
    shared CPU makes OpenMP threads spin-wait (10x slower here with 2 threads under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def no_ray_left_running():
    """Each test module starts without a Ray in this process, and leaves none: a sweep run in
    process keeps its local Ray, and the next module's own ``ray.init`` (or its check that bad
    input never starts Ray) would meet it."""
    import sys

    def shutdown() -> None:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()

    shutdown()
    yield
    shutdown()
