"""The base of every imitation policy's config, and the checks configs share.

`PolicyConfig` holds what all policies have in common (lerobot keeps the
horizons in one base config): the window horizons To, Tp, Ta, where the
predicted chunk starts, `spec_for` and their checks. Every check error names
the config class, the field and the bad value.
"""

from __future__ import annotations

from typing import ClassVar

from agents.common.networks import ACTIVATION_NAMES
from agents.common.policy import PolicySpec
from envs.checks import (  # noqa: F401  (re-exported: the agents' configs import them from here)
    check_bool,
    check_choice,
    check_dims,
    check_fields,
    check_int,
    check_non_negative,
    check_positive,
    check_range,
    check_unit_interval,
    is_number,
)


def check_network_and_adam(owner: str, config) -> None:
    """The fields every supervised policy config has: activation and its Adam(W) settings."""
    check_choice(owner, "activation", config.activation, ACTIVATION_NAMES)
    check_fields(config, positive=("learning_rate", "adam_eps"), unit=("adam_b1", "adam_b2"))


def check_unet(config) -> None:
    """The 1-D conditional U-Net's sizes (`agents.diffusion.networks`): `down_dims`,
    `n_groups` (GroupNorm), `kernel_size`, `diffusion_step_embed_dim`, and a
    `pred_horizon` the U-Net can halve at each of its downsampling steps."""
    owner = type(config).__name__
    check_fields(config, dims=("down_dims",), ints={"kernel_size": 1, "n_groups": 1, "diffusion_step_embed_dim": 4})
    bad_groups = [d for d in config.down_dims if d % config.n_groups]
    if bad_groups:
        raise ValueError(f"{owner}.n_groups={config.n_groups} must divide every down_dims entry; "
                         f"it does not divide {bad_groups} of down_dims={config.down_dims}")
    if config.kernel_size % 2 == 0:
        raise ValueError(f"{owner}.kernel_size must be odd ('same' padding keeps the length), got {config.kernel_size}")
    if config.diffusion_step_embed_dim % 2:
        raise ValueError(f"{owner}.diffusion_step_embed_dim must be even (sin and cos halves), "
                         f"got {config.diffusion_step_embed_dim}")
    factor = 2 ** (len(config.down_dims) - 1)
    if config.pred_horizon % factor:
        raise ValueError(f"{owner}.pred_horizon={config.pred_horizon} must be divisible by 2 ** (len(down_dims) - 1)"
                         f" = {factor}: the U-Net halves it at each of its {len(config.down_dims) - 1} "
                         "downsampling steps")


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
