"""Early stopping of a step size (``Sweep.early_stopping``), driven through Tune's interface
(suggest, the scheduler's and the searcher's on_trial_result, on_trial_complete) with known
objectives per (step size, seed, step): what each study is told at each rung, when a step size
is pruned and that all its seeds stop, which step size is chosen, that a restart changes none of
it; plus one real local Ray sweep (collect, status "pruned", the table, completeness)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import optuna
import pytest
from grid_seeds import grid_seed_asking_first
from ray.tune.schedulers import TrialScheduler

from sweeps.engine import Cell, EarlyStopping, StepSizes, Sweep, SweepError, ledger, trials
from sweeps.engine.searcher import CellSearcher, PruningScheduler
from sweeps.engine.spec import differences, record

PENALTY = 5.0  # mode_kl's
STEPS = 300
EVERY = 100
GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def kl(lr_g: float, seed: int, step: int) -> float | None:
    """A known curve: best near lr 1e-3 at every step (so the ranking is clear early), seeds
    spread it, lr 1e-1 diverges on seed 1 at step 200 (None)."""
    if lr_g > 0.05 and seed == 1 and step >= 200:
        return None
    return round((math.log10(lr_g) + 3) ** 2 + 0.1 * seed + 100.0 / step, 6)


def sweep(**changes) -> Sweep:
    fields = dict(
        name="prune",
        experiment="mog",
        metric="mode_kl",
        seeds=[0, 1, 2],
        confirm_seeds=2,
        fixed={"steps": STEPS, "eval_every": EVERY},
        cells=[Cell("adam", StepSizes(grid=GRID))],
        early_stopping=EarlyStopping("halving", min_resource=EVERY, reduction_factor=2),
    )
    fields.update(changes)
    return Sweep(**fields)


class FakeTrial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class Driver:
    """Plays Tune: asks for trials, then lets the live ones report step by step (the scheduler
    first, then the searcher unless the scheduler stopped it, as Tune's controller does) and
    completes them at their last step, at a divergence or when stopped."""

    def __init__(self, s: Sweep, path: Path, value=kl, max_concurrent=None, last=None) -> None:
        self.searcher = CellSearcher(s, str(path), max_concurrent=max_concurrent)
        self.scheduler = PruningScheduler(self.searcher)
        self.value = value
        self.last = last or (lambda lr_g, seed: STEPS)  # where a trial ends without diverging
        self.live: dict[str, dict] = {}
        self.next_step: dict[str, int] = {}
        self.rows: dict[str, list[int]] = {}  # trial id -> the steps it reported
        self.stopped: set[str] = set()
        self.configs: dict[str, dict] = {}
        self.n = 0

    def ask(self):
        self.n += 1
        trial_id = f"t{self.n:04d}"
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict):
            self.live[trial_id] = config
            self.configs[trial_id] = config
            self.next_step[trial_id] = EVERY
            self.rows[trial_id] = []
        return config

    def fill(self) -> None:
        while isinstance(self.ask(), dict):
            pass

    def report(self, trial_id: str) -> None:
        """The trial's next report; it ends at the last step, when diverged or when stopped."""
        config = self.live[trial_id]
        t = config[trials.TRAINER]
        step = self.next_step[trial_id]
        v = self.value(t["lr_g"], t["seed"], step)
        result = {"step": step, "mode_kl": v, "diverged": v is None, "objective": v}
        self.rows[trial_id].append(step)
        decision = self.scheduler.on_trial_result(None, FakeTrial(trial_id), result)
        if decision == TrialScheduler.STOP:
            self.stopped.add(trial_id)
        else:
            self.searcher.on_trial_result(trial_id, result)  # Tune's second call: a duplicate
        if decision == TrialScheduler.STOP or v is None or step >= self.last(t["lr_g"], t["seed"]):
            del self.live[trial_id]
            self.searcher.on_trial_complete(trial_id, result)
        else:
            self.next_step[trial_id] = step + EVERY
            self.carry_on(trial_id, decision)

    def carry_on(self, trial_id: str, decision: str) -> None:
        """What the driver does with a live trial after its report (here: nothing)."""

    def round(self) -> None:
        """Every live trial reports once (in dispatch order)."""
        for trial_id in list(self.live):
            if trial_id in self.live:
                self.report(trial_id)

    def run(self) -> None:
        while True:
            self.fill()
            if not self.live:
                assert self.ask() == CellSearcher.FINISHED
                return
            self.round()

    def keys(self) -> dict[str, tuple[str, int, int]]:
        return {i: trials.key(c) for i, c in self.configs.items()}


def study(path: Path, name: str = "prune/adam") -> optuna.Study:
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path / ledger.JOURNAL))
    )
    return optuna.load_study(study_name=name, storage=journal)


def events(path: Path, kind: str) -> list[dict]:
    lines = (path / ledger.LEDGER).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def mean_at(lr_g: float, step: int, seeds=(0, 1, 2)) -> float:
    vals = []
    for s in seeds:
        v = kl(lr_g, s, step)
        vals.append(PENALTY if v is None else v)
    return math.fsum(vals) / len(vals)


def test_a_step_size_pruned_at_the_first_rung_stops_all_its_seeds(tmp_path):
    d = Driver(sweep(confirm_seeds=0), tmp_path)
    d.run()
    pruned = {(e["cell"], e["number"]): e["step"] for e in events(tmp_path, "prune")}
    assert EVERY in pruned.values(), pruned  # at least one pruned at the first rung
    keys = d.keys()
    for trial_id, (cell, number, _seed) in keys.items():
        if (cell, number) not in pruned:
            assert d.rows[trial_id][-1] in (STEPS, 200), trial_id  # trained on (or diverged)
            continue
        # every seed stopped by the scheduler at its first report after the decision
        assert trial_id in d.stopped
        assert d.rows[trial_id][-1] <= pruned[(cell, number)] + EVERY
    for (cell, number), step in pruned.items():
        seeds = [i for i, k in keys.items() if k[:2] == (cell, number)]
        assert len(seeds) == 3
        assert min(d.rows[i][-1] for i in seeds) == step  # the seed that completed the rung
    states = {t.number: t.state for t in study(tmp_path).trials}
    for _, number in pruned:
        assert states[number] == optuna.trial.TrialState.PRUNED
    # the record analysis reads: exactly the pruned step sizes' seeds
    written = json.loads((tmp_path / "pruned.json").read_text())
    assert sorted(written["trial_ids"]) == sorted(i for i, k in keys.items() if k[:2] in pruned)


def test_the_study_sees_the_mean_over_seeds_at_each_rung(tmp_path):
    d = Driver(sweep(confirm_seeds=0), tmp_path)
    d.run()
    told = study(tmp_path).trials
    assert any(t.intermediate_values for t in told)
    for t in told:
        for step, value in t.intermediate_values.items():
            assert step < STEPS  # the last point is the study's value, never a rung
            assert value == pytest.approx(mean_at(t.params["lr"], step), abs=1e-12), (t, step)
    # the decisions recorded are the study's: one per (trial, point), never two
    decided = [(e["number"], e["step"]) for e in events(tmp_path, "decide")]
    assert len(decided) == len(set(decided))
    assert sorted(decided) == sorted((t.number, s) for t in told for s in t.intermediate_values)


def test_the_decision_waits_for_every_seed_and_a_diverged_seed_counts_as_the_penalty(tmp_path):
    s = sweep(confirm_seeds=0, cells=[Cell("adam", StepSizes(grid=(1e-1,)))])
    d = Driver(s, tmp_path)
    d.fill()
    ids = list(d.live)
    assert len(ids) == 3
    for k, trial_id in enumerate(ids):
        assert study(tmp_path).trials[0].intermediate_values == {}, f"told after {k} of 3 seeds"
        d.report(trial_id)
    assert study(tmp_path).trials[0].intermediate_values == {100: pytest.approx(mean_at(0.1, 100))}
    d.round()  # seed 1 diverges at 200 (ends): counted as the penalty there
    assert study(tmp_path).trials[0].intermediate_values[200] == pytest.approx(mean_at(0.1, 200))


@pytest.mark.parametrize("synchronous", [False, True], ids=["asynchronous", "synchronous"])
def test_a_seed_a_stop_rule_ended_counts_its_final_value_at_later_rungs(tmp_path, synchronous):
    # as the study's value and the tables count it: bimodal's blow-up rule ends a run early
    # with its last verdict, which may be the best one (both modes)
    def steady(lr_g: float, seed: int, step: int) -> float:
        return round(1.0 + 0.25 * seed + 100.0 / step, 6)

    stop = EarlyStopping("halving", min_resource=EVERY, reduction_factor=2, synchronous=synchronous)
    s = sweep(confirm_seeds=0, cells=[Cell("adam", StepSizes(grid=(1e-1,)))], early_stopping=stop)
    d = Driver(s, tmp_path, value=steady, last=lambda lr_g, seed: EVERY if seed == 1 else STEPS)
    d.run()
    told = study(tmp_path).trials[0].intermediate_values
    assert told[100] == pytest.approx(sum(steady(0.1, k, 100) for k in range(3)) / 3)
    want = (steady(0.1, 0, 200) + steady(0.1, 1, 100) + steady(0.1, 2, 200)) / 3
    assert told[200] == pytest.approx(want)  # seed 1's last value, not the penalty (5)


def test_a_seed_that_ended_before_a_rung_counts_as_the_penalty_there(tmp_path):
    def early(lr_g: float, seed: int, step: int) -> float | None:
        return None if seed == 1 else kl(lr_g, seed, step)  # seed 1 diverges at its first report

    s = sweep(confirm_seeds=0, cells=[Cell("adam", StepSizes(grid=(1e-1,)))])
    d = Driver(s, tmp_path, value=early)
    d.fill()
    d.round()
    d.round()
    told = study(tmp_path).trials[0].intermediate_values
    for step in (100, 200):
        want = (early(0.1, 0, step) + PENALTY + early(0.1, 2, step)) / 3
        assert told[step] == pytest.approx(want), step


def winner(value, grid=GRID) -> float:
    """The step size of the full grid's choice: the lowest penalised mean of final values."""
    return min(grid, key=lambda lr: (mean_at(lr, STEPS), lr))


def confirmed(d: Driver) -> set[float]:
    return {
        c[trials.TRAINER]["lr_g"] for c in d.configs.values() if c[trials.STAGE] == trials.CONFIRM
    }


@pytest.mark.parametrize("kind", ["halving", "hyperband", "median"])
def test_early_stopping_chooses_the_full_grids_step_size(tmp_path, kind):
    full = Driver(sweep(early_stopping=EarlyStopping()), tmp_path / "full")
    full.run()
    stop = EarlyStopping(kind, min_resource=EVERY, reduction_factor=2, startup_trials=0)
    early = Driver(sweep(early_stopping=stop), tmp_path / "early")
    early.run()
    assert confirmed(full) == confirmed(early) == {winner(kl)}
    for trial_id, c in early.configs.items():  # the confirmation trains to the end
        if c[trials.STAGE] == trials.CONFIRM:
            assert early.rows[trial_id][-1] == STEPS and trial_id not in early.stopped
    if kind == "halving":  # hyperband's brackets hold one or two of the four step sizes here,
        # the median pruner needs a finished step size to compare with
        assert events(tmp_path / "early", "prune"), "nothing was pruned"
        assert sum(len(r) for r in early.rows.values()) < sum(len(r) for r in full.rows.values())


@pytest.mark.parametrize("kind", ["halving", "hyperband"])
def test_tpe_with_early_stopping_never_confirms_a_pruned_step_size(tmp_path, kind):
    s = sweep(
        cells=[Cell("adam", StepSizes(low=1e-5, high=1e-1, trials=6))],
        sampler_seed=1,
        early_stopping=EarlyStopping(kind, min_resource=EVERY, reduction_factor=2),
    )
    d = Driver(s, tmp_path)
    d.run()
    told = study(tmp_path).trials
    assert len(told) == 6
    complete = [t for t in told if t.state == optuna.trial.TrialState.COMPLETE]
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in told)
    best = min(complete, key=lambda t: (t.value, t.params["lr"]))
    assert confirmed(d) == {best.params["lr"]}


def test_a_restart_keeps_the_pruned_set_and_reports_no_point_twice(tmp_path):
    s = sweep()
    whole = Driver(s, tmp_path / "whole")
    whole.run()
    want = {(e["number"], e["step"]) for e in events(tmp_path / "whole", "prune")}
    path = tmp_path / "killed"
    d = Driver(s, path)
    d.fill()
    d.round()
    d.round()  # the first rungs are decided, the seeds are at step 200
    before = {(e["number"], e["step"]) for e in events(path, "prune")}
    assert before
    # the driver dies; Tune recorded none of the live trials: they run again from the start
    again = Driver(s, path)
    again.run()
    after = {(e["number"], e["step"]) for e in events(path, "prune")}
    assert before <= after
    assert after == want
    decided = [(e["number"], e["step"]) for e in events(path, "decide")]
    assert len(decided) == len(set(decided)), "a point was decided twice"
    reports = [(e["number"], e["seed"], e["step"]) for e in events(path, "report")]
    assert len(reports) == len(set(reports)), "a seed's point was recorded twice"
    assert confirmed(again) == confirmed(whole)
    # no seed of a step size pruned before the restart ran again
    pruned = {n for n, _ in before}
    assert not [c for c in again.configs.values() if c[trials.STUDY_TRIAL] in pruned]


@pytest.mark.parametrize(
    ("stop", "words"),
    [
        (EarlyStopping("asha"), "kind 'asha' is unknown; allowed: none, halving, hyperband"),
        (
            EarlyStopping("halving", reduction_factor=1),
            "reduction_factor=1: must be an integer >= 2",
        ),
        (EarlyStopping("halving", min_resource=0), "min_resource=0: must be an integer >= 1"),
        (EarlyStopping("median", warmup_steps=-1), "warmup_steps=-1: must be an integer >= 0"),
        (
            EarlyStopping("hyperband", min_resource=200, max_resource=100),
            "max_resource=100 must be >= min_resource=200",
        ),
        ("halving", "give an EarlyStopping"),
    ],
)
def test_bad_early_stopping_is_refused(stop, words):
    with pytest.raises(SweepError, match=words.replace("(", r"\(").replace(")", r"\)")):
        sweep(early_stopping=stop).validate()


def test_early_stopping_is_recorded_and_an_old_record_still_resumes():
    plain = record(sweep(early_stopping=EarlyStopping()))
    old = {k: v for k, v in plain.items() if k != "early_stopping"}  # before the key existed
    assert differences(old, plain) == []
    changed = differences(old, record(sweep()))
    assert len(changed) == 1 and changed[0].startswith("early_stopping: ")
    assert dataclasses.asdict(sweep().early_stopping)["kind"] == "halving"


# -- analysis and completeness of pruned rows ---------------------------------------------------


def rows(lr: float, seed: int, kls: list[float], status: str) -> list[dict]:
    return [
        {
            "sweep": "prune",
            "trial_id": f"{lr}-{seed}",
            "iteration": i,
            "experiment": "mog",
            "cell": "adam",
            "optimizer": "adam",
            "lr_d": lr,
            "lr_g": lr,
            "seed": seed,
            "steps": STEPS,
            "step": EVERY * i,
            "status": status,
            "objective": v,
        }
        for i, v in enumerate(kls, start=1)
    ]


def test_tables_count_pruned_seeds_and_never_choose_a_pruned_step_size():
    import pandas as pd

    import analysis

    # the pruned step size's last value (at its rung) is better than the finished one's end
    df = pd.DataFrame(
        rows(1e-3, 0, [1.0, 0.8, 0.6], "finished")
        + rows(1e-3, 1, [1.0, 0.9, 0.7], "finished")
        + rows(3.0, 0, [0.1], "pruned")
        + rows(3.0, 1, [0.2, 0.1], "pruned")
    )
    for penalty in (None, PENALTY):
        table = analysis.main_table(df, "objective", higher_is_better=False, penalty=penalty)
        assert list(table["lr_g"]) == [1e-3], penalty
    steps = analysis.step_size_table(df, "objective", higher_is_better=False)
    assert dict(zip(steps["lr_g"], steps["pruned"], strict=True)) == {1e-3: 0, 3.0: 2}
    assert dict(zip(steps["lr_g"], steps["running"], strict=True)) == {1e-3: 0, 3.0: 0}
    assert dict(zip(steps["lr_g"], steps["n"], strict=True)) == {1e-3: 2, 3.0: 0}  # no value
    only = df[df["lr_g"] == 3.0]  # every step size pruned: nothing is chosen
    with pytest.warns(UserWarning, match="every step size was pruned"):
        assert analysis.main_table(only, "objective", higher_is_better=False).empty


def test_collect_marks_the_trials_pruned_json_names_even_after_an_earlier_collect(tmp_path):
    import shutil

    import analysis
    from analysis.collect import PRUNED_RECORD

    src = Path(__file__).parent / "fixtures" / "analysis" / "tune_output" / "bimodal"
    experiment = tmp_path / "bimodal"
    shutil.copytree(src, experiment)
    dest = tmp_path / "results"
    analysis.collect(str(experiment), str(dest))
    before = analysis.final_rows(analysis.load(str(dest)))
    assert "pruned" not in set(before["status"])
    victims = sorted(before["trial_id"])[:2]
    (experiment / PRUNED_RECORD).write_text(json.dumps({"trial_ids": victims}))
    analysis.collect(str(experiment), str(dest))  # the trials' own files did not change
    df = analysis.load(str(dest))
    pruned = df[df["trial_id"].isin(victims)]
    assert set(pruned["status"]) == {"pruned"}
    assert set(df[~df["trial_id"].isin(victims)]["status"]) == set(before["status"]) - {"pruned"}
    final = analysis.final_rows(df)
    assert final[final["trial_id"].isin(victims)]["final"].all()


def test_completeness_counts_a_pruned_step_sizes_seeds_as_ended():
    import pandas as pd

    from sweeps.engine import completeness

    s = sweep(confirm_seeds=0, cells=[Cell("adam", StepSizes(grid=(1e-3, 3.0)))])
    final = pd.DataFrame(
        [rows(1e-3, k, [0.5], "finished")[-1] for k in (0, 1, 2)]
        + [rows(3.0, 0, [2.0], "pruned")[-1]]  # seeds 1 and 2 never dispatched
    )
    done = completeness.check(s, final)
    assert done.ok and done.ended == done.expected == 6, done.describe()
    running = final.assign(status=["finished"] * 3 + ["running"])
    assert not completeness.check(s, running).ok


# -- one real local Ray sweep ------------------------------------------------------------------

GOOD, BAD = 1e-3, 3.0  # adam on mog: lr 3 collapses every seed (mode_kl log 8) from step 100


@pytest.mark.slow
def test_a_real_sweep_prunes_the_bad_step_size_at_the_first_rung(tmp_path):
    import analysis
    from sweeps.engine import run

    grid = (GOOD, BAD)
    s = Sweep(
        name="prune-real",
        experiment="mog",
        metric="mode_kl",
        seeds=[0, 1],
        confirm_seeds=1,
        fixed={"steps": STEPS, "eval_every": EVERY, "checkpoint_every": EVERY},
        cells=[Cell("adam", StepSizes(grid=grid))],
        sampler_seed=grid_seed_asking_first(GOOD, grid),
        early_stopping=EarlyStopping("halving", min_resource=EVERY, reduction_factor=3),
    )
    outcome = run(s, storage=str(tmp_path), num_cpus=2)
    assert outcome.code == 0, outcome.error  # complete: the pruned seeds count as ended
    final = outcome.trials
    bad = final[final["lr_g"] == BAD]
    assert len(bad) == 2
    assert set(bad["status"]) == {"pruned"}
    # the seed whose report completed the rung ended there; the decision waits for both seeds,
    # so the other (started earlier, when a CPU freed) may have trained on meanwhile, under
    # load even to the end (seen once in a full run: steps 100 and 300). Compute was saved.
    assert bad["step"].min() == EVERY and (bad["step"] <= STEPS).all()
    assert bad["step"].sum() < len(bad) * STEPS
    good = final[final["lr_g"] == GOOD]
    assert set(good["status"]) == {"finished"} and (good["step"] == STEPS).all()
    confirm = good[good["stage"] == "confirm"]
    assert len(confirm) == 1 and int(confirm["step"].iloc[0]) == STEPS  # trained to the end
    assert list(outcome.table["lr_g"]) == [GOOD]  # the full grid's choice
    df = analysis.load(str(Path(outcome.path) / "results"))
    steps = analysis.step_size_table(df, "objective", higher_is_better=False)
    tuned = steps[steps["stage"] == "tune"].set_index("lr_g")
    assert tuned.loc[BAD, "pruned"] == 2 and tuned.loc[GOOD, "pruned"] == 0
    assert tuned.loc[BAD, "n"] == 0  # a pruned seed has no final value
    # every row of a pruned trial says so
    rows = df[df["lr_g"] == BAD]
    assert set(rows["status"]) == {"pruned"}
    pruned = json.loads((Path(outcome.path) / "pruned.json").read_text())
    assert sorted(pruned["trial_ids"]) == sorted(bad["trial_id"])


RESUME_SCRIPT = """
import sys
from sweeps.engine import Cell, EarlyStopping, StepSizes, Sweep, main
main(Sweep(
    name="prune-resume", experiment="mog", metric="mode_kl", seeds=[0, 1],
    fixed={"steps": 300, "eval_every": 100, "checkpoint_every": 100},
    cells=[Cell("adam", StepSizes(grid=(GOOD, BAD)))], sampler_seed=SEED,
    early_stopping=EarlyStopping(
        "halving", min_resource=100, reduction_factor=3, synchronous=SYNCHRONOUS
    ),
))
"""


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", [False, True], ids=["asynchronous", "synchronous"])
def test_a_driver_killed_at_a_prune_resumes_with_the_same_pruned_set(tmp_path, synchronous):
    import os
    import signal
    import subprocess
    import sys

    import analysis
    from sweeps.engine.searcher import FAULT_ENV

    root = Path(__file__).resolve().parent.parent
    seed = grid_seed_asking_first(GOOD, (GOOD, BAD))
    script = tmp_path / "prune_sweep.py"
    script.write_text(
        RESUME_SCRIPT.replace("GOOD", repr(GOOD))
        .replace("BAD", repr(BAD))
        .replace("SEED", str(seed))
        .replace("SYNCHRONOUS", str(synchronous))
    )
    storage = tmp_path / "runs"
    log = tmp_path / "driver.log"

    def launch(*extra: str, fault: str = "") -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
        env["PYTHONPATH"] = str(root)
        if fault:
            env[FAULT_ENV] = fault
        cmd = [sys.executable, str(script), "--storage", str(storage), "--num-cpus", "2", *extra]
        with open(log, "a") as out:
            return subprocess.Popen(
                cmd,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    first = launch(fault="prune:1")
    assert first.wait(timeout=600) == -signal.SIGKILL, log.read_text()[-4000:]
    path = storage / "prune-resume"
    pruned_before = [(e["number"], e["step"]) for e in events(path, "prune")]
    assert len(pruned_before) == 1
    second = launch("--resume")
    assert second.wait(timeout=600) == 0, log.read_text()[-4000:]
    assert [(e["number"], e["step"]) for e in events(path, "prune")] == pruned_before
    decided = [(e["number"], e["step"]) for e in events(path, "decide")]
    assert len(decided) == len(set(decided)), "a point was decided twice"
    number = pruned_before[0][0]
    dispatched = [e for e in events(path, "dispatch") if e["number"] == number]
    assert len(dispatched) == 2, "a pruned step size's seed ran again"
    states = {t.number: t.state for t in study(path, "prune-resume/adam").trials}
    assert states[number] == optuna.trial.TrialState.PRUNED
    df = analysis.load(str(path / "results"))
    final = analysis.final_rows(df)
    bad = final[final["lr_g"] == BAD]
    assert set(bad["status"]) == {"pruned"} and len(bad) == 2
    good = final[final["lr_g"] == GOOD]
    assert (good["status"] == "finished").all() and (good["step"] == 300).all()
    if synchronous:
        # BAD's seeds stopped at the rung, 100; one the resume restored trains to its next
        # evaluation before it stops (its rows may have died with the driver)
        assert (bad["step"] <= 200).all()
    assert "| adam" in (path / "summary.md").read_text()
