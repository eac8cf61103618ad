"""benchmarks/gpu_check.py --device cpu --quick: every section runs and its table says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~40 s of CPU time, but 8 minutes on this overloaded shared CPU
def test_quick_cpu_run_writes_a_table_of_every_measurement(tmp_path):
    out = tmp_path / "gpu_cpu.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1700,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text in proc.stdout  # the printed table is the file
    for name in ("adam", "nsgda", "ada-nsgda", "adadir"):
        assert re.search(rf"optim step wgangp_g {name} +\d+\.\d\dx", text), name
    assert re.search(r"_foreach_addcmul_ wgangp_g, per-tensor alphas +\d+\.\d\dx", text)
    assert len(re.findall(r"wgangp it/s.*amp=(True|False) +\d+\.\d+ it/s", text)) == 4
    assert re.search(r"stylegan2 16 px batch 4 .*s/kimg +\d+\.\d+ s/kimg, \d+\.\d\dx plain", text)
    assert re.search(r"peak memory.* n/a on cpu", text)
    per_block = re.search(r"fp16 vs fp32 images per G block \(fp16: \[8, 16\]\) +max (\S+)", text)
    assert per_block and float(per_block[1]) < 1e-2  # 4x4 in fp32: NVlabs' floor at 8
    assert re.search(r"fp16 training step with R1 and path length +finite", text)
    assert re.search(r"FID features, 8 generated images, random Inception +\d+\.\d img/s", text)
    assert re.search(r"host-device syncs per training iteration +n/a on cpu", text)
    assert re.search(r"torch.compile \(eager\) wgangp.* \d+\.\d\dx speed-up", text)
    dp = re.search(r"gloo \(CPU stand-in for NCCL\) .* max rel (\S+)", text)
    assert dp and float(dp[1]) < 1e-5
    seconds = re.search(r"seconds per section: (.*)", text)[1]
    assert [s.split()[0] for s in seconds.split(", ")] == [
        "optim",
        "wgangp",
        "stylegan2",
        "fp16",
        "fid",
        "sync",
        "compile",
        "dp",
    ]


def test_bad_device_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "tpu", "--out", str(tmp_path / "x.txt")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert proc.returncode == 2 and "--device 'tpu'" in proc.stderr
    assert not (tmp_path / "x.txt").exists()
