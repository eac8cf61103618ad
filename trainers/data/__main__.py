"""``python -m trainers.data prepare SRC DEST --resolution R [--limit N] [--skip-bad] [--force]``:
a zip of R x R PNGs from an image folder, a zip or an LSUN LMDB (``trainers.data.prepare``).
Exit code 2 on bad arguments or input, 3 when SRC does not exist."""

from __future__ import annotations

import argparse
import signal
import sys

EXIT_BAD_INPUT = 2
EXIT_MISSING_SOURCE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="make a training zip of R x R PNGs (FFHQ, LSUN Church)")
    p.add_argument("src", help="an image folder, a .zip of images, or an LSUN LMDB directory")
    p.add_argument("dest", help="the .zip to write")
    p.add_argument("--resolution", type=int, required=True, help="a power of two, e.g. 128")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images")
    p.add_argument("--force", action="store_true", help="replace an existing DEST")
    args = parser.parse_args(argv)

    from trainers.data.images import DataMissingError
    from trainers.data.prepare import prepare_images

    try:
        prepare_images(args.src, args.dest, args.resolution, args.limit, args.skip_bad, args.force)
    except DataMissingError as e:
        print(f"prepare: {e}", file=sys.stderr)
        return EXIT_MISSING_SOURCE
    except ValueError as e:  # PrepareError, ImageDataError
        print(f"prepare: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # writing DEST
        print(f"prepare: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # SIGTERM as an exception, so that the temporary file is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    sys.exit(main())
