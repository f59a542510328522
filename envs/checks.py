"""Checks of config fields, shared by every layer's frozen config dataclasses.

Each check raises `ValueError` naming the config class, the field and the bad
value. `check_fields` runs a table of them over one config, so that a
`__post_init__` lists its rules instead of repeating the calls. Like
`envs.atomic`, this module sits at the bottom of the import order (`envs <-
agents <- tasks <- flows`) and imports nothing of the project.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(owner: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def check_range(owner: str, name: str, value, low: float, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """A finite number in the interval from `low` to `high` (each end closed unless said open)."""
    ok = is_number(value) and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{owner}.{name} must be in {'(' if low_open else '['}{low}, {high}"
                         f"{')' if high_open else ']'}, got {value!r}")


def check_positive(owner: str, name: str, value) -> None:
    if not is_number(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


def check_non_negative(owner: str, name: str, value) -> None:
    if not is_number(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def check_unit_interval(owner: str, name: str, value, *, closed_high: bool = False) -> None:
    """value in [0, 1) (or [0, 1] with closed_high)."""
    if not (is_number(value) and 0 <= value and (value <= 1 if closed_high else value < 1)):
        raise ValueError(f"{owner}.{name} must be in [0, 1{']' if closed_high else ')'}, got {value!r}")


def check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {tuple(choices)}, got {value!r}")


def check_bool(owner: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be a bool, got {value!r}")


def check_dims(owner: str, name: str, value, *, allow_empty: bool = False) -> tuple[int, ...]:
    """A sequence of positive ints (layer widths), returned as a tuple."""
    try:
        dims = tuple(value)
    except TypeError:
        raise ValueError(f"{owner}.{name} must be a sequence of positive ints, got {value!r}") from None
    if (not dims and not allow_empty) or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in dims):
        what = "a sequence" if allow_empty else "a non-empty sequence"
        raise ValueError(f"{owner}.{name} must be {what} of positive ints, got {value!r}")
    return dims


def check_fields(
    config,
    *,
    ints: Mapping[str, int] | None = None,
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    unit: Iterable[str] = (),
    unit_closed: Iterable[str] = (),
    bools: Iterable[str] = (),
    choices: Mapping[str, Iterable] | None = None,
    dims: Iterable[str] = (),
    dims_or_empty: Iterable[str] = (),
) -> None:
    """Check `config`'s fields by rule: `ints` maps a field to its minimum; `positive`,
    `non_negative`, `unit` ([0, 1)), `unit_closed` ([0, 1]) and `bools` name fields;
    `choices` maps a field to its allowed values. `dims` (non-empty) and `dims_or_empty`
    fields must be sequences of positive ints and are stored back as tuples (a frozen
    dataclass stays hashable, e.g. as a static argument of jit, when YAML gave lists)."""
    owner = type(config).__name__
    for name in dims:
        object.__setattr__(config, name, check_dims(owner, name, getattr(config, name)))
    for name in dims_or_empty:
        object.__setattr__(config, name, check_dims(owner, name, getattr(config, name), allow_empty=True))
    for name, minimum in (ints or {}).items():
        check_int(owner, name, getattr(config, name), minimum)
    for names, check in ((positive, check_positive), (non_negative, check_non_negative),
                         (unit, check_unit_interval), (bools, check_bool)):
        for name in names:
            check(owner, name, getattr(config, name))
    for name in unit_closed:
        check_unit_interval(owner, name, getattr(config, name), closed_high=True)
    for name, allowed in (choices or {}).items():
        check_choice(owner, name, getattr(config, name), tuple(allowed))
