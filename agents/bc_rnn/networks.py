"""BC-RNN's network (robomimic `RNNActorNetwork`): stacked LSTM -> per-step MLP -> tanh."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.bc_rnn.config import BCRNNConfig
from agents.common.networks import MLP

# One (c, h) pair per LSTM layer, each (B, rnn_hidden_dim).
Carry = tuple[tuple[jax.Array, jax.Array], ...]


class RecurrentActor(nn.Module):
    """(carry, obs (B, T, Do)) -> (carry after T steps, actions (B, T, Da) in (-1, 1)).

    Inference calls it with T = 1 and the carry of the previous call. The
    time loop is unrolled in Python (T is `seq_length`, 4 for RP1M): flax's
    `nn.RNN` / `nn.scan` need a newer jax than the pinned 0.4.34.
    """

    hidden_dim: int
    num_layers: int
    head_dims: Sequence[int]
    action_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, carry: Carry, obs: jax.Array) -> tuple[Carry, jax.Array]:
        cells = [nn.OptimizedLSTMCell(self.hidden_dim, name=f"lstm_{layer}") for layer in range(self.num_layers)]
        head = MLP((*self.head_dims, self.action_dim), activation=self.activation, name="head")
        carry = list(carry)
        outputs = []
        for t in range(obs.shape[1]):
            x = obs[:, t]
            for layer, cell in enumerate(cells):
                carry[layer], x = cell(carry[layer], x)
            outputs.append(x)
        actions = jnp.tanh(head(jnp.stack(outputs, axis=1)))
        return tuple(carry), actions


def zero_carry(config: BCRNNConfig, batch_size: int) -> Carry:
    """The LSTM state at an episode start and after every `rnn_horizon` calls (robomimic: zeros)."""
    zeros = jnp.zeros((batch_size, config.rnn_hidden_dim), jnp.float32)
    return tuple((zeros, zeros) for _ in range(config.rnn_num_layers))


def make_network(config: BCRNNConfig, action_dim: int) -> RecurrentActor:
    return RecurrentActor(
        hidden_dim=config.rnn_hidden_dim,
        num_layers=config.rnn_num_layers,
        head_dims=config.head_dims,
        action_dim=action_dim,
        activation=config.activation,
    )
