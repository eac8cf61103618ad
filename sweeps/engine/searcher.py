"""A Tune searcher with one Optuna study per cell, each suggestion run once per seed.

Every cell (optimizer x dataset x variant) has its own study over ``lr`` (and the lr_D/lr_G
``ratio`` axis): Optuna's GridSampler over the log grid (the paper's protocol) or TPESampler over
a log-uniform range. A study's trial is dispatched to Tune as one trial per seed; when all its
seeds have ended the study is told the mean objective over seeds (a diverged or failed seed
counts as the objective's penalty). Cells are served round-robin, so all run concurrently in the
one Tune experiment.

Confirmation. Once every step size of a cell has been told (its search is done), the searcher
chooses the cell's step size: the lowest told value, ties broken by the smaller lr_D, then the
smaller lr_G (``analysis.main_table``'s rule). It writes the choice to the ledger, then
dispatches that step size once per confirmation seed (``Sweep.confirm_seeds``, disjoint from the
tuning seeds) as Tune trials of stage ``confirm``; their results are recorded but never told
to the study. A restart reads the choice back (or, where Tune already ran a confirmation trial
the ledger lacks, takes it from that trial), so a step size is never chosen twice.

Durability. With a local (or shared-mount) storage every study lives in an Optuna journal file
(or in the database of ``--optuna-storage``: ``sweeps.engine.studies``) and every suggestion
and seed result is appended to the ledger (``sweeps.engine.ledger``) before Tune sees it, so
the searcher's durable state is never behind Tune's experiment state. On restore the searcher
rebuilds itself from those files and reconciles with the trials Tune restored: a (cell, step
size, seed) that was suggested but that Tune never recorded is suggested again; one that Tune
has is never suggested twice. With a bucket storage the ledger (and, without a database, the
studies) is pickled into Tune's searcher checkpoint instead, and the same reconciliation runs
against Tune's experiment state (which Tune writes just before that checkpoint).

Early stopping (``Sweep.early_stopping``, off by default). The unit is a study trial: one step
size with all its tuning seeds. Each seed reports its objective at the trainer's evaluation
points (the ``step`` of each row; Tune calls ``on_trial_result`` for each row, and
``PruningScheduler`` forwards it first). At each point below the trainer's last step, once
*every* seed of the step size has reported it (the decision waits for all seeds at a rung; a
seed that diverged before that point counts as the objective's penalty there, one that ended
without diverging, by a trainer's stop rule, its final objective, as the study's value and the
tables count it), the study trial is told the penalised mean over seeds there
(``optuna.Trial.report``) and the study's Optuna pruner (``EarlyStopping.pruner``) decides
(``should_prune``). Each seed's report is in the ledger ("report") before it is used, and each
decision ("decide") before it is acted on, so a restart never reports a point twice and never
re-decides one; a pruned step size is recorded ("prune"), its trial ids written to
``pruned.json`` in the experiment directory (what ``analysis.collect`` reads), then told to
its study as PRUNED; ``PruningScheduler`` stops its running seeds at their next report (a seed
Tune holds pending, at its first) and its seeds not yet dispatched never are. A pruned step
size is never chosen; the confirmation stage trains the chosen one to the end (it is never
pruned). The one window left: a driver killed between Optuna's record of a point and the
ledger's decision asks the pruner again for that point on restart.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections import deque
from typing import Any

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from analysis import storage
from analysis.collect import PRUNED_RECORD
from sweeps.engine import ledger, studies, trials
from sweeps.engine.objectives import OBJECTIVES, score
from sweeps.engine.spec import Cell, EarlyStopping, Sweep
from trainers import experiments

OBJECTIVE = "objective"
FAULT_ENV = "GANSWEEP_TEST_KILL_AT"  # tests only: SIGKILL this process at a named moment

Key = tuple[str, int, int]  # (cell, study trial number, seed)


class CellSearcher(Searcher):
    """One Optuna study per cell; the study sees the mean objective over seeds.

    ``experiment`` is the Tune experiment directory (local path or URI) where the ledger and
    the study journal live; ``max_concurrent`` limits trials in flight (None: Tune's resources
    decide). The state is loaded lazily, on the first call from Tune, so that a restored
    searcher (from ``tuner.pkl``, with or without Tune's searcher checkpoint) always rebuilds
    itself from the durable files and Tune's restored trials. ``optuna_storage``: a database
    URL for the studies (``sweeps.engine.studies``; default the journal beside the ledger)."""

    optuna_storage: str | None = None  # a searcher pickled before the option restores with none

    def __init__(
        self,
        sweep: Sweep,
        experiment: str,
        max_concurrent: int | None = None,
        optuna_storage: str | None = None,
    ) -> None:
        super().__init__(metric=OBJECTIVE, mode="min")
        self.optuna_storage = optuna_storage
        self.sweep = sweep
        self.confirm = tuple(sweep.confirmation_seeds())
        self.experiment = experiment
        self.max_concurrent = max_concurrent
        self.objective = OBJECTIVES[sweep.metric]
        self._local = storage.local_dir(experiment)
        self._snapshot: dict[str, Any] | None = None  # Tune's checkpoint (bucket storage only)
        self._loaded = False

    @property
    def early_stopping(self) -> EarlyStopping:
        """The sweep's declaration (read from it, so a ``tuner.pkl`` pickled before early
        stopping existed, whose sweep lacks the field, restores with the default: none)."""
        return self.sweep.early_stopping

    # -- loading and reconciling ---------------------------------------------------------------

    def _load(self) -> None:
        """Rebuild studies, ledger, live trials and the queue; reconcile with Tune's trials."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._next_cell = 0
        self._steps = {c.name: self._trainer_steps(c) for c in self.sweep.cells}
        self._rungs = {c.name: self._rung_points(c) for c in self.sweep.cells}
        if self._local is not None:
            os.makedirs(self._local, exist_ok=True)
            self.ledger = ledger.Ledger(os.path.join(self._local, ledger.LEDGER))
            self.ledger.load()
        else:
            self.ledger = ledger.Ledger(None)
            if self._snapshot is not None:
                self.ledger.events = list(self._snapshot["events"])
        kept = studies.open_storage(self.optuna_storage, self._local)
        if kept is None and self._snapshot is not None and self._snapshot.get("studies"):
            self.studies = self._snapshot["studies"]
        else:
            kept = kept or optuna.storages.InMemoryStorage()
            self.studies = {c.name: self._study(c, kept) for c in self.sweep.cells}
        names = sorted(s.study_name for s in self.studies.values())
        studies.record(self.optuna_storage, self.experiment, names)
        self._reconcile(ledger.tune_trials(self.experiment), ledger.has_state(self.experiment))
        self._snapshot = None
        self._loaded = True  # only once whole: a load that raised is done again on the next call

    def _study(self, cell: Cell, storage: Any) -> optuna.Study:
        seed = self.sweep.sampler_seed
        if cell.lrs.searcher == "grid":
            space = {"lr": list(cell.lrs.grid), "ratio": list(cell.lrs.ratios)}
            sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(space, seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=cell.lrs.startup_trials()
            )
        return optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=self.early_stopping.pruner(self._steps.get(cell.name)),
            direction="minimize",
            study_name=f"{self.sweep.name}/{cell.name}",
            load_if_exists=True,
        )

    def _reconcile(self, tune: dict[str, ledger.TuneTrial], restored: bool) -> None:
        """Derive the live trials, the results and the queue from the ledger, the studies and
        the trials Tune restored (``tune``; ``restored``: Tune restores an experiment state)."""
        self._dispatched: dict[str, Key] = {}
        self._results: dict[Key, tuple[float, bool]] = {}
        self._chosen: dict[str, int] = {}  # cell -> the study trial its confirmation runs
        # early stopping: each tuning seed's objective by step, each decision, the pruned
        self._reports: dict[Key, dict[int, float | None]] = {}
        self._decided: dict[tuple[str, int], dict[int, bool]] = {}
        self._pruned: dict[tuple[str, int], int] = {}  # (cell, number) -> the step it stopped
        for ev in self.ledger.events:
            if ev["event"] == "choose":
                self._chosen.setdefault(ev["cell"], int(ev["number"]))
                continue
            if ev["event"] == "decide":
                where = (ev["cell"], int(ev["number"]))
                self._decided.setdefault(where, {}).setdefault(int(ev["step"]), bool(ev["prune"]))
                continue
            if ev["event"] == "prune":
                self._pruned.setdefault((ev["cell"], int(ev["number"])), int(ev["step"]))
                continue
            key = (ev["cell"], int(ev["number"]), int(ev["seed"]))
            if ev["event"] == "dispatch":
                self._dispatched[ev["trial_id"]] = key
            elif ev["event"] == "result":
                self._results.setdefault(key, (float(ev["value"]), bool(ev["diverged"])))
            elif ev["event"] == "report":
                value = None if ev["diverged"] else float(ev["value"])
                self._reports.setdefault(key, {}).setdefault(int(ev["step"]), value)
        for t in tune.values():  # Tune's state newer than a bucket-stored snapshot
            key = trials.key(t.config)
            if key is not None and t.trial_id not in self._dispatched:
                self._ensure_asked(key, trials.trainer_config(t.config))
                if key[2] in self.confirm and key[0] not in self._chosen:
                    self._record_choice(key[0], key[1])  # Tune ran it: that was the choice
                self._record_dispatch(t.trial_id, key)
            key = self._dispatched.get(t.trial_id)
            if key and key not in self._results and t.status == "TERMINATED" and t.last_result:
                self._record_result(key, t.last_result, error=False)  # ended, result unseen
        # a trial that ended after Tune's last experiment state is unknown to the restored Tune:
        # its result is in the ledger; if its rows (result.json, synced from the driver) did
        # not reach storage, they were lost with the driver and it runs again; its recorded
        # result stands (same seed, same value) and the study is not told twice
        known = {k for trial_id, k in self._dispatched.items() if trial_id in tune}
        self._lost = set()
        if restored:
            unknown = {k for k in self._dispatched.values() if k in self._results} - known
            # Tune copies every trial's files to storage in place at each sync, so a kill can
            # also empty the rows of a trial it recorded as ended long before
            ended = {
                k
                for trial_id, k in self._dispatched.items()
                if k in self._results
                and trial_id in tune
                and tune[trial_id].status == "TERMINATED"
                and (k[2] in self.confirm or k[:2] not in self._pruned)  # a pruned seed stopped
            }
            self._lost = {
                k
                for k in unknown | ended
                if not any(
                    ledger.has_final_rows(self.experiment, trial_id)
                    for trial_id, kk in self._dispatched.items()
                    if kk == k
                )
            }
        self._live: dict[str, Key] = {}
        live_keys = set()
        for trial_id, key in self._dispatched.items():
            if key not in self._results and trial_id in tune and key not in live_keys:
                self._live[trial_id] = key
                live_keys.add(key)
        self._queue: deque[tuple[Key, dict[str, float]]] = deque()
        self._asked = {}
        dispatched_keys = set(self._dispatched.values())
        requeued = []
        for cell in self.sweep.cells:
            study = self.studies[cell.name]
            asked = study.get_trials(deepcopy=False)
            self._asked[cell.name] = len(asked)
            requeued += self._queue_lost(cell)
            if cell.name in self._chosen:  # its search is done: only confirmation seeds left
                requeued += self._queue_confirmation(cell, dispatched_keys)
                continue
            for frozen in sorted(asked, key=lambda t: t.number):
                if frozen.state != optuna.trial.TrialState.RUNNING:
                    continue
                if (cell.name, frozen.number) in self._pruned:  # recorded, not yet told
                    self._tell_pruned(cell.name, frozen.number)
                    continue
                self._advance(cell.name, frozen.number)  # points the ledger has, Optuna lacks
                if (cell.name, frozen.number) in self._pruned:
                    continue
                params = self._params(cell, optuna.Trial(study, frozen._trial_id))
                for seed in self.sweep.seeds:
                    key = (cell.name, frozen.number, seed)
                    if self._has_rows(key) or key in live_keys:
                        continue
                    if key in dispatched_keys:
                        requeued.append(key)
                    self._queue.append((key, params))
                self._tell_if_done(cell.name, frozen.number)  # chooses when it tells the last
            if cell.name not in self._chosen:  # all told before the driver stopped
                self._choose_if_done(cell)
        if self._pruned:
            self._write_pruned()
        if requeued:
            print(
                f"gansweep: {len(requeued)} trial(s) were suggested, or ended, after Tune's last "
                "record of them before the driver stopped (their rows are lost); running them "
                "again: " + ", ".join(f"{c} #{n} seed {s}" for c, n, s in requeued),
                file=sys.stderr,
            )

    def _queue_lost(self, cell: Cell) -> list[Key]:
        """Queue the lost tuning seeds of the cell's told study trials (a running study trial
        queues its own)."""
        out = []
        for frozen in self.studies[cell.name].get_trials(deepcopy=False):
            if frozen.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED):
                continue  # a pruned step size's seeds never run again
            params = {"lr": float(frozen.params["lr"]), "ratio": float(frozen.params["ratio"])}
            for seed in self.sweep.seeds:
                key = (cell.name, frozen.number, seed)
                if key in self._lost and key not in self._live.values():
                    self._queue.append((key, params))
                    out.append(key)
        return out

    def _has_rows(self, key: Key) -> bool:
        """The seed's trial ended and Tune holds it (so does storage, its rows)."""
        return key in self._results and key not in self._lost

    def _ensure_asked(self, key: Key, config: dict[str, Any]) -> None:
        """Make the study hold trial ``key[1]`` (asked after a bucket snapshot): Optuna's grid
        gives trial n the n-th grid point, TPE gets the trial's own step size enqueued."""
        cell = next(c for c in self.sweep.cells if c.name == key[0])
        study = self.studies[cell.name]
        while len(study.get_trials(deepcopy=False)) <= key[1]:
            if cell.lrs.searcher == "tpe":
                ratio = config["lr_d"] / config["lr_g"]
                study.enqueue_trial({"lr": config["lr_g"], "ratio": ratio})
            self._params(cell, study.ask())

    # -- Tune's Searcher interface -------------------------------------------------------------

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec
    ) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._loaded:
            self._load()
        if self.max_concurrent is not None and self._running() >= self.max_concurrent:
            return None
        if not self._queue:
            self._ask_next()
        if not self._queue:
            return Searcher.FINISHED if self._exhausted() else None
        key, params = self._queue.popleft()
        cell_name, number, seed = key
        cell = next(c for c in self.sweep.cells if c.name == cell_name)
        raw = self.sweep.trial_config(cell, params["lr"], params["ratio"], seed)
        stage = trials.CONFIRM if seed in self.confirm else trials.TUNE
        resolved = experiments.resolve_config(raw)
        if stage == trials.TUNE and self._rungs.get(cell_name):  # a seed paused at a rung
            resolved["checkpoint_at"] = list(self._rungs[cell_name])  # resumes from there
        config = trials.tune_config(cell_name, number, resolved, stage)
        self._record_dispatch(trial_id, key)
        self._live[trial_id] = key
        _fault("first_suggest", 0)
        if _fault_armed("suggest") and ledger.has_state(self.experiment):
            _fault("suggest", 0)
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if not self._loaded:
            self._load()
        key = self._live.pop(trial_id, None)
        self._lost.discard(key)
        if key is None or key in self._results:
            return
        self._record_result(key, result, error)
        if key[2] in self.confirm:
            _fault("confirm_result", sum(k[2] in self.confirm for k in self._results))
        else:
            self._advance(key[0], key[1])  # an ended seed counts at the later points
            self._tell_if_done(key[0], key[1])

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Early stopping: record a tuning seed's objective at its ``step`` (once per step: a
        restored trial reports again from its checkpoint) and decide the points every seed of
        its step size has reached."""
        if not self.early_stopping.enabled:
            return
        if not self._loaded:
            self._load()
        key = self._live.get(trial_id) or self._dispatched.get(trial_id)
        if key is None or key[2] in self.confirm or result.get("step") is None:
            return
        step = int(result["step"])
        seen = self._reports.setdefault(key, {})
        if step in seen or key in self._results:
            return
        value = self.objective.of(result, self.sweep.penalty)
        diverged = bool(result.get("diverged"))
        seen[step] = None if diverged else value
        cell, number, seed = key
        self.ledger.append(
            {
                "event": "report",
                "cell": cell,
                "number": number,
                "seed": seed,
                "step": step,
                "value": value,
                "diverged": diverged,
            }
        )
        self._advance(cell, number)

    def waits(self, trial_id: str) -> bool:
        """Synchronous halving: whether the Tune trial is a tuning seed that reported a rung of
        its cell its step size has no decision at yet (it pauses there until there is one)."""
        if not self._loaded:
            self._load()
        key = self._dispatched.get(trial_id)
        if key is None or key[2] in self.confirm or key in self._results:
            return False
        return self._waits(key)

    def _waits(self, key: Key) -> bool:
        rungs = self._rungs.get(key[0])
        seen = self._reports.get(key)
        if not rungs or not seen or key[:2] in self._pruned:
            return False
        last, decided = max(seen), self._decided.get(key[:2], {})
        return seen[last] is not None and any(r <= last and r not in decided for r in rungs)

    def _running(self) -> int:
        """Live trials, less those paused at a rung (they hold no CPU)."""
        return sum(not self._waits(key) for key in self._live.values())

    def is_pruned(self, trial_id: str) -> bool:
        """Whether the Tune trial is a tuning seed of a pruned step size (to be stopped)."""
        if not self._loaded:
            self._load()
        key = self._dispatched.get(trial_id)
        return key is not None and key[2] not in self.confirm and key[:2] in self._pruned

    # -- internals ---------------------------------------------------------------------------

    def _record_dispatch(self, trial_id: str, key: Key) -> None:
        self._dispatched[trial_id] = key
        cell, number, seed = key
        self.ledger.append(
            {
                "event": "dispatch",
                "trial_id": trial_id,
                "cell": cell,
                "number": number,
                "seed": seed,
            }
        )

    def _record_result(self, key: Key, result: dict[str, Any] | None, error: bool) -> None:
        value = self.objective.of(None if error else result, self.sweep.penalty)
        diverged = bool(error or not result or result.get("diverged"))
        self._results[key] = (value, diverged)
        cell, number, seed = key
        self.ledger.append(
            {
                "event": "result",
                "cell": cell,
                "number": number,
                "seed": seed,
                "value": value,
                "diverged": diverged,
            }
        )

    def _tell_if_done(self, cell_name: str, number: int) -> None:
        """Tell the study the mean over seeds once every seed of trial ``number`` (a running
        study trial) has ended."""
        keys = [(cell_name, number, s) for s in self.sweep.seeds]
        if not all(k in self._results for k in keys) or (cell_name, number) in self._pruned:
            return
        study = self.studies[cell_name]
        values = [None if self._results[k][1] else self._results[k][0] for k in keys]
        try:
            study.tell(number, score(values, self.sweep.metric, self.sweep.penalty))
        except RuntimeError as e:  # GridSampler calls study.stop() once the grid is done;
            if "Study.stop" not in str(e):  # under ask/tell that raises after the value is stored
                raise
        cell = next(c for c in self.sweep.cells if c.name == cell_name)
        if cell_name not in self._chosen:
            self._choose_if_done(cell)

    # -- early stopping ----------------------------------------------------------------------

    def _trainer_steps(self, cell: Cell) -> int | None:
        """The trainer's ``steps`` of the cell's trials (the last point is never pruned)."""
        lr = cell.lrs.grid[0] if cell.lrs.grid else cell.lrs.low
        config = self.sweep.trial_config(cell, lr, cell.lrs.ratios[0], self.sweep.seeds[0])
        steps = experiments.resolve_config(config).get("steps")
        return int(steps) if isinstance(steps, (int, float)) else None

    def _rung_points(self, cell: Cell) -> tuple[int, ...]:
        """Synchronous halving's decision points of the cell (none otherwise, or with the
        trainer's steps not fixed)."""
        if not self.early_stopping.synchronous:
            return ()
        lr = cell.lrs.grid[0] if cell.lrs.grid else cell.lrs.low
        config = self.sweep.trial_config(cell, lr, cell.lrs.ratios[0], self.sweep.seeds[0])
        resolved = experiments.resolve_config(config)
        steps, every = resolved.get("steps"), resolved.get("eval_every")
        if not isinstance(steps, int) or not isinstance(every, int):
            return ()
        return self.early_stopping.rungs(steps, every)

    def _advance(self, cell_name: str, number: int) -> None:
        """Report to study trial ``number`` each point, in order, that every one of its seeds
        has reached (a seed that ended before a point counts as its final value there, the
        penalty if it diverged) and that the study lacks, and let the pruner decide each; stop
        at the first point a seed has not reached yet, or at a prune."""
        if self.early_stopping.synchronous:
            self._advance_rungs(cell_name)
            return
        if not self.early_stopping.enabled or (cell_name, number) in self._pruned:
            return
        frozen = self.studies[cell_name].get_trials(deepcopy=False)[number]
        if frozen.state != optuna.trial.TrialState.RUNNING:
            return
        decided = self._decided.setdefault((cell_name, number), {})
        for step in sorted(frozen.intermediate_values):  # told Optuna, decision not recorded
            if step not in decided:  # (a driver killed in between): ask the pruner again
                self._decide(cell_name, number, step, None)
                if (cell_name, number) in self._pruned:
                    return
        keys = [(cell_name, number, s) for s in self.sweep.seeds]
        last = self._steps.get(cell_name)
        # the points: where a seed reported a value (a diverged row only ends its seed)
        points = sorted(
            {p for k in keys for p, v in self._reports.get(k, {}).items() if v is not None}
        )
        for step in points:
            if step in decided or (last is not None and step >= last):
                continue
            values: list[float | None] = []
            for k in keys:
                seen = self._reports.get(k, {})
                if step in seen:
                    values.append(seen[step])
                elif max(seen, default=-1) > step:
                    break  # a seed went past it without reporting it: not a common point
                elif k in self._results:
                    values.append(self._final(k))  # ended before this point
                else:
                    return  # the decision waits for every seed at this point
            if len(values) < len(keys):
                continue
            mean = score(values, self.sweep.metric, self.sweep.penalty)
            self._decide(cell_name, number, step, mean)
            if (cell_name, number) in self._pruned:
                return

    def _advance_rungs(self, cell_name: str) -> None:
        """Synchronous halving: decide each rung of the cell, in order, once every step size
        of the cell still in the search there has its mean at it (every seed reported it, or
        ended before it: its final value, or the penalty); stop at the first rung still filling."""
        cell = next(c for c in self.sweep.cells if c.name == cell_name)
        if self._asked.get(cell_name, 0) < cell.lrs.size():
            return  # a step size not yet asked will reach every rung too
        numbers = [t.number for t in self.studies[cell_name].get_trials(deepcopy=False)]
        for step in self._rungs[cell_name]:
            alive = [n for n in numbers if self._pruned.get((cell_name, n), step) >= step]
            if all(step in self._decided.get((cell_name, n), {}) for n in alive):
                continue
            means = {n: self._mean_at(cell_name, n, step) for n in alive}
            if any(m is _FILLING for m in means.values()):
                return
            prunes = self._rung_prunes(cell_name, means)
            for n in alive:
                if step not in self._decided.get((cell_name, n), {}):
                    self._decide(cell_name, n, step, means[n], prunes[n])

    def _mean_at(self, cell_name: str, number: int, step: int) -> Any:
        """The penalised mean over the step size's seeds at ``step`` (a seed that ended before
        it counts as its final value there, the penalty if it diverged; one past it without a
        report at it by its last report before), or ``_FILLING`` while a seed has yet to reach
        it."""
        values: list[float | None] = []
        for seed in self.sweep.seeds:
            key = (cell_name, number, seed)
            seen = self._reports.get(key, {})
            if step in seen:
                values.append(seen[step])
            elif max(seen, default=-1) > step:
                values.append(seen[max(p for p in seen if p < step)] if min(seen) < step else None)
            elif key in self._results:
                values.append(self._final(key))
            else:
                return _FILLING
        return score(values, self.sweep.metric, self.sweep.penalty)

    def _final(self, key: Key) -> float | None:
        """What a seed that ended before a point counts there: its final objective, as the
        study's value and the tables count it (a trainer's stop rule ends a run that did not
        diverge), or None (the penalty) for a diverged or errored seed."""
        value, diverged = self._results[key]
        return None if diverged else value

    def _rung_prunes(self, cell_name: str, means: dict[int, Any]) -> dict[int, bool]:
        """Which step sizes of a full rung Optuna's ``SuccessiveHalvingPruner`` prunes, each
        seeing every other one's value there (``rung_prunes``); ties in the mean broken as the
        tables break them (the smaller lr_D, then lr_G), so a rung of equal means still halves."""
        frozen = self.studies[cell_name].get_trials(deepcopy=False)
        order = sorted(means, key=lambda n: (means[n], *_step_size(frozen[n].params)))
        return rung_prunes({n: order.index(n) for n in means}, self.early_stopping)

    def _decide(
        self, cell_name: str, number: int, step: int, mean: float | None, prune: bool | None = None
    ) -> None:
        """Report ``mean`` at ``step`` (None: already reported) and record the pruner's answer,
        or ``prune`` where the rung was decided as a whole (a prune: recorded, written, told)."""
        study = self.studies[cell_name]
        frozen = study.get_trials(deepcopy=False)[number]
        trial = optuna.Trial(study, frozen._trial_id)
        running = frozen.state == optuna.trial.TrialState.RUNNING
        if mean is not None and running and step not in frozen.intermediate_values:
            trial.report(mean, step)
        if prune is None:
            prune = bool(trial.should_prune())
        prune = prune and running  # a step size whose seeds all ended is no longer stopped
        self._decided.setdefault((cell_name, number), {})[step] = prune
        self.ledger.append(
            {
                "event": "decide",
                "cell": cell_name,
                "number": number,
                "step": step,
                "value": mean if mean is not None else frozen.intermediate_values.get(step),
                "prune": prune,
            }
        )
        if prune:
            self._pruned[(cell_name, number)] = step
            self.ledger.append(
                {"event": "prune", "cell": cell_name, "number": number, "step": step}
            )
            self._write_pruned()
            _fault("prune", len(self._pruned))  # recorded, not yet told nor stopped
            self._tell_pruned(cell_name, number)

    def _tell_pruned(self, cell_name: str, number: int) -> None:
        """Tell the study its trial ``number`` was pruned (once); drop its seeds not yet
        dispatched."""
        study = self.studies[cell_name]
        running = study.get_trials(deepcopy=False)[number].state == optuna.trial.TrialState.RUNNING
        try:
            if running:
                study.tell(number, state=optuna.trial.TrialState.PRUNED)
        except RuntimeError as e:  # GridSampler's study.stop(), as in _tell_if_done
            if "Study.stop" not in str(e):
                raise
        self._queue = deque(item for item in self._queue if item[0][:2] != (cell_name, number))
        if cell_name not in self._chosen:
            self._choose_if_done(next(c for c in self.sweep.cells if c.name == cell_name))

    def pruned_trials(self) -> list[str]:
        """The Tune trial ids of the tuning seeds of pruned step sizes."""
        return sorted(
            trial_id
            for trial_id, key in self._dispatched.items()
            if key[2] not in self.confirm and key[:2] in self._pruned
        )

    def _write_pruned(self) -> None:
        """``pruned.json`` beside the trials: their ids and where each step size stopped."""
        import json

        data = {
            "trial_ids": self.pruned_trials(),
            "step_sizes": [
                {"cell": c, "number": n, "step": s} for (c, n), s in sorted(self._pruned.items())
            ],
        }
        storage.write_text(self.experiment, PRUNED_RECORD, json.dumps(data, indent=1) + "\n")

    # -- confirmation ------------------------------------------------------------------------

    def _choose_if_done(self, cell: Cell) -> None:
        """Once the cell's search is done, choose its step size and queue its confirmation
        seeds (nothing without confirmation seeds)."""
        if not self.confirm or self._asked[cell.name] < cell.lrs.size():
            return
        told = self.studies[cell.name].get_trials(deepcopy=False)
        ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if len(told) < cell.lrs.size() or any(t.state not in ended for t in told):
            return
        complete = [t for t in told if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:  # every step size pruned (a median pruner can): nothing to confirm
            return
        best = min(complete, key=lambda t: (t.value, *_step_size(t.params)))
        self._record_choice(cell.name, best.number)
        self._queue_confirmation(cell, set())

    def _record_choice(self, cell_name: str, number: int) -> None:
        self._chosen[cell_name] = number
        self.ledger.append({"event": "choose", "cell": cell_name, "number": number})

    def _queue_confirmation(self, cell: Cell, dispatched_keys: set[Key]) -> list[Key]:
        """Queue the chosen step size's confirmation seeds that have no result and are not
        running; returns those that were dispatched before (Tune lost them)."""
        number = self._chosen[cell.name]
        frozen = self.studies[cell.name].get_trials(deepcopy=False)[number]
        params = {"lr": float(frozen.params["lr"]), "ratio": float(frozen.params["ratio"])}
        requeued = []
        for seed in self.confirm:
            key = (cell.name, number, seed)
            if self._has_rows(key) or key in self._live.values():
                continue
            if key in dispatched_keys:
                requeued.append(key)
            self._queue.append((key, params))
        return requeued

    def _ask_next(self) -> None:
        """Ask the next cell (round-robin) that has step sizes left for one more study trial."""
        cells = self.sweep.cells
        for k in range(len(cells)):
            cell = cells[(self._next_cell + k) % len(cells)]
            if self._asked[cell.name] >= cell.lrs.size():
                continue
            self._next_cell = (self._next_cell + k + 1) % len(cells)
            trial = self.studies[cell.name].ask()
            params = self._params(cell, trial)
            self._asked[cell.name] += 1
            for seed in self.sweep.seeds:
                self._queue.append(((cell.name, trial.number, seed), params))
            return

    @staticmethod
    def _params(cell: Cell, trial: optuna.Trial) -> dict[str, float]:
        lrs = cell.lrs
        if lrs.searcher == "grid":
            lr = trial.suggest_float("lr", min(lrs.grid), max(lrs.grid), log=True)
            ratio = trial.suggest_float("ratio", min(lrs.ratios), max(lrs.ratios), log=True)
        else:
            lr = trial.suggest_float("lr", lrs.low, lrs.high, log=True)
            ratio = float(trial.suggest_categorical("ratio", list(lrs.ratios)))
        return {"lr": lr, "ratio": ratio}

    def _exhausted(self) -> bool:
        """Every step size asked and, with confirmation seeds, every cell's choice made (its
        confirmation queued): until then a pending search may still add trials."""
        asked = all(self._asked[c.name] >= c.lrs.size() for c in self.sweep.cells)
        return asked and (not self.confirm or len(self._chosen) == len(self.sweep.cells))

    # -- state for Tuner.restore -------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Pickled into ``tuner.pkl`` and Tune's checkpoints: the declaration, never the live
        state (rebuilt from the durable files, or from the snapshot on a bucket)."""
        keep = (
            "sweep",
            "confirm",
            "experiment",
            "max_concurrent",
            "objective",
            "_local",
        )
        state = {k: self.__dict__[k] for k in keep}
        state["optuna_storage"] = self.optuna_storage
        state.update(_metric=self._metric, _mode=self._mode, _snapshot=None, _loaded=False)
        return state

    def save(self, checkpoint_path: str) -> None:
        snapshot = None
        if self._local is None and self._loaded:  # a database keeps its studies itself
            kept = self.studies if self.optuna_storage is None else None
            snapshot = {"studies": kept, "events": self.ledger.events}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(snapshot, f)
        _fault("searcher_save", 0)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.restore_snapshot(pickle.load(f))

    def restore_snapshot(self, snapshot: dict[str, Any] | None) -> None:
        """Take what ``save`` wrote (None: nothing, or nothing readable): rebuild on next use."""
        self._snapshot = snapshot if self._local is None and isinstance(snapshot, dict) else None
        self._loaded = False


_FILLING = object()  # a rung a seed has yet to reach


def rung_prunes(ranks: dict[int, int], stopping: EarlyStopping) -> dict[int, bool]:
    """Synchronous successive halving's decisions at one rung, by Optuna's own pruner: for each
    step size (its rank at the rung, 0 the best), a ``SuccessiveHalvingPruner`` study of the
    rung where every other step size reported first, so each decision sees the whole rung; it
    keeps the best ``max(n // reduction_factor, 1)`` of the ``n``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per decision: no log line
    out = {}
    for number in ranks:
        study = optuna.create_study(
            direction="minimize",
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=stopping.reduction_factor
            ),
        )
        for other in [*(m for m in ranks if m != number), number]:
            trial = study.ask()
            trial.report(float(ranks[other]), 1)
            prune = trial.should_prune()
        out[number] = bool(prune)
    return out


def _step_size(params: dict[str, Any]) -> tuple[float, float]:
    """(lr_d, lr_g) of a study trial's params, as the trial config computes them."""
    lr = float(params["lr"])
    return lr * float(params["ratio"]), lr


def _fault_armed(point: str) -> bool:
    return os.environ.get(FAULT_ENV, "").partition(":")[0] == point


def _fault(point: str, count: int) -> None:
    """Tests only: SIGKILL this process at a named moment. ``GANSWEEP_TEST_KILL_AT=first_suggest``:
    at the very first suggestion (Tune has written no experiment state yet); ``suggest``:
    right after the first suggestion made once Tune has an experiment state (the suggestion is
    in the ledger, Tune has not recorded its trial); ``searcher_save``: right after Tune's
    checkpoint of the searcher; ``collect:N``: in the end-of-sweep collection (driver.py);
    ``prune:N``: right after the N-th pruned step size is in the ledger and ``pruned.json``,
    before its study is told and its seeds stopped."""
    name, _, n = os.environ.get(FAULT_ENV, "").partition(":")
    if name == point and (not n or int(n) == count):
        import signal

        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class PruningScheduler(FIFOScheduler):
    """Tune's FIFO scheduler that stops the seeds of step sizes the searcher pruned.

    It holds the ``CellSearcher`` itself (both live in the driver, and ``tuner.pkl`` pickles
    them together, so a restored Tuner restores the link). Each result goes to the searcher
    first (Tune calls the scheduler before the searcher, and the searcher records a step only
    once), so the report that prunes a step size also stops the seed that made it; its other
    running seeds stop at their next report."""

    def __init__(self, searcher: CellSearcher) -> None:
        super().__init__()
        self.searcher = searcher

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self.searcher.on_trial_result(trial.trial_id, result)
        if self.searcher.is_pruned(trial.trial_id):
            return TrialScheduler.STOP
        if self.searcher.waits(trial.trial_id):  # synchronous halving: the rung is filling
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """A pending trial first, else a paused seed whose rung is decided (promoted). The
        paused seeds of a step size its rung pruned are stopped first (their rows are in this
        driver). A pending one (restored by ``--resume``: its rows may have died with the
        driver) runs to its first report and stops there, as without synchronous halving."""
        trials = list(tune_controller.get_trials())
        for trial in trials:
            if trial.status == "PAUSED" and self.searcher.is_pruned(trial.trial_id):
                tune_controller.stop_trial(trial)
        for trial in trials:
            if trial.status == "PENDING":
                return trial
        for trial in trials:
            if trial.status == "PAUSED" and not self.searcher.waits(trial.trial_id):
                return trial
        return None
