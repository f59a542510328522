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


def diffusion_loss(params: Any, apply_fn: Callable, seq, extra, target, key, alphas_cumprod):
    """DDPM epsilon loss of the TCN-conditioned U-Net; target (B, Tp, D) in [-1, 1]."""
    return ddpm_epsilon_loss(params, apply_fn, (seq, extra), target, key, alphas_cumprod)


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
