"""DDPM noise schedule and the DDIM sampler step (Ho et al. 2020; Song et al. 2021).

The conventions are diffusers' `DDPMScheduler` / `DDIMScheduler`, which
diffusion_policy uses: integer timesteps t in [0, T), alpha_bar[t] =
prod_{s <= t} (1 - beta_s), "leading" spacing of the inference timesteps,
epsilon prediction, eta = 0 (deterministic DDIM), and the model's own epsilon
(not the one implied by the clipped x0) in the direction term.

Tables are numpy (computed once per config, float64 then stored float32 like
diffusers); the step functions are plain array math usable under jit.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np

# diffusers' `betas_for_alpha_bar` caps beta below 1 so alpha_bar never reaches 0.
MAX_BETA = 0.999
# Offset s of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17).
COSINE_OFFSET = 0.008


def cosine_alpha_bar(time: np.ndarray) -> np.ndarray:
    """alpha_bar(time) = cos((time + s) / (1 + s) * pi / 2) ** 2 for time in [0, 1]."""
    return np.cos((np.asarray(time, np.float64) + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def betas(schedule: str, num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """beta_t for t = 0 .. T-1 (float64).

    "squaredcos_cap_v2": beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), 0.999).
    "linear": evenly spaced from `beta_start` to `beta_end`.
    """
    steps = np.arange(num_train_timesteps, dtype=np.float64)
    if schedule == "squaredcos_cap_v2":
        ratio = cosine_alpha_bar((steps + 1) / num_train_timesteps) / cosine_alpha_bar(steps / num_train_timesteps)
        return np.minimum(1.0 - ratio, MAX_BETA)
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}: expected 'squaredcos_cap_v2' or 'linear'")


def alphas_cumprod(
    schedule: str, num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """alpha_bar[t] = prod_{s <= t} (1 - beta_s), float32, shape (T,)."""
    return np.cumprod(1.0 - betas(schedule, num_train_timesteps, beta_start, beta_end)).astype(np.float32)


def ddim_timesteps(num_train_timesteps: int, num_inference_steps: int, steps_offset: int = 0) -> np.ndarray:
    """Denoising timesteps, highest first: i * (T // n) for i = n-1 .. 0 (diffusers' "leading"
    spacing), plus `steps_offset`. (T=100, n=10) -> [90, 80, ..., 0]."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"ddim_timesteps: num_inference_steps={num_inference_steps} must be in [1, {num_train_timesteps}]"
        )
    ratio = num_train_timesteps // num_inference_steps
    return (np.arange(num_inference_steps, dtype=np.int64) * ratio)[::-1] + steps_offset


@dataclasses.dataclass(frozen=True)
class DDIMTables:
    """Per denoising step i (in sampling order): timestep, alpha_bar at it and at the previous
    (less noisy) timestep t - T // n, or `final_alpha_bar` past t = 0."""

    timesteps: np.ndarray  # (n,) int32
    alpha_bar: np.ndarray  # (n,) float32
    alpha_bar_prev: np.ndarray  # (n,) float32


def ddim_tables(
    alpha_bars: np.ndarray, num_inference_steps: int, *, set_alpha_to_one: bool = True
) -> DDIMTables:
    num_train_timesteps = len(alpha_bars)
    timesteps = ddim_timesteps(num_train_timesteps, num_inference_steps)
    prev = timesteps - num_train_timesteps // num_inference_steps
    final = np.float32(1.0) if set_alpha_to_one else alpha_bars[0]
    alpha_bar_prev = np.where(prev >= 0, alpha_bars[np.maximum(prev, 0)], final)
    return DDIMTables(
        timesteps=timesteps.astype(np.int32),
        alpha_bar=alpha_bars[timesteps].astype(np.float32),
        alpha_bar_prev=alpha_bar_prev.astype(np.float32),
    )


@functools.lru_cache(maxsize=None)
def _cached_alphas_cumprod(schedule, num_train_timesteps, beta_start, beta_end) -> np.ndarray:
    values = alphas_cumprod(schedule, num_train_timesteps, beta_start, beta_end)
    values.flags.writeable = False
    return values


def config_alphas_cumprod(config) -> np.ndarray:
    """alpha_bar table of a `DiffusionConfig` (cached; read-only)."""
    return _cached_alphas_cumprod(config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end)


def config_ddim_tables(config) -> DDIMTables:
    """The DDIM tables of a `DiffusionConfig`."""
    return ddim_tables(
        config_alphas_cumprod(config), config.num_inference_steps, set_alpha_to_one=config.set_alpha_to_one
    )


def add_noise(clean, noise, alpha_bar_t):
    """Forward process q(x_t | x_0): sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

    `alpha_bar_t` broadcasts against the leading (batch) axis: shape (B,) for
    samples (B, ...), or a scalar.
    """
    alpha_bar_t = jnp.asarray(alpha_bar_t)
    alpha_bar_t = alpha_bar_t.reshape(alpha_bar_t.shape + (1,) * (jnp.ndim(clean) - alpha_bar_t.ndim))
    return jnp.sqrt(alpha_bar_t) * clean + jnp.sqrt(1.0 - alpha_bar_t) * noise


def ddim_step(sample, epsilon, alpha_bar_t, alpha_bar_prev, *, clip_sample: bool):
    """One deterministic DDIM step (eta = 0) from x_t to x_prev given the predicted noise.

      x0     = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), clipped to [-1, 1] if `clip_sample`
      x_prev = sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev) eps
    """
    pred_clean = (sample - jnp.sqrt(1.0 - alpha_bar_t) * epsilon) / jnp.sqrt(alpha_bar_t)
    if clip_sample:
        pred_clean = jnp.clip(pred_clean, -1.0, 1.0)
    return jnp.sqrt(alpha_bar_prev) * pred_clean + jnp.sqrt(1.0 - alpha_bar_prev) * epsilon
