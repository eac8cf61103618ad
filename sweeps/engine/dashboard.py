"""``--dashboard``: a local sweep's Ray dashboard, on 127.0.0.1 only.

Ray's dashboard has no Tune view: the sweep shows up as its driver, its trials as actors (each
with its logs), and the nodes' CPU, GPU and memory. FID and loss curves live in TensorBoard
(each trial's directory), step sizes and mean objectives in the Optuna studies
(``optuna-dashboard``).
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from sweeps.engine.spec import SweepError

HOST = "127.0.0.1"  # this machine only: whoever reaches the dashboard can run code on Ray
PORT = 8265  # Ray's default


def check(address: str | None, port: int | None) -> None:
    """Refuse ``--dashboard`` with a cluster (its dashboard is the head's), a port that is not
    one, or one already taken on 127.0.0.1."""
    if port is None:
        return
    if address is not None:
        raise SweepError(
            f"--dashboard with --address {address}: the cluster's dashboard runs on its head; "
            "reach it with `ray dashboard cluster/config.yaml` (an SSH tunnel to 127.0.0.1:8265)"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SweepError(f"--dashboard-port {port!r}: must be an integer from 1 to 65535")
    import ray

    if ray.is_initialized():  # a second sweep of this process (the quickstart's) keeps its Ray
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            raise SweepError(
                f"--dashboard-port {port}: {HOST}:{port} is already in use (another Ray "
                "dashboard?); pass another --dashboard-port"
            ) from None


def init_options(address: str | None, port: int | None) -> dict[str, Any]:
    """``ray.init`` keywords: a local Ray without a dashboard unless ``port`` is given, then
    with one on 127.0.0.1:``port``; a cluster's Ray as it is."""
    if address is not None:
        return {}
    if port is None:
        return {"include_dashboard": False}
    return {"include_dashboard": True, "dashboard_host": HOST, "dashboard_port": port}


def announce(context: Any, port: int | None) -> None:
    """Print where the dashboard is and what it shows (or that this process's Ray, started
    before, has none)."""
    url = getattr(context, "dashboard_url", None)
    if port is not None and not url:
        print(
            "gansweep: --dashboard: Ray already runs in this process without a dashboard; "
            "call ray.shutdown() first for one",
            file=sys.stderr,
        )
    if not url:
        return
    print(
        f"gansweep: Ray dashboard at http://{url} (Jobs, the trials as actors with their logs, "
        "resources; there is no Tune view: curves are in TensorBoard, step sizes in "
        "optuna-dashboard). Ray asks for the token that `ray get-auth-token` prints.",
        file=sys.stderr,
    )
