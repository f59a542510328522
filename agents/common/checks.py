"""Validation of policy configs: each error names the config class, the field and the bad value.

Shared by the BC, IBC and BC-RNN configs (`agents.bc.config` and friends).
"""

from __future__ import annotations

import math

from agents.common.networks import ACTIVATION_NAMES


def check_int(owner: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def check_positive(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


def check_non_negative(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def check_unit_interval(owner: str, name: str, value, *, closed_high: bool = False) -> None:
    """value in [0, 1) (or [0, 1] with closed_high)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and 0 <= value and (value <= 1 if closed_high else value < 1)
    if not ok:
        raise ValueError(f"{owner}.{name} must be in [0, 1{']' if closed_high else ')'}, got {value!r}")


def check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {tuple(choices)}, got {value!r}")


def check_dims(owner: str, name: str, value, *, allow_empty: bool = False) -> tuple[int, ...]:
    try:
        dims = tuple(value)
    except TypeError:
        raise ValueError(f"{owner}.{name} must be a sequence of positive ints, got {value!r}") from None
    if (not dims and not allow_empty) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in dims
    ):
        what = "a sequence" if allow_empty else "a non-empty sequence"
        raise ValueError(f"{owner}.{name} must be {what} of positive ints, got {value!r}")
    return dims


def check_network_and_adam(owner: str, config) -> None:
    """The fields every supervised policy config has: activation and its Adam(W) settings."""
    check_choice(owner, "activation", config.activation, ACTIVATION_NAMES)
    check_positive(owner, "learning_rate", config.learning_rate)
    check_positive(owner, "adam_eps", config.adam_eps)
    check_unit_interval(owner, "adam_b1", config.adam_b1)
    check_unit_interval(owner, "adam_b2", config.adam_b2)
