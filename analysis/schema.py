"""The columns of a collected results dataset: names, dtypes and meaning, checked on load.

One row per (trial, report). Columns of three kinds:

- fixed columns, listed in ``COLUMNS`` below: identity, the trial's config, status, wall time,
  the FID protocol and the stable reported names of DESIGN.md ("Results"). Every collected file
  has all of them (missing values are null/NaN); ``load`` refuses a dataset that lacks one.
- other config keys, as ``config/<key>`` (scalars as they are, lists/dicts as JSON strings).
- other reported metrics, under their reported names (``mag/<player>/<layer>``,
  ``speed/...``, ``update/...``, ``corr/...``, ``neurons/...``, ``mass/...``, ...): float64,
  or string for text values.

The row key is ``(sweep, trial_id, iteration)``: ``iteration`` is Tune's
``training_iteration`` (the line number, from 1, for a plain-process ``results.jsonl``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

# "pruned": the trial's step size was stopped early by the sweep's early stopping (every seed
# of it, whatever each had reached; the engine's pruned.json beside the trials says which)
STATUSES = ("finished", "diverged", "errored", "running", "pruned")
KEY = ("sweep", "trial_id", "iteration")
PROTOCOL = ("fid_num_gen", "fid_ref", "fid_mode", "fid_extractor")


@dataclass(frozen=True)
class Column:
    """One fixed column: its arrow type and what it means."""

    name: str
    type: pa.DataType
    meaning: str


def _c(name: str, type_: pa.DataType, meaning: str) -> Column:
    return Column(name, type_, meaning)


S, F, INT, B = pa.string(), pa.float64(), pa.int64(), pa.bool_()

COLUMNS: tuple[Column, ...] = (
    # identity
    _c("sweep", S, "the experiment directory's name (Tune experiment = one sweep)"),
    _c("trial_id", S, "Tune's trial id; for a plain-process run, its directory name"),
    _c("trial_dir", S, "the trial directory's path relative to the collected source"),
    _c("runner", S, "'tune' or 'plain' (python -m trainers run)"),
    _c("iteration", INT, "report number of the trial, from 1 (Tune's training_iteration)"),
    _c("cell", S, "the sweep cell (label shown in tables); the optimizer when not a sweep"),
    # config
    _c("experiment", S, "trainer experiment: bimodal, mog, dcgan, wgangp, ..."),
    _c("model", S, "model name"),
    _c("dataset", S, "dataset name"),
    _c("optimizer", S, "optimizer name: sgda, adam, ada-nsgda, adadir, nsgda"),
    _c("granularity", S, "'layer' or 'global'"),
    _c("lr_d", F, "discriminator step size"),
    _c("lr_g", F, "generator step size"),
    _c("seed", INT, "trial seed"),
    _c("steps", INT, "configured number of generator steps"),
    # status and time
    _c("status", S, "the trial's status now: " + ", ".join(STATUSES)),
    _c("final", B, "True on the trial's last row when it finished, diverged or was pruned"),
    _c("time_total_s", F, "wall time of the trial up to this report (s, across restores)"),
    _c("timestamp", pa.timestamp("ms", tz="UTC"), "when the report was made"),
    # reported names (DESIGN.md "Results")
    _c("step", INT, "generator steps done"),
    _c("kimg", F, "thousands of real images shown to D"),
    _c("diverged", B, "the trial diverged (non-finite loss) at this report"),
    _c("loss_d", F, "discriminator loss"),
    _c("loss_g", F, "generator loss"),
    _c("grad_ratio", F, "|g_G(t)|/|g_G(0)| + |g_D(t)|/|g_D(0)| (Fig. 1)"),
    _c("objective", F, "the sweep's objective for this report (Tune runs only)"),
    _c("fid", F, "FID under the row's protocol"),
    _c("fid_best", F, "best FID so far"),
    _c("kid", F, "KID"),
    _c("fid_num_gen", INT, "FID protocol: generated samples"),
    _c("fid_ref", S, "FID protocol: reference statistics (dataset, resolution, split)"),
    _c("fid_mode", S, "FID protocol: clean-fid mode"),
    _c(
        "fid_extractor",
        S,
        "FID protocol: feature extractor (`inception_v3`, `randconv32-s0`, `digits_cnn-v1-s0`: name and version)",
    ),
    _c("verdict", S, "bimodal: which modes G learnt ('both', 'u1', 'u2', 'average', 'none')"),
    _c("modes_covered", F, "modes covered (mog, bimodal)"),
    _c("modes_total", F, "modes in the data"),
    _c("hq_fraction", F, "mog: share of high-quality samples"),
    _c("git_commit", S, "the trainer's git commit"),
    _c("versions", S, "package versions (first report of a Tune trial)"),
)

FIXED: dict[str, Column] = {c.name: c for c in COLUMNS}


class SchemaError(ValueError):
    """A results dataset does not have the documented columns or types."""


def arrow_type(name: str, values: pd.Series) -> pa.DataType:
    """The arrow type a column is written with: the fixed type, else float64 or string; a
    non-fixed column without a value is written as arrow's null type, so that it merges with
    the type another trial gives the same column (a config key left null in one experiment and
    set in another)."""
    if name in FIXED:
        return FIXED[name].type
    present = values.dropna()
    if not len(present):
        return pa.null()
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return F
    if all(isinstance(v, (bool, int, float)) for v in present):
        return F
    return S


def as_text(v: object) -> str:
    """A value written into a string column: an integral float without its ``.0``."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def merged_type(types: list[pa.DataType]) -> pa.DataType:
    """The one type of a non-fixed column whose parts have ``types``: null when no part has a
    value, the parts' type when they agree, float64 when all are numbers (or bools), else
    string (a config key that is a number in one trial and text in another)."""
    kinds = list(dict.fromkeys(t for t in types if not pa.types.is_null(t)))
    if not kinds:
        return pa.null()
    if len(kinds) == 1:
        return kinds[0]
    if all(
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) for t in kinds
    ):
        return F
    return S


def check(table: pa.Schema, where: str) -> None:
    """Raise ``SchemaError`` naming the missing or mistyped fixed columns of ``table``."""
    missing = [c.name for c in COLUMNS if c.name not in table.names]
    if missing:
        raise SchemaError(
            f"{where}: not a gansweep results dataset: missing column(s) {', '.join(missing)} "
            "(write it with analysis.collect; the columns are listed in analysis.schema)"
        )
    wrong = [
        f"{c.name} is {table.field(c.name).type}, expected {c.type}"
        for c in COLUMNS
        if not table.field(c.name).type.equals(c.type)
        and not pa.types.is_null(table.field(c.name).type)
    ]
    if wrong:
        raise SchemaError(f"{where}: wrong column type(s): " + "; ".join(wrong))


def describe() -> str:
    """The fixed columns as a Markdown table (for docs and reports)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.meaning} |" for c in COLUMNS]
    return "\n".join(lines)
