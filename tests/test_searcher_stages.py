"""The searcher's decisions, driven through Tune's Searcher interface (suggest, on_trial_complete)
with results whose seeds and step sizes really differ: what each study is told, when, which
step size each cell confirms, and that a restart changes none of it. No Ray cluster: these are
the calls Tune makes, with a known objective per (step size, seed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

from sweeps.engine import Cell, StepSizes, Sweep, SweepError, ledger, trials
from sweeps.engine.searcher import CellSearcher
from sweeps.engine.spec import differences, record

PENALTY = 5.0  # mode_kl's


def kl(lr_g: float, seed: int) -> float | None:
    """A known objective: best near lr 1e-3, seeds spread it; lr 1e-1 diverges on seed 1."""
    if lr_g > 0.05 and seed == 1:
        return None
    return round((math.log10(lr_g) + 3) ** 2 + 0.1 * seed * (1 + math.log10(lr_g) + 4), 6)


def sweep(**changes) -> Sweep:
    fields = dict(
        name="stages",
        experiment="mog",
        metric="mode_kl",
        seeds=[0, 1, 2],
        confirm_seeds=2,
        fixed={"steps": 10},
        cells=[
            Cell("adam", StepSizes(grid=(1e-4, 1e-3, 1e-2, 1e-1))),
            Cell("nsgda", StepSizes(grid=(1e-3, 1e-2), ratios=(1.0, 2.0))),
        ],
    )
    fields.update(changes)
    return Sweep(**fields)


class Driver:
    """Plays Tune: asks for trials and completes them with ``kl``'s value."""

    def __init__(self, s: Sweep, path: Path, value=kl) -> None:
        self.searcher = CellSearcher(s, str(path))
        self.value = value
        self.live: dict[str, dict] = {}
        self.done: list[dict] = []
        self.n = 0

    def ask(self) -> dict | str | None:
        self.n += 1
        config = self.searcher.suggest(f"t{self.n:04d}")
        if isinstance(config, dict):
            self.live[f"t{self.n:04d}"] = config
        return config

    def ask_all(self) -> None:
        while isinstance(self.ask(), dict):
            pass

    def complete(self, trial_id: str) -> None:
        config = self.live.pop(trial_id)
        t = config[trials.TRAINER]
        v = self.value(t["lr_g"], t["seed"])
        result = {"mode_kl": v, "diverged": v is None}
        self.searcher.on_trial_complete(trial_id, result)
        self.done.append(config)

    def step(self) -> None:
        """One call of Tune's: a suggestion, or, when there is none, the oldest trial ends."""
        if not isinstance(self.ask(), dict):
            self.complete(next(iter(self.live)))

    def run(self) -> None:
        """Ask and complete until the searcher says it is finished, then complete the rest."""
        while True:
            answer = self.ask()
            if answer == CellSearcher.FINISHED:
                break
            if answer is None:
                self.complete(next(iter(self.live)))
        while self.live:
            self.complete(next(iter(self.live)))
        assert self.ask() == CellSearcher.FINISHED


def study(path: Path, name: str) -> optuna.Study:
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path / ledger.JOURNAL))
    )
    return optuna.load_study(study_name=name, storage=journal)


def expected_score(lr_g: float, seeds: list[int]) -> float:
    vals = [kl(lr_g, s) for s in seeds]
    return sum(PENALTY if v is None else v for v in vals) / len(vals)


def test_each_study_is_told_the_penalised_mean_over_all_its_seeds(tmp_path):
    d = Driver(sweep(), tmp_path)
    d.run()
    for cell in ("adam", "nsgda"):
        told = study(tmp_path, f"stages/{cell}").trials
        assert len(told) == (4 if cell == "adam" else 4)
        for t in told:
            want = expected_score(t.params["lr"], [0, 1, 2])
            assert t.value == pytest.approx(want, abs=1e-12), (cell, t.params)


def test_a_study_is_told_only_when_its_last_seed_has_ended(tmp_path):
    d = Driver(sweep(confirm_seeds=0), tmp_path)
    for _ in range(3):  # the three seeds of adam's first step size
        d.ask()
    first = list(d.live)
    number = d.live[first[0]][trials.STUDY_TRIAL]
    for k, trial_id in enumerate(first):
        s = study(tmp_path, "stages/adam").trials[number]
        assert s.state == optuna.trial.TrialState.RUNNING, f"told after {k} of 3 seeds"
        d.complete(trial_id)
    s = study(tmp_path, "stages/adam").trials[number]
    assert s.state == optuna.trial.TrialState.COMPLETE
    assert s.value == pytest.approx(expected_score(s.params["lr"], [0, 1, 2]))


def winner(cell: Cell, value) -> tuple[float, float]:
    """The step size the searcher must confirm, computed here: lowest penalised mean over the
    tuning seeds, ties to the smaller lr_d, then the smaller lr_g."""
    scores = []
    for lr in cell.lrs.grid:
        for ratio in cell.lrs.ratios:
            vals = [value(lr, s) for s in (0, 1, 2)]
            score = sum(PENALTY if v is None else v for v in vals) / 3
            scores.append((score, lr * ratio, lr))
    best = min(scores)
    return best[1], best[2]


def confirmations(done: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in done:
        if c[trials.STAGE] == trials.CONFIRM:
            out.setdefault(c[trials.CELL], []).append(c[trials.TRAINER])
    return out


def test_the_chosen_step_size_runs_on_the_fresh_seeds_after_its_search(tmp_path):
    s = sweep()
    d = Driver(s, tmp_path)
    d.run()
    got = confirmations(d.done)
    assert s.confirmation_seeds() == [3, 4]
    for cell in s.cells:
        runs = got[cell.name]
        assert sorted(t["seed"] for t in runs) == [3, 4]
        assert {(t["lr_d"], t["lr_g"]) for t in runs} == {winner(cell, kl)}
        # every tuning trial of the cell ended before its first confirmation started
        order = [c for c in d.done if c[trials.CELL] == cell.name]
        first = next(i for i, c in enumerate(order) if c[trials.STAGE] == trials.CONFIRM)
        assert first == cell.lrs.size() * 3
    # the studies never saw the confirmation seeds
    assert len(study(tmp_path, "stages/adam").trials) == 4
    assert len(d.done) == s.total_trials() == 8 * 3 + 2 * 2


def test_ties_go_to_the_smaller_lr_d_then_the_smaller_lr_g(tmp_path):
    def flat(lr_g: float, seed: int) -> float:
        return 1.0 + seed  # every step size scores 2.0

    s = sweep(sampler_seed=3)
    d = Driver(s, tmp_path, value=flat)
    d.run()
    got = confirmations(d.done)
    assert {(t["lr_d"], t["lr_g"]) for t in got["adam"]} == {(1e-4, 1e-4)}
    # nsgda: (lr 1e-3, ratio 1) has lr_d 1e-3; (1e-3, ratio 2) has 2e-3
    assert {(t["lr_d"], t["lr_g"]) for t in got["nsgda"]} == {(1e-3, 1e-3)}


def test_a_restart_in_the_confirmation_stage_keeps_the_choice_and_reruns_nothing(tmp_path):
    s = sweep()
    d = Driver(s, tmp_path)
    while not confirmations(d.done).get("adam"):  # until adam's first confirmation ended
        d.step()
    done_before = {
        (c[trials.CELL], c[trials.STUDY_TRIAL], c[trials.TRAINER]["seed"]) for c in d.done
    }
    # the driver dies; Tune recorded none of the live trials (the worst case)
    again = Driver(s, tmp_path)
    again.run()
    rerun = {(c[trials.CELL], c[trials.STUDY_TRIAL], c[trials.TRAINER]["seed"]) for c in again.done}
    assert not rerun & done_before, "a finished trial ran again"
    assert len(rerun) + len(done_before) == s.total_trials()
    events = [json.loads(x) for x in (tmp_path / ledger.LEDGER).read_text().splitlines()]
    chosen = [(e["cell"], e["number"]) for e in events if e["event"] == "choose"]
    assert sorted(c for c, _ in chosen) == ["adam", "nsgda"], chosen  # each cell chosen once
    got = confirmations(d.done + again.done)
    for cell in s.cells:
        assert sorted(t["seed"] for t in got[cell.name]) == [3, 4]
        assert {(t["lr_d"], t["lr_g"]) for t in got[cell.name]} == {winner(cell, kl)}


def test_a_restart_never_chooses_again_even_if_the_study_would_now_choose_otherwise(tmp_path):
    s = sweep(cells=[Cell("adam", StepSizes(grid=(1e-4, 1e-3)))])
    d = Driver(s, tmp_path)
    while not confirmations(d.done):
        d.step()
    first = confirmations(d.done)["adam"][0]
    # a later read of the study prefers the other step size: the choice must stand
    other = next(
        t for t in study(tmp_path, "stages/adam").trials if t.params["lr"] != first["lr_g"]
    )
    ev = {"event": "choose", "cell": "adam", "number": other.number}
    with open(tmp_path / ledger.LEDGER, "a") as f:  # a second, later choice is ignored
        f.write(json.dumps(ev) + "\n")
    again = Driver(s, tmp_path)
    again.run()
    assert {t["lr_g"] for t in confirmations(again.done)["adam"]} == {first["lr_g"]}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (dict(confirm_seeds=[2, 5]), "overlap the tuning seeds [0, 1, 2] in [2]"),
        (dict(confirm_seeds=-1), "a count must be >= 0"),
        (dict(confirm_seeds=[5, 5]), "must be distinct"),
        (dict(confirm_seeds=[5, -3]), "must be distinct integers >= 0"),
        (dict(confirm_seeds=2.5), "give a count"),
        (dict(confirm_seeds=True), "give a count"),
    ],
)
def test_bad_confirmation_seeds_are_refused(changes, words):
    with pytest.raises(SweepError, match=words.replace("[", r"\[").replace("]", r"\]")):
        sweep(**changes).validate()


def test_confirmation_seeds_follow_the_tuning_seeds_and_are_recorded():
    assert sweep(seeds=[0, 4, 2], confirm_seeds=3).confirmation_seeds() == [5, 6, 7]
    assert sweep(confirm_seeds=[10, 20]).confirmation_seeds() == [10, 20]
    assert sweep(confirm_seeds=0).total_trials() == 8 * 3
    assert sweep(confirm_seeds=[10, 20, 30]).total_trials() == 8 * 3 + 2 * 3
    new = record(sweep(confirm_seeds=0))
    old = {k: v for k, v in new.items() if k != "confirm_seeds"}  # sweep.json before the key
    assert differences(old, new) == []
    assert differences(old, record(sweep())) == ["confirm_seeds: [] -> [3, 4]"]
