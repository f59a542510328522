"""IBC's energy model E(o, a): an MLP on [flattened observation window, flattened actions]."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from agents.common.networks import MLP, activation_by_name, default_kernel_init
from agents.ibc.config import IBCConfig


class EnergyMLP(nn.Module):
    """(obs (B, To, Do), candidates (B, N, K)) -> energies (B, N); lower is better.

    The first layer is a Dense on the concatenation [obs, candidate], written
    as a sum of an observation Dense and an action Dense so the observation
    part (2288 of 2327 inputs for RP1M) runs once per example rather than once
    per candidate (the same function; each part gets its own Glorot init). Each hidden layer is Dense -> Dropout -> activation
    (diffusion_policy's IbcDfoLowdimPolicy: ReLU then dropout 0.1, the same
    thing for ReLU).
    """

    hidden_dims: Sequence[int]
    activation: str = "relu"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array, candidates: jax.Array, training: bool = False) -> jax.Array:
        obs = obs.reshape(obs.shape[0], -1)
        width = self.hidden_dims[0]
        x = nn.Dense(width, kernel_init=default_kernel_init(), name="obs_in")(obs)[:, None, :]
        x = x + nn.Dense(width, use_bias=False, kernel_init=default_kernel_init(), name="action_in")(candidates)
        if self.dropout_rate > 0.0:
            x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not training)
        x = activation_by_name(self.activation)(x)
        x = MLP(
            self.hidden_dims[1:],
            activation=self.activation,
            activate_final=True,
            dropout_rate=self.dropout_rate,
        )(x, training)
        return nn.Dense(1, kernel_init=default_kernel_init(), name="energy")(x)[..., 0]


def make_energy_network(config: IBCConfig) -> EnergyMLP:
    return EnergyMLP(
        hidden_dims=config.hidden_dims,
        activation=config.activation,
        dropout_rate=config.dropout_rate,
    )
