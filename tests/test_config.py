"""Config validation: every bad value is named with its key and the rule it broke."""

from __future__ import annotations

import pytest

from trainers.config import REQUIRED, ConfigError, Field, resolve

FIELDS = {
    "lr": Field(1e-3, float, positive=True),
    "steps": Field(REQUIRED, int, low=1),
    "mode": Field("a", str, choices=("a", "b")),
    "gamma": Field(0.1, float, low=0.0, high=1.0),
    "extra": Field(None, int, nullable=True),
    "flag": Field(False, bool),
}


def test_defaults_fill_and_ints_become_floats():
    cfg = resolve({"steps": 5, "lr": 1}, FIELDS)
    assert cfg == {"lr": 1.0, "steps": 5, "mode": "a", "gamma": 0.1, "extra": None, "flag": False}
    assert isinstance(cfg["lr"], float)


def test_optimizer_defaults_sit_between_fields_and_user_values():
    assert resolve({"steps": 1}, FIELDS, {"lr": 0.5})["lr"] == 0.5
    assert resolve({"steps": 1, "lr": 0.25}, FIELDS, {"lr": 0.5})["lr"] == 0.25


@pytest.mark.parametrize(
    "config, key, words",
    [
        ({}, "steps", "(missing)"),
        ({"steps": 0}, "steps", "int >= 1"),
        ({"steps": 2.5}, "steps", "int"),
        ({"steps": True}, "steps", "int"),
        ({"steps": 1, "lr": -1.0}, "lr", "number > 0"),
        ({"steps": 1, "lr": float("nan")}, "lr", "number > 0"),
        ({"steps": 1, "lr": "fast"}, "lr", "number > 0"),
        ({"steps": 1, "mode": "c"}, "mode", "one of 'a', 'b'"),
        ({"steps": 1, "gamma": 1.5}, "gamma", "<= 1.0"),
        ({"steps": 1, "flag": 1}, "flag", "bool"),
        ({"steps": 1, "typo": 3}, "typo", "a known key"),
    ],
)
def test_bad_values_name_key_value_and_rule(config, key, words):
    with pytest.raises(ConfigError) as err:
        resolve(config, FIELDS)
    assert err.value.key == key
    assert f"config key {key!r}" in str(err.value)
    assert words in str(err.value)


def test_nullable_accepts_null():
    assert resolve({"steps": 1, "extra": None}, FIELDS)["extra"] is None
    assert resolve({"steps": 1, "extra": 4}, FIELDS)["extra"] == 4


def test_user_optimizer_options_merge_with_the_experiments_defaults():
    from trainers.experiments import resolve_config

    base = {"experiment": "mog", "optimizer": "adam", "seed": 0}
    defaults = resolve_config(base)["optimizer_options"]
    cfg = resolve_config({**base, "optimizer_options": {"eps": 1e-6}})
    assert cfg["optimizer_options"] == {**defaults, "eps": 1e-6}
    assert list(cfg["optimizer_options"]["betas"]) == [0.5, 0.999]
