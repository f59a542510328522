"""The shared field checks (`envs.checks`): one table per config, errors that name the field."""

import dataclasses

import pytest

from envs.checks import check_fields, check_range


def _check(self):
    check_fields(self, dims=("widths",), dims_or_empty=("heads",), ints={"steps": 1, "warmup": 0},
                 positive=("rate",), non_negative=("decay",), unit=("dropout",), unit_closed=("share",),
                 bools=("flag",), choices={"mode": ("a", "b")})


# A frozen config of one field per rule (name, type, a good default).
Example = dataclasses.make_dataclass("Example", [
    ("widths", tuple, (4, 8)), ("heads", tuple, ()), ("steps", int, 1), ("warmup", int, 0), ("rate", float, 0.1),
    ("decay", float, 0.0), ("dropout", float, 0.0), ("share", float, 1.0), ("flag", bool, True), ("mode", str, "a"),
], frozen=True, namespace={"__post_init__": _check})


def test_check_fields_accepts_good_values_and_stores_dims_as_tuples():
    config = Example(widths=[16, 32], heads=[])
    assert config.widths == (16, 32) and config.heads == ()
    hash(config)  # hashable: a static argument of jit


@pytest.mark.parametrize("changes, message", [
    ({"widths": []}, r"Example.widths must be a non-empty sequence of positive ints, got \[\]"),
    ({"heads": [0]}, r"Example.heads must be a sequence of positive ints, got \[0\]"),
    ({"steps": 0}, r"Example.steps must be an int >= 1, got 0"),
    ({"steps": True}, r"Example.steps must be an int >= 1, got True"),
    ({"warmup": 1.5}, r"Example.warmup must be an int >= 0, got 1.5"),
    ({"rate": 0.0}, r"Example.rate must be a finite number > 0, got 0.0"),
    ({"rate": float("inf")}, r"Example.rate must be a finite number > 0, got inf"),
    ({"decay": -1e-3}, r"Example.decay must be a finite number >= 0, got -0.001"),
    ({"dropout": 1.0}, r"Example.dropout must be in \[0, 1\), got 1.0"),
    ({"share": 1.5}, r"Example.share must be in \[0, 1\], got 1.5"),
    ({"flag": 1}, r"Example.flag must be a bool, got 1"),
    ({"mode": "c"}, r"Example.mode must be one of \('a', 'b'\), got 'c'"),
])
def test_check_fields_names_the_config_the_field_and_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        Example(**changes)


def test_check_range_says_which_ends_are_open():
    check_range("C", "x", 1.0, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"C.x must be in \(0.0, 1.0\], got 0.0"):
        check_range("C", "x", 0.0, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"C.x must be in \[0.0, inf\), got nan"):
        check_range("C", "x", float("nan"), 0.0, high_open=True)
