"""What Tune gets of a trial's row (few numbers, the rest in one string) and the row back."""

from __future__ import annotations

import json
import math

import pytest

from analysis.packed import PACKED, pack, unpack
from sweeps.engine.trainable import TUNE_NAMES

ROW = {
    "step": 300,
    "kimg": 0.3,
    "diverged": False,
    "loss_d": float("nan"),
    "loss_g": float("inf"),
    "grad_ratio": -float("inf"),
    "modes_total": 2,  # an int stays an int
    "mass/u1": 1.0,  # a whole float stays a float
    "flag": True,
    "verdict": "both",
    "stop_reason": None,
    "objective": 0.0,
    "big": 2**62 + 1,
    "tiny": 5e-324,
}
KEEP = ("step", "diverged", "objective")


def through_result_json(row: dict) -> dict:
    """A row as Tune's JsonLoggerCallback writes it and collect reads it back."""
    return json.loads(json.dumps({**row, "timestamp": 1.5, "done": False, "trial_id": "ab"}))


def same(a: object, b: object) -> bool:
    """Equal with its type (NaN equal to NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def test_tune_sees_as_numbers_only_the_kept_keys():
    row = pack(ROW, KEEP)
    numbers = {k for k, v in row.items() if isinstance(v, (int, float))}
    assert numbers == set(KEEP)
    assert row["verdict"] == "both" and row["stop_reason"] is None  # text stays readable
    assert isinstance(row[PACKED], str)


def test_the_row_comes_back_with_its_values_types_and_order():
    back = unpack(through_result_json(pack(ROW, KEEP)))
    assert list(back)[: len(ROW)] == list(ROW)  # the reported order, then Tune's own keys
    assert list(back)[len(ROW) :] == ["timestamp", "done", "trial_id"]
    for k, v in ROW.items():
        assert same(back[k], v), k
    assert math.isinf(back["loss_g"]) and back["grad_ratio"] < 0


def test_a_row_without_the_field_is_an_older_sweeps_row_and_stays_as_it_is():
    old = through_result_json(ROW)
    assert unpack(old) is old


def test_tune_names_stay_outside_the_field_and_tune_has_the_last_word_on_them():
    row = {**ROW, "time_total_s": 9.0}  # a trainer key Tune also sets
    tuned = pack(row, KEEP, TUNE_NAMES)
    assert "time_total_s" not in json.loads(tuned[PACKED])
    tuned["time_total_s"] = 12.5  # Tune's value
    assert unpack(tuned)["time_total_s"] == 12.5


def test_a_value_outside_the_field_wins_over_the_packed_one():
    tuned = pack(ROW, KEEP)
    tuned["step"] = 301
    assert unpack(tuned)["step"] == 301


def test_a_report_that_uses_the_fields_name_is_refused():
    with pytest.raises(ValueError, match=f"may not use the key '{PACKED}'"):
        pack({**ROW, PACKED: 1.0}, KEEP)


@pytest.mark.parametrize("bad", ["[1, 2]", "{not json", 3.5])
def test_a_field_that_is_not_a_json_object_is_named(bad):
    with pytest.raises(ValueError, match=f"{PACKED} must be a JSON object in a string"):
        unpack({"step": 1, PACKED: bad})
