"""Where sweeps and results live: a local path or a pyarrow URI (``s3://``, ``gs://``, ``file://``).

The one place that turns a location into a filesystem, so the engine (experiment directories,
the searcher's ledger, summaries) and ``analysis`` (collecting, loading) read and write the same
way. Every write goes to a hidden temporary name first and is moved into place, so a reader never
sees a partial file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

import pyarrow.fs as pafs


def location(value: str) -> str:
    """An absolute local path, or the URI unchanged (what Tune's ``storage_path`` takes)."""
    value = str(value)
    return value if "://" in value else posixpath.abspath(value)


def filesystem(where: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or a URI."""
    where = str(where)
    if "://" in where:
        fs, path = pafs.FileSystem.from_uri(where)
        return fs, path.rstrip("/") or "/"
    return pafs.LocalFileSystem(), posixpath.abspath(where)


def local_dir(where: str) -> str | None:
    """``where`` as a local directory, or None for a URI other than ``file://`` (a bucket)."""
    where = str(where)
    if "://" not in where:
        return posixpath.abspath(where)
    if where.startswith("file://"):
        return where[len("file://") :]
    return None


# the URI schemes pyarrow's FileSystem.from_uri opens
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def directory_problem(where: str, must_exist: bool = False) -> str | None:
    """Why ``where`` cannot be (or become) a directory, in words, or None: an unknown URI
    scheme, a regular file (or a path under one), or with ``must_exist`` a path that is
    absent (``"... does not exist"``). Buckets are not looked at."""
    where = str(where)
    if "://" in where:
        scheme = where.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            allowed = ", ".join(f"{s}://" for s in SCHEMES)
            return f"{where!r}: unknown URI scheme {scheme!r}; allowed: a local path or {allowed}"
    local = local_dir(where)
    if local is None:
        return None
    path = posixpath.abspath(local)
    if must_exist and not posixpath.exists(path):
        return f"{where!r} does not exist"
    place = path
    while True:
        if posixpath.exists(place):
            if not posixpath.isdir(place):
                if place == path:
                    return f"{where!r} is a file, not a directory"
                return f"{where!r} lies under the file {place!r}, not a directory"
            return None
        parent = posixpath.dirname(place)
        if parent == place:
            return None
        place = parent


def join(where: str, *names: str) -> str:
    """``where/name/...`` for a path or a URI."""
    return "/".join([str(where).rstrip("/"), *names])


def exists(where: str) -> bool:
    fs, path = filesystem(where)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def listing(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """The entries of a directory (empty when it is absent or not a directory)."""
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


def write_atomic(fs: pafs.FileSystem, path: str, write: Callable[[Any], None]) -> None:
    """``write(stream)`` into a hidden temporary beside ``path``, then move it into place."""
    tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
    try:
        with fs.open_output_stream(tmp) as f:
            write(f)
    except BaseException:
        if is_file(fs, tmp):
            fs.delete_file(tmp)
        raise
    fs.move(tmp, path)


def write_text(directory: str, name: str, text: str) -> None:
    """A small text file ``directory/name`` (local or URI), written atomically."""
    fs, root = filesystem(directory)
    fs.create_dir(root, recursive=True)
    data = text.encode()
    write_atomic(fs, f"{root}/{name}", lambda f: f.write(data))


def read_text(directory: str, name: str) -> str | None:
    """The text of ``directory/name`` (local or URI); None when it is absent."""
    fs, root = filesystem(directory)
    try:
        with fs.open_input_stream(f"{root}/{name}") as f:
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.readall()


def move(src: str, dest: str) -> None:
    """Rename ``src`` to ``dest`` (two locations on one filesystem)."""
    fs, a = filesystem(src)
    _, b = filesystem(dest)
    fs.move(a, b)
