"""Tanh-squashed diagonal Gaussian as pure functions (SAC appendix C, Haarnoja et al. 2018).

An action is a = tanh(u) with u ~ N(mean, diag(exp(log_std))^2). By change of
variables, log p(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2).
All functions reduce over the last axis (the action dimension) and broadcast
over any leading batch axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(u; mean, exp(log_std)^2), summed over the last axis."""
    z = (u - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
    """sum_i log(d tanh(u_i)/du_i) = sum_i log(1 - tanh(u_i)^2), computed stably.

    Uses log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), which stays
    finite where 1 - tanh(u)^2 underflows to 0 in float32 (|u| > ~9).
    """
    return jnp.sum(2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def tanh_gaussian_sample(
    key: jax.Array, mean: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Draws a = tanh(mean + std * eps) and returns (a, log p(a)).

    The log-prob is computed from the pre-squash sample u, not from arctanh(a),
    so it stays accurate when a saturates at +-1.
    """
    eps = jax.random.normal(key, mean.shape, dtype=mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    log_prob = gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u)
    return jnp.tanh(u), log_prob


def tanh_gaussian_log_prob(
    actions: jax.Array, mean: jax.Array, log_std: jax.Array, clip: float = 1e-6
) -> jax.Array:
    """log p(a) for given squashed actions in (-1, 1).

    Actions are clipped to [-1 + clip, 1 - clip] before arctanh; values exactly
    at the bounds therefore get a large but finite log-prob.
    """
    u = jnp.arctanh(jnp.clip(actions, -1.0 + clip, 1.0 - clip))
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u)


def tanh_gaussian_mode(mean: jax.Array) -> jax.Array:
    """Deterministic action used for evaluation: tanh(mean).

    (tanh of the Gaussian mode; the exact mode of the squashed density differs
    slightly for large std, but this is the convention of SAC/DroQ codebases.)
    """
    return jnp.tanh(mean)
