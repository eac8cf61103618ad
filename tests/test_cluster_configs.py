"""The cluster launcher configs pass Ray's own validation, install this project everywhere and
are safe by default: the dashboard on 127.0.0.1, Ray's token authentication on every node."""

from __future__ import annotations

import copy
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["config.yaml", "local.yaml"])
def test_config_passes_rays_validation(name):
    raw = yaml.safe_load((ROOT / "cluster" / name).read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["file_mounts"]["~/gansweep"] == "."
    assert any("pip install -e" in c and "~/gansweep" in c for c in prepared["setup_commands"])


def test_cloud_config_has_a_cpu_head_and_autoscaling_gpu_workers():
    raw = yaml.safe_load((ROOT / "cluster" / "config.yaml").read_text())
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    workers = [t for name, t in types.items() if name != raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    assert workers and all(w["resources"]["GPU"] >= 1 for w in workers)
    assert all(w["min_workers"] == 0 and w["max_workers"] > 0 for w in workers)


def test_a_broken_config_is_rejected_by_the_same_validation():
    raw = yaml.safe_load((ROOT / "cluster" / "config.yaml").read_text())
    raw["head_node_type"] = "missing"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(copy.deepcopy(raw)))


CONFIGS = ["config.yaml", "local.yaml"]


def ray_starts(raw: dict) -> list[str]:
    return [
        c
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
        for c in raw[key]
        if "ray start" in c
    ]


@pytest.mark.parametrize("name", CONFIGS)
def test_the_dashboard_is_bound_to_localhost_and_token_auth_is_on(name):
    raw = yaml.safe_load((ROOT / "cluster" / name).read_text())
    head = [c for c in raw["head_start_ray_commands"] if "ray start --head" in c]
    assert len(head) == 1 and "--dashboard-host=127.0.0.1" in head[0]
    starts = ray_starts(raw)
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token " in c for c in starts)
    # the token generated once (on the laptop) reaches every node, and every node requires it
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("test -s ~/.ray/auth_token" in c for c in raw["setup_commands"])


def token_setup(name: str) -> list[str]:
    raw = yaml.safe_load((ROOT / "cluster" / name).read_text())
    return [c for c in raw["setup_commands"] if "auth" in c.lower()]


@pytest.mark.parametrize("name", CONFIGS)
def test_the_setup_commands_refuse_a_node_without_the_token(tmp_path, name):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(
        ["bash", "-c", token_setup(name)[0]], env=env, capture_output=True, text=True
    )
    assert first.returncode == 1
    assert "ray get-auth-token --generate" in first.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_the_setup_commands_keep_the_token_private_and_set_token_mode_once(tmp_path, name):
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("0123456789abcdef")
    token.chmod(0o644)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # ray up runs them again on every update
        for command in token_setup(name):
            subprocess.run(["bash", "-c", command], env=env, check=True)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    lines = (tmp_path / ".bashrc").read_text().splitlines()
    assert lines.count("export RAY_AUTH_MODE=token") == 1


def test_no_default_of_the_project_binds_a_port_to_every_interface():
    """Code and configs never name 0.0.0.0 (the docs say how to open a port deliberately)."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    scanned = [
        p
        for p in tracked
        if p.endswith((".py", ".yaml", ".yml", ".toml", ".sh", "Makefile"))
        and not p.startswith("tests/")
    ]
    assert "cluster/config.yaml" in scanned and "sweeps/engine/dashboard.py" in scanned
    for path in scanned:
        text = (ROOT / path).read_text(errors="replace")
        assert "0.0.0.0" not in text, path
