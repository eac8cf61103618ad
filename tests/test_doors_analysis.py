"""Bad input at ``python -m analysis collect|report``: a run that does not exist exits 3, a
destination that is a file (or lies under one) or of an unknown URI scheme exits 2, and
nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "analysis" / "tune_output" / "mog"


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (["collect", "MISSING", "--dest", "NEW"], 3, "does not exist"),
        (["collect", "AFILE", "--dest", "NEW"], 2, "is a file"),
        (["collect", "RUNS", "--dest", "AFILE"], 2, "--dest"),
        (["collect", "RUNS", "--dest", "AFILE/sub"], 2, "lies under the file"),
        (["collect", "RUNS", "--dest", "foo://x/y"], 2, "unknown URI scheme 'foo'"),
        (["report", "RUNS", "--out", "AFILE"], 2, "--out"),
        (["report", "RUNS", "--out", "NEW", "--results", "AFILE"], 2, "--results"),
    ],
)
def test_bad_places_exit_before_any_work(tmp_path, capsys, argv, code, words):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    names = {"MISSING": tmp_path / "missing", "NEW": tmp_path / "new", "AFILE": afile}
    names["RUNS"] = FIXTURE
    for key, value in names.items():
        argv = [a.replace(key, str(value)) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert words in err
    assert afile.read_text() == "mine" and not (tmp_path / "new").exists()


def test_collect_into_a_file_from_the_shell_exits_2_without_a_traceback(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "analysis", "collect", str(FIXTURE), "--dest", str(afile)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "is a file" in done.stderr
    assert "Traceback" not in done.stderr and afile.read_text() == "mine"
