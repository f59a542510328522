"""Conditional flow matching with the linear (rectified) path, as a pure function.

x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I) and x1 the normalized action chunk;
the network predicts the velocity x1 - x0 (Lipman et al. 2023; Liu et al. 2023).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_times(key, batch: int, sampling: str) -> jax.Array:
    if sampling == "beta":  # pi0 (Black et al. 2024): Beta(1.5, 1) over noisy times, t = 1 - 0.999 s
        return 1.0 - 0.999 * jax.random.beta(key, 1.5, 1.0, (batch,))
    return jax.random.uniform(key, (batch,))


def flow_matching_loss(params, apply_fn, global_cond, actions, key, *, time_scale: float, sampling: str):
    """MSE between the predicted and the path's velocity; actions (B, Tp, Da) in [-1, 1]."""
    noise_key, time_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, actions.shape, actions.dtype)
    t = sample_times(time_key, actions.shape[0], sampling)
    x_t = (1.0 - t)[:, None, None] * noise + t[:, None, None] * actions
    predicted = apply_fn({"params": params}, x_t, t * time_scale, global_cond)
    loss = jnp.mean(jnp.square(predicted - (actions - noise)))
    return loss, {"loss": loss}
