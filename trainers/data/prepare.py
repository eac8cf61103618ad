"""Make a StyleGAN2 training zip (FFHQ, LSUN Church) from the original images.

``python -m trainers.data prepare SRC DEST --resolution 128`` reads SRC (an image folder, a .zip
of images, or an LSUN LMDB export directory holding ``data.mdb``), takes the images in the order
of their names (LMDB: keys), centre-crops each to a square, resizes it with PIL bicubic (the rule
of ``trainers.data.images.decode_image``) and writes them as RGB PNGs ``00000000.png``,
``00000001.png``, ... into the zip DEST, which ``trainers.data.images.folder`` loads unchanged.
DEST appears whole at the end or not at all.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from trainers.data.images import IMAGE_EXTENSIONS, DataMissingError, ImageDataError, decode_image
from trainers.trial.atomic import atomic_write

SOURCE_KINDS = "an image folder, a .zip of images, or an LSUN LMDB directory (holding data.mdb)"
PROGRESS_EVERY = 10_000  # images between progress lines, at the latest ...
PROGRESS_SECONDS = 2.0  # ... or seconds, whichever comes first

Item = tuple[str, Callable[[], bytes]]  # (label naming the image, function reading its bytes)
Log = Callable[[str], None]


class PrepareError(ValueError):
    """Bad arguments or input for ``prepare_images``; the message says what and why."""


ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: every entry, every run


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def prepare_images(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    resolution: int,
    limit: int | None = None,
    skip_bad: bool = False,
    force: bool = False,
    progress: Log | None = _to_stderr,
) -> int:
    """Write the images of ``src`` as ``resolution`` px PNGs into the zip ``dest``; return how
    many were written.

    ``limit`` keeps the first N images. An unreadable image stops the run (``ImageDataError``
    naming it, nothing written) unless ``skip_bad``, which skips it and reports it. ``dest`` is
    built in a temporary file beside it and renamed at the end; an existing ``dest`` is refused
    unless ``force``. ``progress`` receives the progress, skip and summary lines (default:
    stderr; None: silent). Raises ``DataMissingError`` when ``src`` does not exist and
    ``PrepareError`` for bad arguments or input.
    """
    src, dest = Path(src), Path(dest)
    log = progress or (lambda line: None)
    _check_arguments(src, dest, resolution, limit, force)
    kind = source_kind(src)
    start = time.monotonic()
    with _open_source(src, kind) as (count, items):
        total = count if limit is None else min(count, limit)
        if total == 0:
            raise PrepareError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {src}")
        with atomic_write(dest, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # as a plain new file, not mkstemp's 0600
            written, skipped = _write_zip(f, items, resolution, total, skip_bad, log)
    seconds = time.monotonic() - start
    note = f"; skipped {skipped} unreadable" if skip_bad else ""
    log(
        f"prepare: wrote {written} images ({resolution}x{resolution}) from {kind} {src} to {dest} "
        f"in {seconds:.1f} s, {written / max(seconds, 1e-9):.0f} img/s{note}"
    )
    return written


def _check_arguments(
    src: Path, dest: Path, resolution: int, limit: int | None, force: bool
) -> None:
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise PrepareError(f"resolution must be a power of two >= 4, got {resolution!r}")
    if limit is not None and limit < 1:
        raise PrepareError(f"limit must be a positive number of images, got {limit!r}")
    if dest.suffix.lower() != ".zip":
        raise PrepareError(f"DEST must be a .zip file, got {dest}")
    if dest.is_dir():
        raise PrepareError(f"DEST {dest} is a directory")
    if src.exists() and dest.exists() and src.resolve() == dest.resolve():
        raise PrepareError(f"DEST {dest} is SRC; write to another file")
    if dest.exists() and not force:
        raise PrepareError(f"DEST {dest} exists; pass --force (force=True) to replace it")


def source_kind(src: Path) -> str:
    """``"folder"``, ``"zip"`` or ``"lmdb"``; raises when ``src`` is missing or none of them."""
    if not src.exists():
        raise DataMissingError(f"source not found: {src} (it should be {SOURCE_KINDS})")
    if src.is_dir():
        return "lmdb" if (src / "data.mdb").is_file() else "folder"
    if src.name == "data.mdb":
        return "lmdb"
    if zipfile.is_zipfile(src):
        return "zip"
    raise PrepareError(f"source {src} is not {SOURCE_KINDS}")


@contextlib.contextmanager
def _open_source(src: Path, kind: str) -> Iterator[tuple[int, Iterable[Item]]]:
    """(number of images, their items in order) of ``src``, open while in the block."""
    if kind == "folder":
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        files = [p for p in files if p.is_file()]
        yield len(files), ((str(p), p.read_bytes) for p in files)
    elif kind == "zip":
        with zipfile.ZipFile(src) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_EXTENSIONS))
            yield len(names), ((f"{src}:{n}", _reader(z, n)) for n in names)
    else:
        with _open_lmdb(src.parent if src.name == "data.mdb" else src) as (count, items):
            yield count, items


def _reader(z: zipfile.ZipFile, name: str) -> Callable[[], bytes]:
    return lambda: z.read(name)


@contextlib.contextmanager
def _open_lmdb(path: Path) -> Iterator[tuple[int, Iterable[Item]]]:
    """The values of an LMDB in key order (LMDB keeps keys sorted bytewise)."""
    try:
        import lmdb
    except ImportError as e:
        raise PrepareError(
            f"reading the LMDB {path} needs the lmdb package: `pip install lmdb` "
            "(or `pip install -e .[lsun]`)"
        ) from e
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as e:
        raise PrepareError(f"cannot open the LMDB {path}: {e}") from e
    try:
        with env.begin(write=False) as txn:
            yield env.stat()["entries"], _lmdb_items(path, txn.cursor())
    finally:
        env.close()


def _lmdb_items(path: Path, cursor: Iterable[tuple[bytes, bytes]]) -> Iterator[Item]:
    for key, value in cursor:
        yield f"{path}:{key.decode('utf-8', 'backslashreplace')}", (lambda v=value: v)


def _write_zip(
    f: IO[bytes],
    items: Iterable[Item],
    resolution: int,
    total: int,
    skip_bad: bool,
    log: Log,
) -> tuple[int, int]:
    """Write up to ``total`` decodable images of ``items`` into a zip on ``f``; return
    (written, skipped)."""
    written = skipped = 0
    meter = _Meter(total, log)
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as out:  # PNGs are compressed already
        for label, read in items:
            if written == total:
                break
            try:
                image = _load(label, read, resolution)
            except ImageDataError as e:
                if not skip_bad:
                    raise ImageDataError(
                        f"{e} (after {written} of {total} images; nothing written; "
                        "--skip-bad skips unreadable images)"
                    ) from e
                skipped += 1
                log(f"prepare: skipped {label}: {e}")
                continue
            # a fixed timestamp: writestr with a bare name stamps the current time, and the
            # same source must give the same zip byte for byte
            entry = zipfile.ZipInfo(f"{written:08d}.png", date_time=ZIP_TIME)
            out.writestr(entry, _png(image), compress_type=zipfile.ZIP_STORED)
            written += 1
            meter.tick(written)
    if written == 0:
        raise PrepareError(f"no readable images among {skipped}; nothing written")
    return written, skipped


def _load(label: str, read: Callable[[], bytes], resolution: int) -> np.ndarray:
    """The image ``label`` as uint8 (R, R, 3); ``ImageDataError`` when it cannot be read."""
    try:
        blob = read()
    except Exception as e:  # OSError, a zip's CRC or zlib errors, ...
        raise ImageDataError(f"cannot read image {label}: {type(e).__name__}: {e}") from e
    return decode_image(blob, label, resolution)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Meter:
    """Progress lines every ``PROGRESS_EVERY`` images or ``PROGRESS_SECONDS``."""

    def __init__(self, total: int, log: Log) -> None:
        self.total, self.log = total, log
        self.start = self.last = time.monotonic()

    def tick(self, done: int) -> None:
        now = time.monotonic()
        if done % PROGRESS_EVERY and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        self.log(f"prepare: {done}/{self.total} images, {rate:.0f} img/s")
