"""Where a sweep's Optuna studies live, one per cell, named ``<sweep>/<cell>``.

By default a journal file (``optuna-journal.log``) in the experiment directory, when that is a
local path or a shared mount; ``--optuna-storage URL`` (``sqlite:///...``, ``postgresql://...``,
``mysql://...``) puts them in a database instead, which a bucket storage needs for live studies
(a journal needs a POSIX file). Either way ``optuna.load_study`` and ``optuna-dashboard`` open
them during and after the sweep. With a bucket and no URL the studies are pickled into Tune's
searcher checkpoint, where neither can read them. The experiment directory records which
storage a sweep used (``optuna-storage.json``, a password masked), and a resume keeps it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from analysis import storage
from sweeps.engine.ledger import JOURNAL
from sweeps.engine.spec import SweepError

RECORD = "optuna-storage.json"
DATABASES = ("sqlite", "postgresql", "mysql")  # SQLAlchemy backends Optuna's RDBStorage takes


def check_url(url: str | None) -> None:
    """Refuse an ``--optuna-storage`` value Optuna cannot open, before anything starts."""
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    allowed = "a database URL: sqlite:////abs/path/studies.db, postgresql://host/db or mysql://..."
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SweepError(f"--optuna-storage {url!r}: not a URL; give {allowed}") from None
    if parsed.get_backend_name() not in DATABASES:
        raise SweepError(
            f"--optuna-storage {url!r}: unknown database {parsed.get_backend_name()!r}; "
            f"give {allowed}"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError) as e:
        raise SweepError(
            f"--optuna-storage {url!r}: the database driver is not installed ({e}); "
            f"install it (e.g. pip install psycopg2-binary for postgresql)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            raise SweepError(
                f"--optuna-storage {url!r}: an sqlite database must be a file that outlives "
                "the sweep, e.g. sqlite:////abs/path/studies.db"
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise SweepError(f"--optuna-storage {url!r}: the folder {folder} does not exist")


def open_storage(url: str | None, local_dir: str | None) -> Any:
    """The Optuna storage of the cells' studies: the database at ``url``, else the journal in
    the local experiment directory ``local_dir``; None for neither (a bucket without a URL)."""
    import optuna

    if url is not None:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine(url))
    if local_dir is not None:
        backend = optuna.storages.journal.JournalFileBackend(os.path.join(local_dir, JOURNAL))
        return optuna.storages.JournalStorage(backend)
    return None


def _engine(url: str) -> dict[str, Any]:
    """A server database's pooled connections are checked before use (one may have timed out)."""
    return {} if url.startswith("sqlite") else {"pool_pre_ping": True}


def shown(url: str) -> str:
    """``url`` with its password masked (what is printed and recorded)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def describe(url: str | None, experiment: str) -> dict[str, Any]:
    """What ``optuna-storage.json`` records: the kind and where the studies are."""
    if url is not None:
        return {"kind": "database", "url": shown(url)}
    local = storage.local_dir(experiment)
    if local is not None:
        return {"kind": "journal", "path": os.path.join(local, JOURNAL)}
    return {"kind": "searcher-checkpoint", "path": experiment}


def record(url: str | None, experiment: str, study_names: list[str]) -> None:
    """Write ``optuna-storage.json`` into the experiment directory."""
    data = {**describe(url, experiment), "studies": study_names}
    storage.write_text(experiment, RECORD, json.dumps(data, indent=1) + "\n")


def recorded(experiment: str) -> dict[str, Any] | None:
    """The experiment's ``optuna-storage.json`` (None: none, a sweep from before it)."""
    text = storage.read_text(experiment, RECORD)
    return json.loads(text) if text else None


def check_resume(experiment: str, url: str | None) -> None:
    """Refuse a resume whose ``--optuna-storage`` names other studies than the sweep used (the
    studies would start over, or be told twice); a resume without one keeps the recorded one."""
    before = recorded(experiment)
    if before is None or url is None:
        return
    if before.get("kind") != "database" or before.get("url") != shown(url):
        was = before.get("url") or f"the {before.get('kind')} at {before.get('path')}"
        raise SweepError(
            f"--optuna-storage {shown(url)!r}: this sweep keeps its Optuna studies in {was}; "
            "resume it with that storage (or without --optuna-storage)"
        )


def bucket_note(root: str, url: str | None) -> None:
    """Say, for a bucket storage without a database URL, where the studies end up and what to
    pass to keep them live."""
    if url is not None or storage.local_dir(root) is not None:
        return
    print(
        f"gansweep: --storage {root} is a bucket and an Optuna journal needs a POSIX file, so the "
        "cells' studies are kept in the searcher checkpoint, where optuna.load_study and "
        "optuna-dashboard cannot open them. To watch them live pass --optuna-storage with a "
        "database the driver reaches, e.g. --optuna-storage sqlite:////home/ubuntu/studies.db "
        "(on the head) or postgresql://host/db",
        file=sys.stderr,
    )
