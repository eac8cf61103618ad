"""Faults on a real local Ray: a killed trial resumes from its checkpoint with the same numbers,
and a killed driver's sweep finishes with --resume without rerunning finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from analysis.packed import unpack

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from sweeps.engine import Cell, StepSizes, Sweep, main
steps = int(sys.argv.pop(1))
main(Sweep(
    name="faults", experiment="bimodal", metric="miss_both", seeds=[0, 1],
    fixed={"steps": steps, "eval_every": 100, "checkpoint_every": 100, "p_two": 0.0},
    cells=[Cell("nsgda", StepSizes(grid=(1e-3, 3e-3)))],
))
"""


def launch(tmp_path: Path, storage: Path, steps: int, *extra: str) -> subprocess.Popen:
    script = tmp_path / "faults.py"
    script.write_text(SCRIPT)
    # a file, not a pipe: an unread pipe fills up and blocks the driver
    log = open(storage.parent / f"{storage.name}.log", "a")  # noqa: SIM115 (the child holds it)
    cmd = [sys.executable, str(script), str(steps), "--storage", str(storage), "--num-cpus", "2"]
    proc = subprocess.Popen(
        [*cmd, *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log_path = log.name
    return proc


def output(proc: subprocess.Popen) -> str:
    return Path(proc.log_path).read_text()


def trial_rows(storage: Path) -> dict[str, list[dict]]:
    out = {}
    for d in (storage / "faults").iterdir():
        if (d / "result.json").exists():
            rows = _complete_lines((d / "result.json").read_text())
            if not rows:
                continue
            out[
                d.name.split("_")[0]
                + f"_lr{rows[0]['config']['trainer']['lr_g']:.0e}_s{rows[0]['config']['trainer']['seed']}"
            ] = rows
    return out


def wait_for(predicate, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError("condition not reached")


def final(rows: list[dict]) -> dict:
    keep = ("step", "verdict", "objective", "loss_d", "loss_g", "grad_ratio")
    return {k: rows[-1].get(k) for k in keep}


def test_killed_trial_resumes_from_checkpoint_with_the_same_numbers(tmp_path):
    clean = tmp_path / "clean"
    p = launch(tmp_path, clean, 4000)
    assert p.wait(timeout=900) == 0, output(p)[-3000:]
    reference = {k: final(v) for k, v in trial_rows(clean).items()}
    assert all(isinstance(v["grad_ratio"], float) for v in reference.values())  # unpacked

    faulty = tmp_path / "faulty"
    p = launch(tmp_path, faulty, 4000)

    def running_trial() -> tuple[str, int] | None:
        for name, rows in _safe_rows(faulty).items():
            if len(rows) >= 5 and rows[-1]["step"] < 4000:
                return name, rows[-1]["pid"]
        return None

    wait_for(lambda: running_trial() is not None)
    victim, pid = running_trial()
    os.kill(pid, signal.SIGKILL)
    assert p.wait(timeout=900) == 0, output(p)[-3000:]
    result = {k: final(v) for k, v in trial_rows(faulty).items()}
    assert result == reference
    assert len({r["pid"] for r in trial_rows(faulty)[victim]}) == 2  # killed, then resumed


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    storage = tmp_path / "runs"
    steps = 6000
    p = launch(tmp_path, storage, steps)

    def finished() -> dict[str, list[dict]]:
        return {k: v for k, v in _safe_rows(storage).items() if v and v[-1]["step"] == steps}

    wait_for(lambda: finished() and len(_safe_rows(storage)) > len(finished()))
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = finished()
    assert before and len(before) < 4

    p = launch(tmp_path, storage, steps, "--resume")
    assert p.wait(timeout=900) == 0, output(p)[-3000:]
    after = trial_rows(storage)
    assert len(after) == 4 and all(rows[-1]["step"] == steps for rows in after.values())
    # a finished trial keeps its results (one whose end the killed driver had not yet
    # recorded is resumed from its last checkpoint and re-reports the same last rows)
    for name, rows in before.items():
        assert final(after[name]) == final(rows)
    # Tune's raw result.json may hold a report twice (made after the last checkpoint the
    # driver registered, then made again after the restore); collected, every report is there once
    import analysis

    analysis.collect(str(storage / "faults"), str(tmp_path / "results"))
    df = analysis.load(str(tmp_path / "results"))
    assert df["trial_id"].nunique() == 4
    for _, trial in df.groupby("trial_id"):
        assert sorted(trial["step"].tolist()) == list(range(100, steps + 1, 100))
    assert "nsgda" in output(p)


def _complete_lines(text: str) -> list[dict]:
    """The rows of a result.json; a last line cut short (a process killed mid-write) is left
    out, as analysis.collect leaves it."""
    lines = [x for x in text.split("\n") if x]
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines = lines[:-1]
    return [unpack(json.loads(x)) for x in lines]  # with the metrics Tune never saw


def _safe_rows(storage: Path) -> dict[str, list[dict]]:
    try:
        return trial_rows(storage)
    except (json.JSONDecodeError, FileNotFoundError, IndexError, KeyError):
        return {}
