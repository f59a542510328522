"""Diffusion Policy training loss as a pure function (explicit PRNG key).

Shapes: B = batch, Tp = prediction horizon, Da = action dim, G = To * obs_dim.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from agents.diffusion.schedule import add_noise

Params = Any
ApplyFn = Callable[..., jax.Array]


def ddpm_epsilon_loss(
    params: Params,
    apply_fn: ApplyFn,
    global_cond: jax.Array,
    actions: jax.Array,
    key: jax.Array,
    alphas_cumprod: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DDPM noise-prediction loss (Ho et al. 2020, Eq. 14; diffusion_policy's `compute_loss`).

    A timestep t ~ U{0, ..., T-1} and noise eps ~ N(0, I) per sample; the
    network predicts eps from x_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps;
    the loss is the mean squared error over every element.

    Args:
      params: network parameters ({"params": ...} is added here).
      apply_fn: the U-Net's `apply`: (variables, x_t (B,Tp,Da), t (B,), cond (B,G)) -> (B,Tp,Da).
      global_cond: (B, G) flattened normalized observation windows.
      actions: (B, Tp, Da) normalized action chunks, in [-1, 1].
      key: PRNG key for t and eps.
      alphas_cumprod: (T,) alpha_bar table.
    """
    noise_key, time_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, actions.shape, actions.dtype)
    timesteps = jax.random.randint(time_key, (actions.shape[0],), 0, alphas_cumprod.shape[0])
    noisy = add_noise(actions, noise, alphas_cumprod[timesteps])
    predicted = apply_fn({"params": params}, noisy, timesteps, global_cond)
    loss = jnp.mean(jnp.square(predicted - noise))
    return loss, {"loss": loss}
