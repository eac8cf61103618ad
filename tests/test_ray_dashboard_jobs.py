"""Watching a sweep through Ray: ``--dashboard`` starts a local Ray with its dashboard on
127.0.0.1 (the sweep shows up there as a job), and ``ray job submit`` runs a smoke sweep on a
real local cluster (head with its dashboard on 127.0.0.1, token authentication), whose job
ends SUCCEEDED with the trial table in its logs and the results in the storage."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from sweeps import dcgan_cifar10_ratio as dcgan
from sweeps.engine import Cell, StepSizes, Sweep, dashboard, run, smoke_version

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> set[str]:
    """The addresses some process listens on at ``port``."""
    return {
        c.laddr.ip
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_dashboard_serves_the_sweep_as_a_job_on_localhost_only(tmp_path, capsys):
    import ray
    from ray.job_submission import JobSubmissionClient

    ray.shutdown()  # an earlier test's in-process Ray has no dashboard
    port = free_port()
    sweep = Sweep(
        name="dash",
        experiment="bimodal",
        metric="miss_both",
        seeds=[0],
        fixed={"steps": 100, "eval_every": 100, "checkpoint_every": 100},
        cells=[Cell("sgda", StepSizes(grid=(0.1,)))],
    )
    try:
        outcome = run(sweep, storage=str(tmp_path / "runs"), num_cpus=2, dashboard_port=port)
        assert outcome.code == 0
        assert f"Ray dashboard at http://127.0.0.1:{port}" in capsys.readouterr().err
        assert listening(port) == {dashboard.HOST}
        jobs = JobSubmissionClient(f"http://127.0.0.1:{port}").list_jobs()
        assert any(j.type.name == "DRIVER" and j.entrypoint for j in jobs)  # this very sweep
        # a second sweep of the process (as the quickstart runs two) keeps its Ray and port
        again = run(
            replace(sweep, name="dash2"),
            storage=str(tmp_path / "runs"),
            num_cpus=2,
            dashboard_port=port,
        )
        assert again.code == 0
        assert f"Ray dashboard at http://127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        ray.shutdown()


def test_dashboard_is_refused_for_a_cluster_and_a_taken_port(tmp_path, capsys):
    sweep = Sweep(
        name="dash",
        experiment="bimodal",
        metric="miss_both",
        seeds=[0],
        cells=[Cell("sgda", StepSizes(grid=(0.1,)))],
    )
    assert run(sweep, storage=str(tmp_path), address="auto", dashboard_port=8265).code == 2
    assert "ray dashboard cluster/config.yaml" in capsys.readouterr().err
    assert run(sweep, storage=str(tmp_path), dashboard_port=70000).code == 2
    assert "--dashboard-port 70000: must be an integer from 1 to 65535" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert run(sweep, storage=str(tmp_path), dashboard_port=busy).code == 2
    assert f"127.0.0.1:{busy} is already in use" in capsys.readouterr().err
    assert not (tmp_path / "dash").exists()


TOKEN = secrets.token_hex(32)
# what `ray job submit --working-dir .` must not upload (Ray refuses more than 500 MiB)
EXCLUDES = [".venv", ".git", "runs", "**/__pycache__", "*.egg-info", "tests/fixtures"]


def cluster_env() -> dict[str, str]:
    """Every process of the cluster and its client: our token, and this venv's python first
    on PATH (a job's ``python`` is the one the head finds)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **os.environ,
        "PATH": path,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": TOKEN,
    }


@pytest.fixture(scope="module")
def head():
    """``ray start --head`` with 2 CPUs and its dashboard on 127.0.0.1 at a free port; every
    process it started is stopped after (found by its own temp dir: never ``ray stop``, which
    would stop every Ray of this machine)."""
    import ray

    ray.shutdown()
    port, dash = free_port(), free_port()
    temp = Path("/tmp") / f"ray_job_{port}"  # Ray's socket paths must stay short
    start = [RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=2"]
    start += ["--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1"]
    start += [f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}"]
    start += [f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=cluster_env(), timeout=300)
    try:
        yield f"http://127.0.0.1:{dash}", dash
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if str(temp) in cmd or f"127.0.0.1:{port}" in cmd:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_runs_a_smoke_sweep(head, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, dash = head
    assert listening(dash) == {"127.0.0.1"}
    with pytest.raises(urllib.error.HTTPError) as refused:  # the Jobs API wants the token
        urllib.request.urlopen(f"{address}/api/jobs/", timeout=30)
    assert refused.value.code == 401
    storage = tmp_path / "runs"
    runtime_env = json.dumps({"excludes": EXCLUDES})
    submit = [RAY, "job", "submit", "--address", address, "--working-dir", ".", "--no-wait"]
    submit += ["--runtime-env-json", runtime_env, "--"]
    submit += ["python", "sweeps/dcgan_cifar10_ratio.py", "--smoke", "--storage", str(storage)]
    sent = subprocess.run(
        submit, cwd=ROOT, env=cluster_env(), capture_output=True, text=True, timeout=300
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    job_id = next(
        w.strip("'") for w in sent.stdout.split() if w.strip("'").startswith("raysubmit_")
    )

    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {TOKEN}"})
    status = client.get_job_status(job_id)
    for _ in range(1200):  # at most 10 minutes: a smoke sweep takes about one here
        if status.is_terminal():
            break
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-6000:]
    assert "best step size per cell" in logs
    small = smoke_version(dcgan.SWEEP, dcgan.smoke)
    summary = (storage / small.name / "summary.md").read_text()
    assert summary.strip() in logs  # the table the job printed is the one it saved
    trials = list((storage / small.name).glob("*/result.json"))
    declared = sum(c.lrs.size() * len(small.seeds) for c in small.cells)
    assert len(trials) == declared + len(small.cells) * len(small.confirmation_seeds())
    for result in trials:  # an image GAN's HParams line has its final FID
        last = json.loads(result.read_text().splitlines()[-1])
        board = EventAccumulator(str(result.parent)).Reload()
        content = board.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
        metrics = metadata.parse_experiment_plugin_data(content).metric_infos
        assert [m.name.tag for m in metrics] == ["final/objective", "final/fid"]
        assert board.Scalars("final/fid")[-1].value == pytest.approx(last["fid"])
