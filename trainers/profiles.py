"""Scale profiles from a finished run: moved to ``trainers.optim.profile`` (re-exported here
for ``python -m trainers profile`` and older imports)."""

from trainers.optim.profile import (
    ADAM_OPTIMIZERS,
    checkpoint_profile,
    main,
    optimizer_profile,
    run_profile,
)

__all__ = ["ADAM_OPTIMIZERS", "checkpoint_profile", "main", "optimizer_profile", "run_profile"]

if __name__ == "__main__":
    raise SystemExit(main())
