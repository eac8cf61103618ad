"""The engine's command line is only a front for ``run``: its options map onto run's keywords,
scripts add their own options through ``main``, and bad values stop before any work."""

from __future__ import annotations

import pytest

from sweeps.engine import Cell, StepSizes, Sweep, main, run
from sweeps.engine.cli import parser, run_options

SWEEP = Sweep(
    name="cli",
    experiment="bimodal",
    metric="miss_both",
    seeds=[0],
    cells=[Cell("sgda", StepSizes(grid=(0.1,)))],
)


def test_the_command_line_gives_runs_keywords(tmp_path):
    args = parser().parse_args(
        ["--storage", str(tmp_path), "--resume", "--max-concurrent", "3", "--num-cpus", "2"]
    )
    options = run_options(args)
    assert {k: options[k] for k in ("storage", "resume", "max_concurrent", "num_cpus")} == {
        "storage": str(tmp_path),
        "resume": True,
        "max_concurrent": 3,
        "num_cpus": 2,
    }
    assert options["address"] is None and options["resume_hint"].endswith("--resume")


def test_a_script_adds_its_own_option_through_main():
    seen = {}

    def program(args) -> int:
        seen.update(vars(args))
        return 7

    def options(p) -> None:
        p.add_argument("--profile", default=None)

    with pytest.raises(SystemExit) as exit_:
        main(options=options, program=program, argv=["--profile", "p.json", "--smoke"])
    assert exit_.value.code == 7
    assert seen["profile"] == "p.json" and seen["smoke"] is True and seen["storage"] is None


def test_an_unknown_option_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(SWEEP, argv=["--storage"])
    assert exit_.value.code == 2
    assert "--storage: expected one argument" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_run_refuses_a_bad_max_concurrent_before_any_work(tmp_path, capsys, bad):
    outcome = run(SWEEP, storage=str(tmp_path / "runs"), max_concurrent=bad)
    assert outcome.code == 2 and f"max_concurrent {bad!r}" in outcome.error
    assert "must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_run_refuses_to_resume_what_is_not_there(tmp_path):
    outcome = run(SWEEP, storage=str(tmp_path), resume=True)
    assert outcome.code == 2 and "there is no sweep 'cli'" in outcome.error
    assert list(tmp_path.iterdir()) == []


def test_the_watch_options_reach_run():
    plain = run_options(parser().parse_args([]))
    assert plain["optuna_storage"] is None and plain["dashboard_port"] is None
    url = "sqlite:////tmp/studies.db"
    args = parser().parse_args(["--optuna-storage", url, "--dashboard"])
    assert run_options(args)["optuna_storage"] == url
    assert run_options(args)["dashboard_port"] == 8265  # Ray's default
    args = parser().parse_args(["--dashboard", "--dashboard-port", "9001"])
    assert run_options(args)["dashboard_port"] == 9001
    # a port without --dashboard starts nothing
    assert run_options(parser().parse_args(["--dashboard-port", "9001"]))["dashboard_port"] is None
