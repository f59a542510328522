"""BC-RNN loss: robomimic's L2 loss over every step of the training sequences."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def sequence_mse_loss(
    params: Any,
    apply_fn: Callable[..., Any],
    initial_carry: Any,
    obs: jax.Array,
    actions: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean over batch, time and action dims of (pi(o_1..o_t) - a_t)^2.

    Args:
      params: network parameters.
      apply_fn: maps ({"params"}, carry, obs (B, T, Do)) -> (carry, actions (B, T, Da)).
      initial_carry: LSTM state at the first step of each sequence (zeros,
        as robomimic).
      obs: normalized observation sequences (B, T, Do).
      actions: normalized expert actions taken at those observations (B, T, Da).
    Returns:
      (loss, metrics) with "loss" and "last_step_loss" (the error at the
      sequence's last step, the one with the most history).
    """
    _, predicted = apply_fn({"params": params}, initial_carry, obs)
    squared = jnp.square(predicted - actions)
    loss = jnp.mean(squared)
    return loss, {"loss": loss, "last_step_loss": jnp.mean(squared[:, -1])}
