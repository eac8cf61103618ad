"""A smoke sweep on a real two-node Ray cluster on localhost: trials land on both nodes; a sweep
whose data the workers lack is refused before it starts."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")

SCRIPT = """
from sweeps.engine import Cell, StepSizes, Sweep, main
main(Sweep(
    name="two_nodes", experiment="bimodal", metric="miss_both", seeds=[0, 1],
    fixed={"steps": 300, "eval_every": 100, "checkpoint_every": 100},
    cells=[Cell("sgda", StepSizes(grid=(0.1,))), Cell("nsgda", StepSizes(grid=(1e-3,)))],
))
"""

MISSING_DATA_SCRIPT = """
from sweeps.engine import Cell, StepSizes, Sweep, main
main(Sweep(
    name="no_data", experiment="wgangp", metric="fid", seeds=[0],
    fixed={"data_path": "/nowhere/images"},
    cells=[Cell("adam", StepSizes(grid=(1e-4,)), dataset="folder")],
))
"""

TOKEN = secrets.token_hex(32)


def cluster_env() -> dict[str, str]:
    """Ray 2.60 authenticates the nodes of a cluster with a token: every process gets ours."""
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": TOKEN,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.shutdown()  # a driver of an earlier test must not hold an in-process cluster
    port = free_port()
    temp = Path("/tmp") / f"ray_2n_{port}"  # Ray's socket paths must stay short
    common = [
        "--num-cpus=1",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    env = cluster_env()
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp}", *common],
        check=True,
        capture_output=True,
        env=env,
        timeout=180,
    )
    try:
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.1:{port}", *common[:2]],
            check=True,
            capture_output=True,
            env=env,
            timeout=180,
        )
        yield f"127.0.0.1:{port}"
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if str(temp) in cmd or f"127.0.0.1:{port}" in cmd:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def submit(source: str, cluster: str, tmp_path: Path) -> tuple[int, str, Path]:
    """Run a sweep script as a driver of the cluster: (exit code, its output, storage)."""
    script, storage, log = tmp_path / "sweep.py", tmp_path / "runs", tmp_path / "driver.log"
    script.write_text(source)
    with open(log, "w") as out:  # a file, not a pipe: Ray's children inherit it
        code = subprocess.run(
            [sys.executable, str(script), "--address", cluster, "--storage", str(storage)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            cwd=ROOT,
            env=cluster_env(),
        ).returncode
    return code, log.read_text(), storage


def test_smoke_sweep_runs_on_both_nodes(cluster, tmp_path):
    code, output, storage = submit(SCRIPT, cluster, tmp_path)
    assert code == 0, output[-6000:]
    nodes, steps = set(), []
    trial_dirs = [d for d in (storage / "two_nodes").iterdir() if (d / "result.json").exists()]
    assert len(trial_dirs) == 4
    for d in trial_dirs:
        rows = [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
        nodes.add(rows[0]["node"])
        steps.append([r["step"] for r in rows])
    assert len(nodes) == 2, "all trials ran on one node"
    assert all(s == sorted(set(s)) for s in steps)  # every report arrived once


def test_missing_data_on_the_workers_is_refused_before_the_sweep(cluster, tmp_path):
    code, output, storage = submit(MISSING_DATA_SCRIPT, cluster, tmp_path)
    assert code == 2, output[-6000:]
    assert "image folder not found: looked for /nowhere/images" in output
    assert "(on node " in output  # checked where the trials would run
    assert not storage.exists()
