"""The goal SDF (PianoMime Eq. 5) and the autoencoder's reconstruction loss (Eq. 6), pure functions."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def goal_sdf(goals: jax.Array, queries: jax.Array, key_points: jax.Array, max_distance: float) -> jax.Array:
    """SDF(x, A) = min over keys i with A_i = 1 of |x - p_i| (Eq. 5), clipped at `max_distance`.

    goals (B, 88) 0/1, queries (B, Q, 3), key_points (88, 3) -> (B, Q). A goal
    with no key down is `max_distance` everywhere.
    """
    distances = jnp.linalg.norm(queries[:, :, None, :] - key_points[None, None], axis=-1)  # (B, Q, 88)
    active = goals[:, None, :] > 0.5
    nearest = jnp.min(jnp.where(active, distances, jnp.inf), axis=-1)
    return jnp.minimum(nearest, max_distance)


def reconstruction_loss(
    params: Any,
    apply_fn: Callable[..., jax.Array],
    goals: jax.Array,
    queries: jax.Array,
    unit_queries: jax.Array,
    key_points: jax.Array,
    max_distance: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean of (SDF(x, A) / d_max - D(E(A), x))^2 over goals and queries (Eq. 6, scaled by d_max^2).

    Metrics: "loss" and "rmse_m", the root mean squared error in metres.
    """
    target = goal_sdf(goals, queries, key_points, max_distance) / max_distance
    predicted = apply_fn({"params": params}, goals, unit_queries)
    loss = jnp.mean(jnp.square(predicted - target))
    return loss, {"loss": loss, "rmse_m": jnp.sqrt(loss) * max_distance}
