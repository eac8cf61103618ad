"""The plain-process runner contract: python -m trainers run CONFIG --out DIR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = {
    "experiment": "bimodal",
    "optimizer": "nsgda",
    "seed": 3,
    "steps": 4000,
    "eval_every": 100,
    "checkpoint_every": 500,
}


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainers", *args], capture_output=True, text=True, timeout=600, **kw
    )


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "time_s"}


def test_killed_run_resumes_to_the_same_rows_without_duplicates(tmp_path):
    straight = tmp_path / "straight"
    done = cli("run", json.dumps(CONFIG), "--out", str(straight), "--quiet")
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainers", "run", json.dumps(CONFIG), "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed / "checkpoints").glob("step_*")):
        time.sleep(0.05)
    time.sleep(0.3)  # let it write a few rows past the checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = rows(killed)
    assert 0 < len(partial) < 40, "the run was not interrupted mid-way"

    resumed = cli("run", json.dumps(CONFIG), "--out", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a, b = rows(straight), rows(killed)
    assert [r["step"] for r in b] == list(range(100, 4001, 100))
    assert [comparable(r) for r in a] == [comparable(r) for r in b]

    again = cli("run", json.dumps(CONFIG), "--out", str(killed), "--quiet")
    assert again.returncode == 0
    assert len(rows(killed)) == 40  # a finished trial rerun adds nothing


def test_trial_json_records_config_commit_and_versions(tmp_path):
    out = tmp_path / "t"
    config = {**CONFIG, "steps": 200}
    assert cli("run", json.dumps(config), "--out", str(out), "--quiet").returncode == 0
    trial = json.loads((out / "trial.json").read_text())
    assert trial["config"]["steps"] == 200 and trial["config"]["d"] == 100  # defaults filled in
    assert trial["git_commit"]
    assert trial["versions"]["torch"].startswith("2.")


def test_bad_config_exits_2_naming_key_and_value(tmp_path):
    out = tmp_path / "bad"
    result = cli("run", json.dumps({**CONFIG, "optimizer": "adamw"}), "--out", str(out))
    assert result.returncode == 2
    assert (
        "'optimizer'" in result.stderr and "'adamw'" in result.stderr and "nsgda" in result.stderr
    )
    assert not out.exists()
    result = cli("run", '{"experiment": "bimodal", "seed": 0}', "--out", str(out))
    assert result.returncode == 2 and "'optimizer'" in result.stderr and "missing" in result.stderr
    result = cli("run", "{not json", "--out", str(out))
    assert result.returncode == 2 and "valid JSON" in result.stderr


def test_a_different_config_in_the_same_dir_is_refused_and_nothing_changes(tmp_path):
    out = tmp_path / "t"
    config = {**CONFIG, "steps": 200}
    assert cli("run", json.dumps(config), "--out", str(out), "--quiet").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = cli("run", json.dumps({**config, "seed": 4}), "--out", str(out))
    assert result.returncode == 2 and "'seed'" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_config_file_path_works_like_inline_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**CONFIG, "steps": 100}))
    result = cli("run", str(path), "--out", str(tmp_path / "o"), "--quiet", env={**os.environ})
    assert result.returncode == 0
    assert len(rows(tmp_path / "o")) == 1


def _as_in_a_terminal() -> None:
    """In the child before exec: SIGINT's default action, as a shell gives a foreground
    command. An ignored SIGINT is inherited across exec, and Python then installs no
    KeyboardInterrupt handler. Two full runs failed here exactly as a trainer started with SIGINT
    ignored does (it trains on through the Ctrl-C); which earlier test leaves this process so is
    not known yet."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_names_the_step_and_the_rerun_says_where_it_resumed(tmp_path):
    out = tmp_path / "trial"
    # the stop rule's norms out of reach: with the defaults this seed stops at step 6024, ~4 s
    # in, and a poll delayed that long (a loaded machine, the test process's own pauses) found
    # the trial finished with code 0 instead of interrupted (seen once in a full run)
    config = json.dumps(
        {**CONFIG, "steps": 10**7, "checkpoint_every": 200, "max_norm_g": 1e9, "max_norm_d": 1e9}
    )
    cmd = [sys.executable, "-m", "trainers", "run", config, "--out", str(out)]

    def interrupt_after(rows_wanted: int) -> tuple[int, str]:
        proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path, preexec_fn=_as_in_a_terminal
        )
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if (out / "results.jsonl").exists() and len(rows(out)) >= rows_wanted:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=120), proc.stderr.read()
        except subprocess.TimeoutExpired:  # say why (seen twice in full runs, never alone)
            status = Path(f"/proc/{proc.pid}/status")
            signals = [x for x in status.read_text().splitlines() if x.startswith("Sig")]
            proc.kill()
            pytest.fail(
                f"SIGINT did not stop the trainer in 120 s; its signal masks {signals}; "
                f"this test process's SIGINT handler {signal.getsignal(signal.SIGINT)!r}, "
                f"blocked {sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))}; "
                f"its stderr: {proc.stderr.read()[-3000:]}"
            )

    code, err = interrupt_after(5)
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    line = next(x for x in err.splitlines() if x.startswith("interrupted at step"))
    step = int(line.split()[3].rstrip(";"))
    resumed_at = int(line.split("resume from step ")[1].split()[0])
    assert step >= 500 and resumed_at == step // 200 * 200 and "--out" in line

    code, err = interrupt_after(len(rows(out)) + 2)
    assert code == 130, err
    assert f"resumed from step {resumed_at} " in err
