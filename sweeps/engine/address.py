"""``--address``: which Ray cluster a sweep runs on, checked before Ray is contacted.

Allowed: ``auto`` (the cluster ``ray start`` started on this machine, or ``$RAY_ADDRESS``),
``HOST:PORT`` of a running head's GCS (``ray start --head`` prints it; port 6379 by default),
``ray://HOST:PORT`` (Ray Client, port 10001 by default); no ``--address``: a local Ray. The
syntax is checked first; then a TCP connection to HOST:PORT tells a head that is not there
(refused at once, or no answer within ``PROBE_TIMEOUT_S``) from one that is, and
``connect_options`` keeps Ray's own tries short for something that answers but is no Ray head
(``CONNECT_ENV``: about 16 s, or 9 s through Ray Client, where Ray's defaults take minutes).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sweeps.engine.spec import SweepError

CLIENT = "ray://"
RAY_ADDRESS_ENV = "RAY_ADDRESS"  # where Ray connects for ``auto`` when it is set
PROBE_TIMEOUT_S = 5.0
# Ray's knobs (environment variables) for connecting, with the values used unless they are
# set. Ray's defaults: 20 tries to reach a GCS, each up to 30 s (plus two 5 s connects), and
# three Ray Client tries of 5, 10 and 15 s. The GCS timeout is read when Ray is first imported.
CONNECT_ENV = {
    "RAY_gcs_server_port_wait_time_s": "1",  # tries (about 1 s apart)
    "RAY_py_gcs_connect_timeout_s": "5",  # seconds of each (a live head answers in ms)
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "3",  # seconds of each Ray Client try
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "3",
}
ALLOWED = (
    "allowed: auto (the cluster `ray start` started on this machine, or $RAY_ADDRESS), "
    "HOST:PORT of a running Ray head (e.g. 10.0.0.5:6379), ray://HOST:PORT (Ray Client, "
    "e.g. ray://10.0.0.5:10001); leave --address out for a local Ray"
)
START_HEAD = (
    "start one there with `ray start --head` (it prints the address to give), "
    "or leave --address out for a local Ray"
)


def parse(address: str) -> tuple[str, int] | None:
    """(host, port) of ``address``; None for ``auto``. Raises ``SweepError`` naming the address
    and what is allowed when it is none of them."""
    if not isinstance(address, str):
        raise SweepError(f"--address {address!r}: not a string; {ALLOWED}")
    if address == "auto":
        return None
    if address == "local":
        raise SweepError(f"--address 'local': a local Ray is what no --address gives; {ALLOWED}")
    rest = address[len(CLIENT) :] if address.startswith(CLIENT) else address
    host, sep, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # [IPv6]:PORT
        host = host[1:-1]
    problem = None
    if "://" in rest or "/" in rest or not sep or not host or any(c.isspace() for c in rest):
        problem = "not HOST:PORT"
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        problem = f"port {port!r} is not a number from 1 to 65535"
    if problem:
        raise SweepError(f"--address {address!r}: {problem}; {ALLOWED}")
    return host, int(port)


def probe(address: str, where: tuple[str, int], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Refuse ``address`` when nothing accepts a TCP connection at ``where`` (host, port)
    within ``timeout_s``, or its host has no address."""
    host, port = where
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except socket.gaierror as e:
        raise SweepError(
            f"--address {address}: host {host!r} not found ({e.strerror or e}); {ALLOWED}"
        ) from None
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
    except OSError as e:
        reason = e.strerror or str(e)
    raise SweepError(
        f"--address {address}: nobody answered at {host}:{port} ({reason}), so no Ray head "
        f"runs there; {START_HEAD}"
    ) from None


def check(address: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Refuse a bad ``address`` (syntax first, then the probe); None (a local Ray) passes.
    ``auto`` probes ``$RAY_ADDRESS`` when set (Ray connects there), else Ray looks itself."""
    if address is None:
        return
    where = parse(address)
    env = os.environ.get(RAY_ADDRESS_ENV)
    if where is None and env:
        try:
            where = parse(env)
        except SweepError:  # not HOST:PORT: Ray's own reading of it decides
            where = None
        if where is not None:
            address = f"auto (${RAY_ADDRESS_ENV}={env})"
    if where is not None:
        probe(address, where, timeout_s)


def refused(address: str, error: BaseException) -> SweepError:
    """The message for a ``ray.init`` that could not connect to ``address``."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if address == "auto":
        return SweepError(
            f"--address auto: no running Ray cluster found on this machine (Ray: {reason}); "
            f"start one with `ray start --head`, give its HOST:PORT, or leave --address out "
            "for a local Ray"
        )
    return SweepError(
        f"--address {address}: no Ray cluster answered there (Ray: {reason}); what listens "
        f"there is no running Ray head: {START_HEAD}"
    )


@contextmanager
def connect_options(address: str | None) -> Iterator[None]:
    """Around ``import ray`` and ``ray.init(address=...)``: Ray's connection tries cut short
    (``CONNECT_ENV``, each unless already set; none for a local Ray), the environment restored
    after."""
    added = [k for k in CONNECT_ENV if k not in os.environ] if address is not None else []
    os.environ.update({k: CONNECT_ENV[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
