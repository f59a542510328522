"""PianoMime's training losses as pure functions (explicit PRNG keys).

Diffusion levels: DDPM noise prediction (App. H; `agents.diffusion.losses`).
BeT levels (Shafiullah et al. 2022): focal loss on the k-means bin of each
target step plus the MSE of that bin's predicted offset to the target.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from agents.diffusion.losses import ddpm_epsilon_loss
from agents.diffusion.schedule import add_noise


def diffusion_loss(params: Any, apply_fn: Callable, seq, extra, target, key, alphas_cumprod, live=None):
    """DDPM epsilon loss of the TCN-conditioned U-Net; target (B, Tp, D) in [-1, 1].

    `live` (D,) bool: the target dimensions that vary in the training data. The
    others are constant (a key that is never played, a fingertip that never
    moves), their output is replaced by the constant (`features.unnormalize_target`),
    so their noise is left out of the mean (ours; it would otherwise dominate
    the loss of sparse data). None: every dimension."""
    if live is None:
        return ddpm_epsilon_loss(params, apply_fn, (seq, extra), target, key, alphas_cumprod)
    noise_key, time_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, target.shape, target.dtype)
    timesteps = jax.random.randint(time_key, (target.shape[0],), 0, alphas_cumprod.shape[0])
    noisy = add_noise(target, noise, alphas_cumprod[timesteps])
    predicted = apply_fn({"params": params}, noisy, timesteps, (seq, extra))
    weight = jnp.asarray(live, jnp.float32)
    loss = jnp.sum(jnp.square(predicted - noise) * weight) / (jnp.maximum(weight.sum(), 1.0) * target.shape[0]
                                                              * target.shape[1])
    return loss, {"loss": loss}


def nearest_bins(target: jax.Array, centers: jax.Array) -> jax.Array:
    """(..., D) vectors -> (...,) index of the nearest of (K, D) centers."""
    distances = jnp.sum(jnp.square(target[..., None, :] - centers), axis=-1)
    return jnp.argmin(distances, axis=-1)


def focal_loss(logits: jax.Array, labels: jax.Array, gamma: float) -> jax.Array:
    """Mean of -(1 - p_y)^gamma log p_y (Lin et al. 2017, as BeT)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    log_py = jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    return jnp.mean(-((1.0 - jnp.exp(log_py)) ** gamma) * log_py)


def bet_loss(params: Any, apply_fn: Callable, seq, extra, target, centers, gamma: float, offset_weight: float):
    """Focal loss on the bins + offset_weight * MSE(center_bin + offset_bin, target)."""
    logits, offsets = apply_fn({"params": params}, seq, extra)
    labels = nearest_bins(target, centers)
    chosen = jnp.take_along_axis(offsets, labels[..., None, None], axis=-2)[..., 0, :]
    offset_mse = jnp.mean(jnp.square(centers[labels] + chosen - target))
    classification = focal_loss(logits, labels, gamma)
    loss = classification + offset_weight * offset_mse
    return loss, {"loss": loss, "focal": classification, "offset_mse": offset_mse}
