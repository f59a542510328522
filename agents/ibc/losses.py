"""IBC's InfoNCE loss (Florence et al. 2021, Eq. 3; RP1M B.1.2) as a pure function."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def info_nce_loss(
    params: Any,
    apply_fn: Callable[..., jax.Array],
    obs: jax.Array,
    positives: jax.Array,
    key: jax.Array,
    *,
    num_counter_examples: int,
    temperature: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """-log softmax(-E/T) of the expert action among uniform counter-examples.

    Args:
      params: energy-network parameters.
      apply_fn: maps ({"params"}, obs (B, To, Do), candidates (B, N, K),
        training, rngs) -> energies (B, N).
      obs: normalized observation windows (B, To, Do).
      positives: normalized expert actions, flattened (B, K), in [-1, 1].
      key: draws the counter-examples and the dropout masks.
      num_counter_examples: negatives per example, uniform in [-1, 1]^K
        (the normalized action bounds).
      temperature: softmax temperature.
    Returns:
      (loss, metrics): loss is the mean cross-entropy with the expert action
      as the label; metrics add "accuracy" (the expert action has the lowest
      energy), "energy_expert" and "energy_counter" (mean energies).
    """
    negative_key, dropout_key = jax.random.split(key)
    batch_size, action_size = positives.shape
    negatives = jax.random.uniform(
        negative_key, (batch_size, num_counter_examples, action_size), minval=-1.0, maxval=1.0
    )
    candidates = jnp.concatenate([positives[:, None, :], negatives], axis=1)
    energies = apply_fn({"params": params}, obs, candidates, training=True, rngs={"dropout": dropout_key})
    log_probs = jax.nn.log_softmax(-energies / temperature, axis=-1)
    loss = -jnp.mean(log_probs[:, 0])
    return loss, {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmin(energies, axis=-1) == 0),
        "energy_expert": jnp.mean(energies[:, 0]),
        "energy_counter": jnp.mean(energies[:, 1:]),
    }
