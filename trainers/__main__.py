"""Command line: ``python -m trainers run CONFIG --out DIR``, ``defaults CONFIG`` and
``profile RUN_DIR --out FILE``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from trainers.config import ConfigError

EXIT_BAD_CONFIG = 2
EXIT_MISSING_FILE = 3
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["profile"]:  # python -m trainers profile RUN_DIR --out FILE [--player G]
        from trainers.optim.profile import main as profile_main

        return profile_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m trainers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train one trial (resumes when DIR holds a checkpoint)")
    run.add_argument("config", help="a JSON file or inline JSON with experiment, optimizer, seed")
    run.add_argument("--out", required=True, help="the trial's directory")
    run.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub.add_parser("profile", help="write the per-layer scale profile of an ada-nsgda run")
    defaults = sub.add_parser("defaults", help="print the resolved config of a minimal config")
    defaults.add_argument(
        "config", help='e.g. \'{"experiment": "bimodal", "optimizer": "nsgda", "seed": 0}\''
    )
    args = parser.parse_args(argv)

    from trainers import experiments
    from trainers.trial.run import Interrupted, load_config, run_trial

    try:
        config = load_config(args.config)
        if args.command == "defaults":
            print(json.dumps(experiments.resolve_config(config), indent=1, sort_keys=True))
            return 0
        last = run_trial(config, args.out, quiet=args.quiet)
    except ConfigError as e:
        print(f"gansweep: bad config: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except FileNotFoundError as e:  # data sets, Inception weights, scale profiles
        print(f"gansweep: {e}", file=sys.stderr)
        return EXIT_MISSING_FILE
    except Interrupted as e:
        again = " ".join(shlex.quote(a) for a in ["python", "-m", "trainers", *argv])
        where = (
            f"step {e.checkpoint_step}" if e.checkpoint_step else "the start (no checkpoint yet)"
        )
        print(f"\ninterrupted at step {e.step}; resume from {where} with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    status = "diverged" if last.get("diverged") else "finished"
    print(f"trial {status} at step {last.get('step')}; results in {args.out}/results.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
