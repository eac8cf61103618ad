"""The cluster launcher configs pass Ray's own validation and install this project everywhere."""

from __future__ import annotations

import copy
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
