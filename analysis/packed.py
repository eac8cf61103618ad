"""A trial's row as Tune sees it: few numbers, the rest in one JSON string.

Tune keeps, for every numeric key of every result, its min/max/avg/last and windows of recent
values, in the driver and in its experiment state (rewritten whole at every save), so a sweep
reports to Tune as numbers only the keys Tune, the searcher and the progress table read; every
number of the row, those included, travels in the one string field ``PACKED``, in the row's own
order. ``unpack`` turns such a row (a line of the trial's ``result.json``) back into the row
as reported; a row without the field (an older sweep's) is returned as it is.

The field is JSON as Python's ``json`` writes it: NaN, Infinity and -Infinity as those tokens
(as in the ``result.json`` lines themselves); ints stay ints, floats floats, bools bools.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from numbers import Number
from typing import Any

PACKED = "packed_metrics"


def pack(row: dict[str, Any], keep: Collection[str], tune: Collection[str] = ()) -> dict[str, Any]:
    """``row`` for Tune: the numbers (bools included) named in ``keep``, every value that is not
    a number, and ``PACKED``, a JSON object of every key of the row but those in ``tune``
    (names Tune sets itself, which stay as they are, outside the field)."""
    if PACKED in row:
        raise ValueError(
            f"a report may not use the key {PACKED!r}: the engine carries the trial's metrics "
            "under it (rename the metric)"
        )
    packed = {k: v for k, v in row.items() if k not in tune}
    out = {k: v for k, v in row.items() if k in keep or k in tune or not _number(v)}
    out[PACKED] = json.dumps(packed, separators=(",", ":"))
    return out


def unpack(row: dict[str, Any]) -> dict[str, Any]:
    """The row as reported: ``PACKED``'s keys in their order, each with its value outside the
    field where it has one (what Tune saw), then the keys only Tune's row has (Tune's own)."""
    text = row.get(PACKED)
    if text is None:
        return row
    try:
        packed = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        packed = None
    if not isinstance(packed, dict):
        raise ValueError(f"{PACKED} must be a JSON object in a string, got {str(text)[:80]!r}")
    packed.update((k, v) for k, v in row.items() if k != PACKED)
    return packed


def _number(value: Any) -> bool:
    """What Tune keeps statistics of (``numbers.Number``: bools too)."""
    return isinstance(value, Number)
