"""Interrupted sweeps on a real local Ray: the real driver is killed (SIGKILL, or SIGINT as Ctrl-C
sends it) at each dangerous moment, resumed, and must end with the table of an uninterrupted run,
no row twice, and never a partial table presented as final."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import analysis
from sweeps.engine import ledger
from sweeps.engine.searcher import FAULT_ENV

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from sweeps.engine import Cell, StepSizes, Sweep, main
steps = int(sys.argv.pop(1))
variant = sys.argv.pop(1)
extra = variant == "edited"
cells = [Cell("nsgda", StepSizes(grid=(1e-3, 3e-3))), Cell("sgda", StepSizes(grid=(0.1,)))]
main(Sweep(
    name="resume", experiment="bimodal", metric="miss_both", seeds=[0, 1, 2] if extra else [0, 1],
    fixed={"steps": steps, "eval_every": 100, "checkpoint_every": 100},
    cells=cells + [Cell("adam", StepSizes(grid=(1e-3,)))] * extra,
    confirm_seeds=[5, 6] if variant == "confirm" else (),
))
"""
TRIALS = 6  # nsgda 2 step sizes + sgda 1, x 2 seeds
STEPS = 300


def launch(
    tmp: Path,
    storage: Path,
    *extra: str,
    steps: int = STEPS,
    fault: str = "",
    edited=False,
    variant: str = "plain",
):
    script = tmp / "resume_sweep.py"
    script.write_text(SCRIPT)
    log = open(tmp / f"{storage.name}.log", "a")  # noqa: SIM115 (the child holds it)
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, str(script), str(steps), "edited" if edited else variant]
    cmd += ["--storage", str(storage), "--num-cpus", "2", *extra]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    proc.log_path = log.name
    return proc


def output(proc) -> str:
    return Path(proc.log_path).read_text()


def finish(proc, code: int = 0) -> str:
    rc = proc.wait(timeout=600)
    text = output(proc)
    assert rc == code, text[-4000:]
    return text


def table(storage: Path) -> str:
    return (storage / "resume" / "summary.csv").read_text()


def check_rows(storage: Path) -> None:
    """Every declared trial once, every report once."""
    analysis.collect(str(storage / "resume"), str(storage.parent / f"{storage.name}-check"))
    df = analysis.load(str(storage.parent / f"{storage.name}-check"))
    assert not df.duplicated(["trial_id", "iteration"]).any()
    final = analysis.final_rows(df)
    assert len(final) == TRIALS
    assert not final.duplicated(["cell", "lr_g", "seed"]).any()
    assert set(final["status"]) == {"finished"}
    for _, trial in df.groupby("trial_id"):
        assert sorted(trial["step"]) == list(range(100, STEPS + 1, 100))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("reference")
    finish(launch(tmp, tmp / "runs"))
    return table(tmp / "runs")


def test_killed_before_the_first_experiment_state_starts_afresh(tmp_path, reference):
    storage = tmp_path / "runs"
    p = launch(tmp_path, storage, fault="first_suggest")
    assert p.wait(timeout=600) == -signal.SIGKILL
    exp = storage / "resume"
    assert (exp / "tuner.pkl").exists() and not ledger.has_state(str(exp))  # the window
    assert not (exp / "summary.csv").exists()

    text = finish(launch(tmp_path, storage, "--resume"))
    assert "starts afresh" in text
    assert table(storage) == reference
    check_rows(storage)
    aside = [p for p in storage.iterdir() if p.name.startswith(".resume.interrupted-")]
    assert len(aside) == 1  # the half-run directory is kept, out of the collector's way


def test_killed_between_a_suggestion_and_its_trial_is_suggested_again(tmp_path, reference):
    storage = tmp_path / "runs"
    # one trial at a time, so suggestions come after Tune's first experiment state
    p = launch(tmp_path, storage, "--max-concurrent", "1", fault="suggest")
    assert p.wait(timeout=600) == -signal.SIGKILL
    exp = storage / "resume"
    events = [json.loads(x) for x in (exp / ledger.LEDGER).read_text().splitlines()]
    dispatched = {e["trial_id"] for e in events if e["event"] == "dispatch"}
    lost = dispatched - set(ledger.tune_trials(str(exp)))
    assert len(lost) == 1  # the window: suggested, never recorded by Tune

    text = finish(launch(tmp_path, storage, "--resume"))
    assert "running them again" in text
    assert table(storage) == reference
    check_rows(storage)


def test_killed_during_the_final_collection_resumes_to_the_same_table(tmp_path, reference):
    storage = tmp_path / "runs"
    p = launch(tmp_path, storage, fault="collect:2")
    assert p.wait(timeout=600) == -signal.SIGKILL
    assert not (storage / "resume" / "summary.csv").exists()
    finish(launch(tmp_path, storage, "--resume"))
    assert table(storage) == reference
    check_rows(storage)


def killed_after_a_state(tmp_path: Path, storage: Path) -> Path:
    """A sweep killed once Tune has recorded its state (all three files of it) on storage."""
    p = launch(tmp_path, storage, "--max-concurrent", "1", fault="suggest")
    assert p.wait(timeout=600) == -signal.SIGKILL
    exp = storage / "resume"
    assert ledger.has_state(str(exp)) and list(exp.glob("search_gen_state-*.json"))
    assert len(list(exp.glob("searcher-state-*.pkl"))) == 1, sorted(os.listdir(exp))
    return exp


@pytest.mark.parametrize("torn", ["searcher-state-*.pkl", "search_gen_state-*.json"])
def test_a_search_state_the_kill_left_empty_still_resumes(tmp_path, reference, torn):
    """Tune copies its state files to storage in place, and a kill can leave one of them empty
    while the rest are whole (a full test run met it). On their own, Tune then fails the
    restore and goes on half-restored (the searcher's file), or takes the search as finished
    (the generator's): either ends with trials missing."""
    storage = tmp_path / "runs"
    exp = killed_after_a_state(tmp_path, storage)
    (state,) = exp.glob(torn)
    state.write_bytes(b"")

    text = finish(launch(tmp_path, storage, "--resume"))
    assert f"{state} was cut short" in text
    assert "Failed to restore" not in text
    assert table(storage) == reference
    check_rows(storage)
    assert (exp / (state.name + ledger.TORN)).exists()  # kept for a post-mortem


def test_rows_the_kill_emptied_of_a_trial_tune_recorded_as_ended_are_trained_again(
    tmp_path, reference
):
    """Tune copies every trial's files to storage in place at each sync: a kill during one
    can empty the result.json of a trial that ended long before (a full test run met it)."""
    storage = tmp_path / "runs"
    p = launch(tmp_path, storage, fault="collect:2")  # every trial ended, in Tune's state too
    assert p.wait(timeout=600) == -signal.SIGKILL
    exp = storage / "resume"
    ended = [t for t in ledger.tune_trials(str(exp)).values() if t.status == "TERMINATED"]
    assert len(ended) == TRIALS
    (rows,) = exp.glob(f"*_{ended[0].trial_id}/result.json")
    rows.write_bytes(b"")

    text = finish(launch(tmp_path, storage, "--resume"))
    assert "running them again" in text
    assert table(storage) == reference
    check_rows(storage)


def test_a_restore_tune_cannot_finish_stops_before_any_trial_and_changes_nothing(
    tmp_path, reference
):
    storage = tmp_path / "runs"
    exp = killed_after_a_state(tmp_path, storage)
    (newest,) = exp.glob("experiment_state-*.json")
    whole = newest.read_bytes()
    state = json.loads(whole)
    del state["runner_data"]  # its trials read, the rest is not what this Tune writes
    newest.write_text(json.dumps(state))
    kept = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != "tuner.pkl"}
    trials_before = sorted(p.name for p in exp.iterdir() if p.is_dir())

    text = finish(launch(tmp_path, storage, "--resume"), code=4)
    assert f"Tune could not restore {exp}: KeyError: 'runner_data'" in text
    assert "Nothing was run" in text and "best step size per cell" not in text
    now = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != "tuner.pkl"}
    assert now == kept  # no state file, ledger or study written
    assert sorted(p.name for p in exp.iterdir() if p.is_dir()) == trials_before

    newest.write_bytes(whole)  # the cause removed, the same resume finishes the sweep
    finish(launch(tmp_path, storage, "--resume"))
    assert table(storage) == reference
    check_rows(storage)


def ledger_events(storage: Path) -> list[dict]:
    text = (storage / "resume" / ledger.LEDGER).read_text()
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def key(e: dict) -> tuple:
    return e["cell"], e["number"], e["seed"]


def test_killed_in_the_confirmation_stage_reruns_nothing_and_keeps_the_choice(tmp_path):
    clean = tmp_path / "clean"
    finish(launch(tmp_path, clean, variant="confirm"))
    storage = tmp_path / "runs"
    p = launch(
        tmp_path, storage, "--max-concurrent", "1", fault="confirm_result:1", variant="confirm"
    )
    assert p.wait(timeout=600) == -signal.SIGKILL
    before = ledger_events(storage)
    ended = [key(e) for e in before if e["event"] == "result" and e["seed"] in (5, 6)]
    assert len(ended) == 1, output(p)[-3000:]  # killed right after the first one ended
    choice = {e["cell"]: e["number"] for e in before if e["event"] == "choose"}
    first_id = next(
        e["trial_id"] for e in before if e["event"] == "dispatch" and key(e) == ended[0]
    )
    # its rows reach storage only when the driver syncs them: the kill may have lost them
    kept = ledger.has_final_rows(str(storage / "resume"), first_id)
    # and a trial Tune's state holds is restored by Tune itself, not suggested again
    kept = kept or first_id in ledger.tune_trials(str(storage / "resume"))

    text = finish(launch(tmp_path, storage, "--resume", variant="confirm"))
    assert table(storage) == table(clean)
    if "starts afresh" in text:  # the kill cut Tune's only state short: nothing to continue
        assert not ledger.has_state(str(next(storage.glob(".resume.interrupted-*"))))
        return
    events = ledger_events(storage)
    dispatched = [key(e) for e in events if e["event"] == "dispatch"]
    # the finished confirmation is suggested again only if the kill lost its rows and Tune
    # never recorded it
    assert dispatched.count(ended[0]) == (1 if kept else 2)
    chosen = [(e["cell"], e["number"]) for e in events if e["event"] == "choose"]
    assert sorted(c for c, _ in chosen) == ["nsgda", "sgda"]  # each cell chosen once
    assert set(choice.items()) <= set(chosen)  # a choice made before the kill stands
    analysis.collect(str(storage / "resume"), str(tmp_path / "check"))
    df = analysis.load(str(tmp_path / "check"))
    assert not df.duplicated(["trial_id", "iteration"]).any()
    final = analysis.final_rows(df)
    assert len(final) == TRIALS + 4
    assert set(final["status"]) == {"finished"}
    assert not final.duplicated(["cell", "lr_g", "seed"]).any()
    confirm = final[final["stage"] == "confirm"]
    assert sorted(confirm["seed"]) == [5, 5, 6, 6]
    assert confirm.groupby("cell")["lr_g"].nunique().eq(1).all()
    for _, trial in df.groupby("trial_id"):
        assert sorted(trial["step"]) == list(range(100, STEPS + 1, 100))


def test_ctrl_c_exits_130_with_the_resume_command_and_no_final_table(tmp_path, reference):
    storage = tmp_path / "runs"
    p = launch(tmp_path, storage)  # trials still pending at the interrupt, as in real use
    ledger_path = storage / "resume" / ledger.LEDGER

    def results() -> int:
        if not ledger_path.exists():
            return 0
        return ledger_path.read_text().count('"event": "result"')

    deadline = time.time() + 300
    while results() < 2 and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert p.poll() is None, output(p)[-3000:]
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    text = finish(p, 130)
    assert "--resume" in text and "Tuner.restore" not in text
    assert "best step size per cell" not in text
    assert not (storage / "resume" / "summary.csv").exists()

    text = finish(launch(tmp_path, storage, "--resume"))
    assert "fetch metrics" not in text  # Tune's warnings about the trials pending at Ctrl-C
    assert table(storage) == reference
    check_rows(storage)


def test_a_changed_sweep_refuses_to_resume_and_a_lost_trial_is_named(tmp_path, reference):
    storage = tmp_path / "runs"
    finish(launch(tmp_path, storage))
    before = table(storage)

    text = finish(launch(tmp_path, storage, "--resume", edited=True), 2)
    assert "cell 'adam' added" in text and "seeds: [0, 1] -> [0, 1, 2]" in text
    assert table(storage) == before  # nothing written

    # a finished trial's files lost on disk: the resumed sweep must not present 5 of 6; it
    # trains that trial again (same seed, same numbers) and ends with the same table
    victim = next(d for d in (storage / "resume").iterdir() if d.name.startswith("sgda_s1_"))
    for f in victim.iterdir():
        if f.is_file():
            f.unlink()
    (storage / "resume" / "summary.csv").unlink()
    import shutil

    shutil.rmtree(storage / "resume" / "results")
    text = finish(launch(tmp_path, storage, "--resume"))
    assert "running them again: sgda #0 seed 1" in text
    assert table(storage) == before == reference
    check_rows(storage)


def test_quickstart_killed_in_its_second_sweep_resumes_to_the_same_tables(tmp_path):
    """The reproduction of the defect: SIGKILL to the driver's process group the moment the
    second sweep's directory appears, then the quickstart run again as its docs say."""

    def quickstart(storage: Path) -> subprocess.Popen:
        log = open(tmp_path / f"{storage.name}.log", "a")  # noqa: SIM115 (the child holds it)
        cmd = [sys.executable, "sweeps/quickstart.py", "--smoke", "--storage", str(storage)]
        env = {**{k: v for k, v in os.environ.items() if k != FAULT_ENV}, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [*cmd, "--num-cpus", "2"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        proc.log_path = log.name
        return proc

    def tables(storage: Path) -> dict[str, str]:
        return {
            s: (storage / s / "summary.csv").read_text() for s in ("bimodal_smoke", "mog_smoke")
        }

    clean = tmp_path / "clean"
    finish(quickstart(clean))
    storage = tmp_path / "killed"
    p = quickstart(storage)
    deadline = time.time() + 600
    while not (storage / "mog_smoke").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert (storage / "bimodal_smoke" / "summary.csv").exists()
    assert not (storage / "mog_smoke" / "summary.csv").exists()

    text = finish(quickstart(storage))
    assert "mog_smoke: 9 trials" in text  # 3 cells x (2 tuning seeds + 1 confirmation seed)
    assert tables(storage) == tables(clean)
    analysis.collect(str(storage / "mog_smoke"), str(tmp_path / "check"))
    df = analysis.load(str(tmp_path / "check"))
    assert not df.duplicated(["trial_id", "iteration"]).any()
    assert len(analysis.final_rows(df)) == 9
