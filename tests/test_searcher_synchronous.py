"""Synchronous successive halving (``EarlyStopping("halving", synchronous=True)``): a rung is
decided once every step size of the cell has reached it, its seeds paused there meanwhile
(Tune's PAUSE), keeping the best ``max(n // reduction_factor, 1)``; driven through Tune's
interface with known objectives, checked against the rule computed by hand, plus real local Ray
sweeps (paused seeds resume from their rung's checkpoint, pruned ones never train past it)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from test_searcher_pruning import (
    EVERY,
    GRID,
    PENALTY,
    STEPS,
    Driver,
    events,
    kl,
    study,
)

from sweeps.engine import Cell, EarlyStopping, StepSizes, Sweep, SweepError, trials
from sweeps.engine.searcher import rung_prunes

SYNC = EarlyStopping("halving", min_resource=EVERY, reduction_factor=2, synchronous=True)


def sweep(**changes) -> Sweep:
    fields = dict(
        name="sync",
        experiment="mog",
        metric="mode_kl",
        seeds=[0, 1, 2],
        confirm_seeds=0,
        fixed={"steps": STEPS, "eval_every": EVERY},
        cells=[Cell("adam", StepSizes(grid=GRID))],
        early_stopping=SYNC,
    )
    fields.update(changes)
    return Sweep(**fields)


class PausingDriver(Driver):
    """``Driver`` that also plays Tune's PAUSE: a paused seed reports nothing until the
    searcher no longer holds it at its rung; one whose step size was pruned meanwhile is
    stopped as Tune stops a paused trial (the searcher is told it completed, without a
    result)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.paused: set[str] = set()
        self.max_paused = 0

    def carry_on(self, trial_id: str, decision: str) -> None:
        if decision == TrialScheduler.PAUSE:
            self.paused.add(trial_id)

    def round(self) -> None:
        for trial_id in list(self.live):
            if trial_id in self.live and trial_id not in self.paused:
                self.report(trial_id)
        self.max_paused = max(self.max_paused, len(self.paused))
        for trial_id in sorted(self.paused):
            if self.searcher.is_pruned(trial_id):
                self.paused.discard(trial_id)
                del self.live[trial_id]
                self.stopped.add(trial_id)
                self.searcher.on_trial_complete(trial_id)
            elif not self.searcher.waits(trial_id):
                self.paused.discard(trial_id)


@pytest.fixture
def driver():
    return PausingDriver


def penalised(lr_g: float, step: int, value=kl, seeds=(0, 1, 2)) -> float:
    vals = [value(lr_g, s, step) for s in seeds]
    return math.fsum(PENALTY if v is None else v for v in vals) / len(vals)


def halving_by_hand(means: dict[float, float], eta: int) -> set[float]:
    """The step sizes a full rung keeps: the best max(n // eta, 1), ties to the smaller lr."""
    order = sorted(means, key=lambda lr: (means[lr], lr))
    return set(order[: max(len(order) // eta, 1)])


def test_rung_prunes_keeps_the_best_n_over_the_reduction_factor():
    rng = random.Random(0)
    for n in range(1, 12):
        for eta in (2, 3, 4):
            ranks = list(range(n))
            rng.shuffle(ranks)
            numbers = {k: r for k, r in enumerate(ranks)}
            prunes = rung_prunes(numbers, EarlyStopping("halving", reduction_factor=eta))
            kept = {k for k, pruned in prunes.items() if not pruned}
            assert kept == {k for k, r in numbers.items() if r < max(n // eta, 1)}, (n, eta)


def test_each_rung_waits_for_every_step_size_and_keeps_the_best_half(tmp_path, driver):
    d = driver(sweep(), tmp_path)
    d.run()
    assert d.max_paused > 0, "no seed ever waited at a rung"
    lrs = {k[1]: c["trainer"]["lr_g"] for c in d.configs.values() for k in [_key(c)]}
    # the rule by hand: all four at rung 100, the best two at rung 200
    alive = set(GRID)
    want = {}
    for step in (100, 200):
        kept = halving_by_hand({lr: penalised(lr, step) for lr in alive}, 2)
        want.update({lr: step for lr in alive - kept})
        alive = kept
    pruned = {lrs[e["number"]]: e["step"] for e in events(tmp_path, "prune")}
    assert pruned == want
    # the study sees each rung's mean over seeds, only at the rungs a step size reached
    for t in study(tmp_path, "sync/adam").trials:
        lr = lrs[t.number]
        reached = [s for s in (100, 200) if s <= want.get(lr, 200)]
        assert t.intermediate_values == pytest.approx({s: penalised(lr, s) for s in reached})
        done = optuna.trial.TrialState.PRUNED if lr in want else optuna.trial.TrialState.COMPLETE
        assert t.state == done
    # no decision at a rung before every seed of every step size reported it, and no seed
    # reported past a rung before it was decided
    ledger = [e for e in _all_events(tmp_path) if e["event"] in ("report", "decide")]
    for rung in (100, 200):
        first_decision = min(
            i for i, e in enumerate(ledger) if e["event"] == "decide" and e["step"] == rung
        )
        last_report = max(
            i for i, e in enumerate(ledger) if e["event"] == "report" and e["step"] == rung
        )
        assert last_report < first_decision
        assert all(e["step"] <= rung for e in ledger[:first_decision] if e["event"] == "report")
    # compute: every pruned seed stopped at its rung, the kept one trained to the end
    for trial_id, steps in d.rows.items():
        lr = d.configs[trial_id]["trainer"]["lr_g"]
        seed = d.configs[trial_id]["trainer"]["seed"]
        end = want.get(lr, STEPS)
        diverged = [s for s in range(EVERY, end + 1, EVERY) if kl(lr, seed, s) is None]
        assert steps == list(range(EVERY, min([end, *diverged]) + 1, EVERY)), (lr, seed)


def test_a_rung_of_equal_means_still_halves_keeping_the_smaller_step_sizes(tmp_path, driver):
    def flat(lr_g, seed, step):
        return 1.0 + 0.1 * seed  # every step size the same at every step

    d = driver(sweep(), tmp_path, value=flat)
    d.run()
    lrs = {_key(c)[1]: c["trainer"]["lr_g"] for c in d.configs.values()}
    pruned = {lrs[e["number"]]: e["step"] for e in events(tmp_path, "prune")}
    assert pruned == {GRID[2]: 100, GRID[3]: 100, GRID[1]: 200}


def test_the_chosen_step_size_is_confirmed_to_the_end_without_rungs(tmp_path, driver):
    d = driver(sweep(confirm_seeds=2), tmp_path)
    d.run()
    confirm = {i: c for i, c in d.configs.items() if c[trials.STAGE] == trials.CONFIRM}
    tuning = {i: c for i, c in d.configs.items() if c[trials.STAGE] == trials.TUNE}
    assert sorted(c["trainer"]["seed"] for c in confirm.values()) == [3, 4]
    survivors = {c["trainer"]["lr_g"] for i, c in tuning.items() if d.rows[i][-1] == STEPS}
    pruned = {c["trainer"]["lr_g"] for i, c in tuning.items() if d.searcher.is_pruned(i)}
    assert len(survivors - pruned) == 1  # the rungs left one step size: it is the choice
    assert {c["trainer"]["lr_g"] for c in confirm.values()} == survivors - pruned
    for trial_id, config in confirm.items():  # no rung checkpoint, never held, never stopped
        assert not config["trainer"]["checkpoint_at"]
        assert d.rows[trial_id] == list(range(EVERY, STEPS + 1, EVERY))
        assert trial_id not in d.stopped
    assert all(c["trainer"]["checkpoint_at"] for c in tuning.values())


def test_a_restart_mid_rung_decides_the_same_rungs(tmp_path, driver):
    whole = driver(sweep(), tmp_path / "whole")
    whole.run()
    want = [(e["number"], e["step"]) for e in events(tmp_path / "whole", "prune")]
    path = tmp_path / "killed"
    d = driver(sweep(), path)
    d.fill()
    for trial_id in list(d.live)[:5]:  # five of twelve seeds reach rung 100
        d.report(trial_id)
    assert not events(path, "decide")
    again = driver(sweep(), path)  # the driver died; Tune recorded none of the live trials
    again.run()
    assert sorted((e["number"], e["step"]) for e in events(path, "prune")) == sorted(want)
    decided = [(e["number"], e["step"]) for e in events(path, "decide")]
    assert len(decided) == len(set(decided)), "a rung was decided twice"
    reports = [(e["number"], e["seed"], e["step"]) for e in events(path, "report")]
    assert len(reports) == len(set(reports)), "a seed's point was recorded twice"


def test_synchronous_is_only_for_halving_and_must_be_a_bool():
    with pytest.raises(SweepError, match="only kind 'halving' has a synchronous form"):
        sweep(early_stopping=EarlyStopping("median", synchronous=True)).validate()
    with pytest.raises(SweepError, match="synchronous='yes': must be True or False"):
        sweep(early_stopping=EarlyStopping("halving", synchronous="yes")).validate()


def test_rungs_are_evaluation_points_below_the_last_step():
    stop = EarlyStopping("halving", min_resource=150, reduction_factor=3, synchronous=True)
    assert stop.rungs(1000, 100) == (200, 500)
    assert stop.rungs(2000, 100) == (200, 500, 1400)
    assert EarlyStopping("halving", min_resource=2).rungs(12, 1) == (2, 6)
    assert EarlyStopping("halving", min_resource=300).rungs(300, 100) == ()


def _key(config: dict) -> tuple:
    return trials.key(config)


def _all_events(path: Path) -> list[dict]:
    import json

    from sweeps.engine import ledger

    return [json.loads(line) for line in (path / ledger.LEDGER).read_text().splitlines()]


# -- real local Ray sweeps ---------------------------------------------------------------------

GOOD, MID, BAD = 1e-3, 1e-1, 3.0  # adam on mog; lr 3 collapses every seed from step 100


@pytest.mark.slow
def test_a_real_sweep_pauses_seeds_at_the_rung_and_resumes_the_kept_one_from_there(tmp_path):
    import json

    import pandas as pd
    from grid_seeds import grid_seed_asking_first

    from sweeps.engine import run

    grid = (GOOD, MID, BAD)
    s = Sweep(
        name="sync-real",
        experiment="mog",
        metric="mode_kl",
        seeds=[0, 1],
        fixed={"steps": STEPS, "eval_every": EVERY},  # mog checkpoints every 10,000 steps
        cells=[Cell("adam", StepSizes(grid=grid))],
        sampler_seed=grid_seed_asking_first(GOOD, grid),
        early_stopping=EarlyStopping(
            "halving", min_resource=EVERY, reduction_factor=3, synchronous=True
        ),
    )
    outcome = run(s, storage=str(tmp_path), num_cpus=2)  # 6 seeds on 2 CPUs
    assert outcome.code == 0, outcome.error
    final = outcome.trials
    assert len(final) == 6
    kept = final[final["status"] == "finished"]
    pruned = final[final["status"] == "pruned"]
    assert len(kept) == 2 and len(pruned) == 4  # a rung of 3 keeps 3 // 3 = 1 step size
    assert (pruned["step"] == EVERY).all(), "a pruned seed trained past the rung"
    assert (kept["step"] == STEPS).all()
    assert list(outcome.table["lr_g"]) == [GOOD]
    # each kept seed's rows: every evaluation once (it resumed from its rung's checkpoint,
    # not from the start), its step 200 after every other seed's rung (it waited)
    rows = {}
    for trial_id in final["trial_id"]:
        path = next(Path(outcome.path).glob(f"*{trial_id}*/result.json"))
        rows[trial_id] = pd.DataFrame(
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        )
    rung_times = [
        float(r.loc[r["step"] == EVERY, "timestamp"].iloc[0])
        for t, r in rows.items()
        if t in set(pruned["trial_id"])
    ]
    for trial_id in kept["trial_id"]:
        r = rows[trial_id]
        assert list(r["step"]) == [100, 200, 300], trial_id
        assert float(r.loc[r["step"] == 200, "timestamp"].iloc[0]) >= max(rung_times)
    assert set(kept["lr_g"]) == {GOOD}
