"""``run``: a declared ``Sweep`` on Ray Tune, from a script, a notebook or ``main``.

Everything is validated before Ray starts or a file is written; a bad value gives an outcome
with code 2 and the reason (``Outcome.error``, also printed).
"""

from __future__ import annotations

import os
import sys
import time

from analysis import storage
from sweeps.engine import address as addresses
from sweeps.engine import dashboard, noise, preflight, studies, tuner
from sweeps.engine.spec import Sweep, SweepError
from sweeps.engine.tuner import EXIT_BAD_INPUT, Outcome

DEFAULT_STORAGE = "runs"


def run(
    sweep: Sweep,
    *,
    storage: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    resume_hint: str | None = None,
    optuna_storage: str | None = None,
    dashboard_port: int | None = None,
) -> Outcome:
    """Validate ``sweep``, start (or with ``resume`` continue) its Tune experiment under
    ``storage`` (a directory or URI; default ``runs/``) on the Ray cluster at ``address``
    (default: a local Ray with ``num_cpus``), and print and save the comparison table.

    ``max_concurrent`` limits trials in flight (default: as many as the resources hold).
    ``resume_hint`` is what an interrupted or incomplete sweep prints as the way to resume
    (``main`` gives the command line). Code 0: complete; 1: trials missing (the table is
    partial and not saved); 2: bad input, nothing started; 130: interrupted.

    ``optuna_storage``: a database URL for the cells' Optuna studies (default: a journal in the
    experiment directory; ``sweeps.engine.studies``). ``dashboard_port``: start a local Ray
    with its dashboard on 127.0.0.1 at that port (``sweeps.engine.dashboard``)."""
    root = storage_root(storage)
    hint = resume_hint or f"run(<the same sweep {sweep.name!r}>, storage={root!r}, resume=True)"
    try:
        check_options(root, address, max_concurrent, num_cpus, optuna_storage, dashboard_port)
        sweep.validate()
        if address is None:
            preflight.check_data(sweep)
        exists, restore = preflight.check_place(sweep, root, resume)
        if restore:
            studies.check_resume(experiment_path(root, sweep.name), optuna_storage)
        addresses.check(address)
    except SweepError as e:
        return _refused(e)
    studies.bucket_note(root, optuna_storage)
    try:
        start_ray(address, num_cpus, dashboard_port)
        preflight.check_resources(sweep, remote=address is not None)
        if address is not None:
            preflight.check_data_on_cluster(sweep)
    except SweepError as e:
        return _refused(e)
    if exists and not restore:
        set_aside(root, sweep.name)
    return tuner.fit(sweep, root, restore, max_concurrent, hint, optuna_storage=optuna_storage)


def check_options(
    root: str,
    address: str | None = None,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    optuna_storage: str | None = None,
    dashboard_port: int | None = None,
) -> None:
    """``run``'s checks of its options alone (no sweep, no network): ``SweepError`` naming a
    bad one. ``address`` is checked for its syntax here; ``run`` then probes it."""
    preflight.check_options(max_concurrent, num_cpus)
    if address is not None:
        addresses.parse(address)
    preflight.check_storage(root)
    studies.check_url(optuna_storage)
    dashboard.check(address, dashboard_port)


def storage_root(value: str | None) -> str:
    """Where sweeps live: an absolute local path or a URI (default ``runs/``)."""
    return storage.location(value or DEFAULT_STORAGE)


def experiment_path(value: str | None, name: str) -> str:
    """The experiment directory of sweep ``name`` under the storage ``value``."""
    return storage.join(storage_root(value), name)


def set_aside(root: str, name: str) -> str:
    """Move an experiment directory that Tune never recorded a state in (the driver died
    first) out of the way, so the sweep starts afresh and no half-run trial is collected."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    dest = storage.join(root, f".{name}.interrupted-{stamp}")
    storage.move(storage.join(root, name), dest)
    print(
        f"gansweep: {root}/{name} holds no experiment state Tune can read (the last run "
        f"stopped before Tune recorded a whole one); it was moved to {dest} and the sweep "
        "starts afresh",
        file=sys.stderr,
    )
    return dest


def start_ray(address: str | None, num_cpus: int | None, dashboard_port: int | None = None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray with ``num_cpus`` (and
    its dashboard on 127.0.0.1:``dashboard_port``), the way ``run`` does; a Ray already started
    in this process is used as it is. ``SweepError`` when no cluster answers at ``address``
    (Ray's connection tries kept short: ``sweeps.engine.address``)."""
    with addresses.connect_options(address):  # Ray reads some of them when imported
        import ray

        noise.quiet_driver()
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")
        # loggers are given explicitly (tuner._loggers); TensorBoard scalars come from the trials
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
        from sweeps.engine import warm

        try:
            context = ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                logging_level="WARNING",
                ignore_reinit_error=True,
                # a local Ray's workers import torch and the trainable while the driver sets up
                runtime_env={"worker_process_setup_hook": warm.HOOK} if address is None else None,
                **dashboard.init_options(address, dashboard_port),
            )
        except ConnectionError as e:  # Ray's "Failed to connect to Ray cluster at ...", ...
            if address is None:
                raise
            raise addresses.refused(address, e) from None
    dashboard.announce(context, dashboard_port if address is None else None)


def _refused(error: SweepError) -> Outcome:
    print(f"gansweep: {error}", file=sys.stderr)
    return Outcome(EXIT_BAD_INPUT, error=str(error))
