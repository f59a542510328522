"""The BC policy network: an MLP from the flattened observation window to the action chunk."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from agents.bc.config import BCConfig
from agents.common.networks import MLP


class ChunkMLP(nn.Module):
    """(B, To, obs_dim) normalized observations -> (B, Tp, action_dim) normalized actions.

    Hidden layers Dense -> activation; the output layer is linear (RP1M B.1.1:
    the MLP is trained by MSE on the expert actions).
    """

    hidden_dims: Sequence[int]
    pred_horizon: int
    action_dim: int
    activation: str = "gelu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1)
        x = MLP((*self.hidden_dims, self.pred_horizon * self.action_dim), activation=self.activation)(x)
        return x.reshape(obs.shape[0], self.pred_horizon, self.action_dim)


def make_network(config: BCConfig, action_dim: int) -> ChunkMLP:
    return ChunkMLP(
        hidden_dims=config.hidden_dims,
        pred_horizon=config.pred_horizon,
        action_dim=action_dim,
        activation=config.activation,
    )
