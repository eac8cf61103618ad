"""Each cell's Optuna study outlives the sweep: ``optuna.load_study`` and ``optuna-dashboard``
read it (a journal by default, a database with ``--optuna-storage``), and a killed sweep resumes
the same studies (tiny bimodal sweeps on a real local Ray)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest

import analysis
from sweeps.engine import Cell, StepSizes, Sweep, ledger, run, studies
from sweeps.engine.searcher import FAULT_ENV
from sweeps.engine.tuner import EXIT_BAD_INPUT

ROOT = Path(__file__).resolve().parent.parent
SHORT = {"steps": 200, "eval_every": 100, "checkpoint_every": 100}
CELLS = {"sgda": (0.1, 1.0), "nsgda": (1e-3, 1e-2)}


def watched_sweep(name: str = "watch") -> Sweep:
    return Sweep(
        name=name,
        experiment="bimodal",
        metric="miss_both",
        seeds=[0, 1],
        fixed=SHORT,
        cells=[Cell(c, StepSizes(grid=grid)) for c, grid in CELLS.items()],
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    outcome = run(watched_sweep(), storage=str(storage), num_cpus=2)
    assert outcome.code == 0
    return storage, outcome


def journal_of(outcome) -> optuna.storages.BaseStorage:
    return studies.open_storage(None, outcome.path)


def check_studies(kept, sweep: str, final) -> None:
    """Every cell's study holds each step size once, told the mean objective over its seeds."""
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(kept))
    assert names == sorted(f"{sweep}/{c}" for c in CELLS)
    for cell, grid in CELLS.items():
        study = optuna.load_study(study_name=f"{sweep}/{cell}", storage=kept)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * len(grid)
        assert sorted(t.params["lr"] for t in study.trials) == pytest.approx(sorted(grid))
        for t in study.trials:
            seeds = final[(final["cell"] == cell) & np.isclose(final["lr_g"], t.params["lr"])]
            assert sorted(seeds["seed"]) == [0, 1]
            assert t.value == pytest.approx(seeds["objective"].mean())


def test_load_study_reads_every_step_size_and_its_mean_over_seeds(finished):
    _, outcome = finished
    check_studies(journal_of(outcome), "watch", outcome.trials)


def test_the_sweep_records_where_its_studies_are(finished):
    _, outcome = finished
    record = json.loads((Path(outcome.path) / studies.RECORD).read_text())
    assert record["kind"] == "journal"
    assert record["path"] == str(Path(outcome.path) / ledger.JOURNAL)
    assert record["studies"] == ["watch/nsgda", "watch/sgda"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, attempts: int = 120) -> dict:
    """GET a JSON answer, waiting for the server to come up."""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.load(answer)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url}")


def test_optuna_dashboard_lists_every_cells_study(finished):
    pytest.importorskip(
        "optuna_dashboard",
        reason="optuna-dashboard is not installed (pip install -e '.[monitor]')",
    )
    _, outcome = finished
    port = free_port()
    serve = "import sys, optuna_dashboard; optuna_dashboard.run_server(sys.argv[1], "
    serve += "host='127.0.0.1', port=int(sys.argv[2]))"
    journal = str(Path(outcome.path) / ledger.JOURNAL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-c", serve, journal, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listed = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        assert sorted(s["study_name"] for s in listed) == ["watch/nsgda", "watch/sgda"]
        for summary in listed:
            study = get_json(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
            cell = summary["study_name"].split("/", 1)[1]
            values = sorted(t["values"][0] for t in study["trials"])
            told = optuna.load_study(study_name=summary["study_name"], storage=journal_of(outcome))
            assert len(values) == len(CELLS[cell])
            assert values == pytest.approx(sorted(t.value for t in told.trials))
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    "url, words",
    [
        ("redis://localhost/0", "unknown database 'redis'"),
        ("studies.db", "not a URL"),
        ("postgresql+nosuchdriver://host/db", "the database driver is not installed"),
        ("sqlite://", "must be a file that outlives the sweep"),
        ("sqlite:////nowhere/at/all/studies.db", "the folder /nowhere/at/all does not exist"),
    ],
)
def test_a_bad_optuna_storage_exits_2_before_anything_starts(tmp_path, capsys, url, words):
    outcome = run(watched_sweep(), storage=str(tmp_path / "runs"), optuna_storage=url)
    assert outcome.code == EXIT_BAD_INPUT
    assert words in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_resume_with_other_studies_is_refused(finished, capsys):
    storage, outcome = finished
    before = (Path(outcome.path) / "summary.csv").read_text()
    url = f"sqlite:///{storage}/other.db"
    again = run(watched_sweep(), storage=str(storage), resume=True, optuna_storage=url)
    assert again.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "keeps its Optuna studies in the journal at" in err and "other.db" in err
    assert (Path(outcome.path) / "summary.csv").read_text() == before
    assert not (storage / "other.db").exists()


SCRIPT = f"""
from sweeps.engine import Cell, StepSizes, Sweep, main
CELLS = {CELLS!r}
main(Sweep(
    name="sqlwatch", experiment="bimodal", metric="miss_both", seeds=[0, 1],
    fixed={{"steps": 200, "eval_every": 100, "checkpoint_every": 100}},
    cells=[Cell(c, StepSizes(grid=g)) for c, g in CELLS.items()],
))
"""


def launch(tmp: Path, *extra: str, fault: str = "") -> subprocess.Popen:
    script = tmp / "sqlwatch.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, str(script), "--num-cpus", "2", *extra]
    log = open(tmp / "sqlwatch.log", "a")  # noqa: SIM115 (the child holds it)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log_path = log.name
    return proc


@pytest.mark.slow
def test_a_killed_sweep_resumes_the_same_sqlite_studies(tmp_path):
    """Killed right after a suggestion the study and the ledger hold but Tune never recorded:
    the resume runs that seed again in the same study trial, and each study ends with every
    step size once, told once."""
    url = f"sqlite:///{tmp_path}/studies.db"
    options = ("--storage", str(tmp_path / "runs"), "--optuna-storage", url)
    p = launch(tmp_path, *options, "--max-concurrent", "1", fault="suggest")
    assert p.wait(timeout=600) == -signal.SIGKILL, Path(p.log_path).read_text()[-3000:]
    exp = tmp_path / "runs" / "sqlwatch"
    asked = {
        c: len(optuna.load_study(study_name=f"sqlwatch/{c}", storage=url).trials) for c in CELLS
    }
    assert sum(asked.values()) >= 1
    assert not (exp / ledger.JOURNAL).exists()  # the database holds the studies

    done = launch(tmp_path, *options, "--resume")
    rc = done.wait(timeout=600)
    text = Path(done.log_path).read_text()
    assert rc == 0, text[-4000:]
    assert "running them again" in text
    analysis.collect(str(exp), str(tmp_path / "check"))
    df = analysis.load(str(tmp_path / "check"))
    final = analysis.final_rows(df)
    assert len(final) == 8 and not final.duplicated(["cell", "lr_g", "seed"]).any()
    check_studies(optuna.storages.RDBStorage(url), "sqlwatch", final)
    events = [json.loads(x) for x in (exp / ledger.LEDGER).read_text().splitlines()]
    numbers = {(e["cell"], e["number"]) for e in events if e["event"] == "dispatch"}
    assert numbers == {(c, n) for c, grid in CELLS.items() for n in range(len(grid))}
    record = json.loads((exp / studies.RECORD).read_text())
    assert record == {"kind": "database", "url": url, "studies": sorted(asked_names())}


def asked_names() -> list[str]:
    return [f"sqlwatch/{c}" for c in CELLS]
