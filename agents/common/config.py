"""The base of every imitation policy's config, and the checks configs share.

`PolicyConfig` holds what all policies have in common (lerobot keeps the
horizons in one base config): the window horizons To, Tp, Ta, where the
predicted chunk starts, `spec_for` and their checks. Every check error names
the config class, the field and the bad value.
"""

from __future__ import annotations

import math
from typing import ClassVar

from agents.common.networks import ACTIVATION_NAMES
from agents.common.policy import PolicySpec


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


def check_bool(owner: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be a bool, got {value!r}")


class PolicyConfig:
    """Mixin base of the frozen policy config dataclasses.

    A subclass has `obs_horizon` (To), `pred_horizon` (Tp) and `action_horizon`
    (Ta), as fields or properties, and says where its predicted chunk starts:
    at the current step (`action_offset` 0, as BC) or, with
    `chunk_starts_at_first_obs`, at the first observed step (diffusion_policy's
    convention, `action_offset = -(To - 1)`).
    """

    chunk_starts_at_first_obs: ClassVar[bool] = False

    @property
    def action_offset(self) -> int:
        return -(self.obs_horizon - 1) if self.chunk_starts_at_first_obs else 0

    def spec_for(self, obs_dim: int, action_dim: int) -> PolicySpec:
        """Window sizes for training data and evaluation."""
        return PolicySpec(
            obs_dim=obs_dim,
            action_dim=action_dim,
            obs_horizon=self.obs_horizon,
            pred_horizon=self.pred_horizon,
            action_horizon=self.action_horizon,
            action_offset=self.action_offset,
        )

    def check_horizons(self) -> None:
        """Each horizon an int >= 1, and the chunk long enough to hold Ta actions from the current step."""
        owner = type(self).__name__
        for name in ("obs_horizon", "pred_horizon", "action_horizon"):
            check_int(owner, name, getattr(self, name), minimum=1)
        current = -self.action_offset
        if current + self.action_horizon > self.pred_horizon:
            raise ValueError(
                f"{owner}.pred_horizon={self.pred_horizon} is too short to return action_horizon="
                f"{self.action_horizon} actions from the current step (index {current} of the predicted chunk)"
            )
