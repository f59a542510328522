"""Flax building blocks shared by the agents: MLP, tanh-Gaussian actor, Q ensemble.

The layer order of the critic MLP (Dense -> Dropout -> LayerNorm -> activation)
is DroQ's (Hiraoka et al. 2022, "Dropout Q-Functions for Doubly Efficient
Reinforcement Learning"), as used by robopianist-rl and RP1M (Table 4).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": nn.gelu,  # RP1M Table 4 ("Activation GeLU"); tanh approximation, as flax/robopianist-rl.
    "relu": nn.relu,
    "silu": nn.silu,
    "elu": nn.elu,
    "tanh": nn.tanh,
}
ACTIVATION_NAMES: tuple[str, ...] = tuple(sorted(ACTIVATIONS))

# Glorot-uniform weights for every Dense layer, as robopianist-rl and walk_in_the_park.
default_kernel_init = nn.initializers.xavier_uniform


def activation_by_name(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation function called `name` (one of ACTIVATION_NAMES)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {ACTIVATION_NAMES}"
        ) from None


class MLP(nn.Module):
    """Fully connected stack: Dense -> [Dropout] -> [LayerNorm] -> activation per layer.

    Attributes:
      hidden_dims: width of each Dense layer.
      activation: name of the activation (see ACTIVATION_NAMES).
      activate_final: apply dropout/norm/activation after the last layer too.
      dropout_rate: dropout probability; 0 disables dropout. Dropout is only
        active when called with `training=True` and a "dropout" rng.
      use_layer_norm: LayerNorm after dropout, before the activation.
    """

    hidden_dims: Sequence[int]
    activation: str = "gelu"
    activate_final: bool = False
    dropout_rate: float = 0.0
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        activation = activation_by_name(self.activation)
        for index, width in enumerate(self.hidden_dims):
            x = nn.Dense(width, kernel_init=default_kernel_init())(x)
            if index + 1 < len(self.hidden_dims) or self.activate_final:
                if self.dropout_rate > 0.0:
                    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not training)
                if self.use_layer_norm:
                    x = nn.LayerNorm()(x)
                x = activation(x)
        return x


class TanhGaussianActor(nn.Module):
    """Policy head: MLP torso -> (mean, log_std) of a diagonal Gaussian before tanh.

    Returns the parameters, not a distribution object; sampling, log-probs and
    the mode live in `agents.common.distributions` as pure functions.
    The log-std clip range [-20, 2] is robopianist-rl's (distributions.py).
    """

    hidden_dims: Sequence[int]
    action_dim: int
    activation: str = "gelu"
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden_dims, activation=self.activation, activate_final=True)(
            observations
        )
        mean = nn.Dense(self.action_dim, kernel_init=default_kernel_init(), name="mean")(x)
        log_std = nn.Dense(
            self.action_dim, kernel_init=default_kernel_init(), name="log_std"
        )(x)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, log_std


class StateActionValue(nn.Module):
    """Q(s, a): MLP on the concatenation [s, a] followed by a scalar Dense head."""

    hidden_dims: Sequence[int]
    activation: str = "gelu"
    dropout_rate: float = 0.0
    use_layer_norm: bool = False

    @nn.compact
    def __call__(
        self, observations: jax.Array, actions: jax.Array, training: bool = False
    ) -> jax.Array:
        x = jnp.concatenate([observations, actions], axis=-1)
        x = MLP(
            self.hidden_dims,
            activation=self.activation,
            activate_final=True,
            dropout_rate=self.dropout_rate,
            use_layer_norm=self.use_layer_norm,
        )(x, training)
        return jnp.squeeze(nn.Dense(1, kernel_init=default_kernel_init())(x), axis=-1)


class QEnsemble(nn.Module):
    """`num_qs` independent Q networks evaluated in one call via `nn.vmap`.

    Parameters get a leading ensemble axis of size `num_qs`; each member draws
    its own initialisation and its own dropout mask. Output shape is
    `(num_qs, *batch_shape)`.
    """

    num_qs: int
    hidden_dims: Sequence[int]
    activation: str = "gelu"
    dropout_rate: float = 0.0
    use_layer_norm: bool = False

    @nn.compact
    def __call__(
        self, observations: jax.Array, actions: jax.Array, training: bool = False
    ) -> jax.Array:
        ensemble = nn.vmap(
            StateActionValue,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        return ensemble(
            hidden_dims=self.hidden_dims,
            activation=self.activation,
            dropout_rate=self.dropout_rate,
            use_layer_norm=self.use_layer_norm,
            name="members",
        )(observations, actions, training)
