"""DroQ's networks, built from a DroQConfig: tanh-Gaussian actor, Q ensemble, temperature.

Module instances are memoised on the settings they depend on. Their `apply`
methods become static fields of the agent state (TrainState.apply_fn), i.e.
part of the pytree structure jit caches on; flax modules built separately do
not compare equal, so without the memo every `init` (and every restored
checkpoint template) would recompile `update` and `sample_actions`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.common.networks import QEnsemble, TanhGaussianActor
from agents.droq.config import DroQConfig


def make_actor(config: DroQConfig, action_dim: int) -> TanhGaussianActor:
    """Actor MLP (no dropout, no LayerNorm, as in DroQ) with a tanh-Gaussian head."""
    return _actor(
        config.hidden_dims, action_dim, config.activation, config.log_std_min, config.log_std_max
    )


def make_critic(config: DroQConfig) -> QEnsemble:
    """Ensemble of `num_qs` Q networks with DroQ's dropout + LayerNorm."""
    return _critic(
        config.num_qs,
        config.hidden_dims,
        config.activation,
        config.critic_dropout_rate,
        config.critic_layer_norm,
    )


def make_temperature(config: DroQConfig) -> Temperature:
    """Learnable temperature starting at `config.init_temperature`."""
    return _temperature(config.init_temperature)


class Temperature(nn.Module):
    """Entropy temperature alpha = exp(log_alpha); log-parametrised so alpha stays > 0."""

    init_temperature: float = 1.0

    @nn.compact
    def __call__(self) -> jax.Array:
        log_temperature = self.param(
            "log_temperature",
            lambda _: jnp.full((), jnp.log(self.init_temperature), jnp.float32),
        )
        return jnp.exp(log_temperature)


@functools.lru_cache(maxsize=None)
def _actor(hidden_dims, action_dim, activation, log_std_min, log_std_max) -> TanhGaussianActor:
    return TanhGaussianActor(
        hidden_dims=hidden_dims,
        action_dim=action_dim,
        activation=activation,
        log_std_min=log_std_min,
        log_std_max=log_std_max,
    )


@functools.lru_cache(maxsize=None)
def _critic(num_qs, hidden_dims, activation, dropout_rate, use_layer_norm) -> QEnsemble:
    return QEnsemble(
        num_qs=num_qs,
        hidden_dims=hidden_dims,
        activation=activation,
        dropout_rate=dropout_rate,
        use_layer_norm=use_layer_norm,
    )


@functools.lru_cache(maxsize=None)
def _temperature(init_temperature) -> Temperature:
    return Temperature(init_temperature)
