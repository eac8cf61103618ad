"""Checks before a sweep starts: each names the bad value and what is allowed (``SweepError``,
exit code 2), and none writes a file."""

from __future__ import annotations

import json
import sys
from typing import Any

from analysis import storage
from sweeps.engine import ledger
from sweeps.engine.spec import Sweep, SweepError, differences, record

SWEEP_RECORD = "sweep.json"
DATA_CHECK_TIMEOUT_S = 600.0  # a cluster's data check waits this long for a worker node


def check_options(max_concurrent: int | None, num_cpus: int | None = None) -> None:
    for name, value in (("max_concurrent", max_concurrent), ("num_cpus", num_cpus)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise SweepError(f"{name} {value!r}: must be an integer >= 1")


def check_storage(root: str) -> None:
    """Refuse a storage of an unknown URI scheme, or a local one that is (or lies under) a
    regular file."""
    problem = storage.directory_problem(root)
    if problem is not None:
        raise SweepError(f"--storage {problem}: give a directory or a bucket URI")


def check_place(sweep: Sweep, root: str, resume: bool) -> tuple[bool, bool]:
    """Whether the experiment directory exists and whether Tune can restore it; refuses a
    resume of nothing, a fresh start over an existing sweep and a resume of a changed one."""
    path = storage.join(root, sweep.name)
    exists = storage.exists(path)
    if resume and not exists:
        raise SweepError(f"--resume: there is no sweep {sweep.name!r} under {root}")
    if exists and not resume:
        raise SweepError(
            f"{path} already exists: pass --resume to continue it, or --storage for a fresh place"
        )
    restore = exists and ledger.has_state(path)
    if restore:
        check_unchanged(sweep, path)
    return exists, restore


def check_unchanged(sweep: Sweep, path: str) -> None:
    """Refuse to resume a sweep whose declaration differs from the one it was started with
    (``sweep.json``): the stored trials would silently answer another question."""
    stored = storage.read_text(path, SWEEP_RECORD)
    if stored is None:
        print(
            f"warning: {path} has no {SWEEP_RECORD} (started by an older gansweep); "
            "cannot check that the sweep is unchanged",
            file=sys.stderr,
        )
        return
    diff = differences(json.loads(stored), record(sweep))
    if diff:
        raise SweepError(
            f"--resume: the sweep {sweep.name!r} differs from the one stored in {path}: "
            + "; ".join(diff)
            + ". Resume it unchanged, or run the changed sweep under another --storage or name"
        )


def check_data(sweep: Sweep) -> None:
    """Refuse a sweep whose data are missing on this machine (a local sweep's trials read them
    here), naming the cell, the path looked at and how to prepare the data."""
    from trainers import experiments

    for name, cfg in sweep.data_configs().items():
        try:
            experiments.check_data(cfg)
        except FileNotFoundError as e:
            raise SweepError(f"cell {name!r}: {e}") from None


def workers_that_fit(node: dict[str, float], cpu: float, gpu: float) -> int:
    """How many workers of (cpu, gpu) one node's total resources hold."""
    fits = int(node.get("CPU", 0) // cpu + 1e-9)
    if gpu > 0:
        fits = min(fits, int(node.get("GPU", 0) // gpu + 1e-9))
    return fits


def check_resources(sweep: Sweep, remote: bool) -> None:
    """Refuse trials that the cluster can never hold: all ``workers`` of one trial at once,
    each on one node (locally; warn on a cluster that may autoscale)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    res = sweep.resources
    if sum(workers_that_fit(r, res.cpu, res.gpu) for r in nodes) >= res.workers:
        return
    need = f"cpu={res.cpu:g}, gpu={res.gpu:g}"
    if res.workers > 1:
        need = f"{res.workers} workers of {need} each"
    have = "; ".join(f"cpu={r.get('CPU', 0):g}, gpu={r.get('GPU', 0):g}" for r in nodes)
    message = f"a trial needs {need} but the cluster cannot hold that (nodes: {have})"
    if remote:
        print(
            f"warning: {message}; trials wait until the autoscaler adds such a node",
            file=sys.stderr,
        )
    else:
        raise SweepError(message)


def check_data_on_cluster(sweep: Sweep, timeout_s: float = DATA_CHECK_TIMEOUT_S) -> None:
    """``check_data`` run as a Ray task with a trial's resources, so it runs where trials run
    (the data live on the workers, not necessarily on the head). If no such node comes up within
    ``timeout_s`` (an autoscaler still starting one) warn and go on: trials report it then."""
    import ray

    from trainers import experiments

    @ray.remote(max_retries=0)
    def check(cfg: dict[str, Any]) -> str | None:
        try:
            experiments.check_data(cfg)
        except FileNotFoundError as e:
            return f"{e} (on node {ray.util.get_node_ip_address()})"
        return None

    res = sweep.resources
    task = check.options(num_cpus=res.cpu, num_gpus=res.gpu)
    pending = {task.remote(cfg): name for name, cfg in sweep.data_configs().items()}
    done, late = ray.wait(list(pending), num_returns=len(pending), timeout=min(5.0, timeout_s))
    if late:
        print(
            f"checking the data on a worker with cpu={res.cpu:g}, gpu={res.gpu:g} (waiting for "
            f"one, up to {timeout_s:g} s)...",
            file=sys.stderr,
        )
        done, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
    for ref in done:
        try:
            problem = ray.get(ref)
        except ray.exceptions.RayError as e:  # e.g. the project is not installed on the node
            problem = f"the data check failed on a worker: {e}"
        if problem is not None:
            raise SweepError(f"cell {pending[ref]!r}: {problem}")
    if late:
        for ref in late:
            ray.cancel(ref, force=True)
        print(
            f"warning: the data check found no free worker in {timeout_s:g} s; trials will "
            "report missing data themselves",
            file=sys.stderr,
        )
