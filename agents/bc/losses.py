"""BC loss: mean squared error between predicted and expert action chunks (RP1M B.1.1)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def mse_loss(
    params: Any,
    apply_fn: Callable[..., jax.Array],
    obs: jax.Array,
    actions: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean over batch, horizon and action dimensions of (pi(obs) - actions)^2.

    Args:
      params: network parameters.
      apply_fn: maps ({"params": params}, obs (B, To, Do)) -> (B, Tp, Da).
      obs: normalized observation windows (B, To, Do).
      actions: normalized expert action chunks (B, Tp, Da), in [-1, 1].
    Returns:
      (loss, metrics) with metrics["loss"] == loss and "max_abs_error".
    """
    predicted = apply_fn({"params": params}, obs)
    error = predicted - actions
    loss = jnp.mean(jnp.square(error))
    return loss, {"loss": loss, "max_abs_error": jnp.max(jnp.abs(error))}
