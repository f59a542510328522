"""Sampling a level's normalized output: DDPM / DDIM over chosen timesteps, or BeT bins.

With fewer inference steps n than training timesteps T, the timesteps are n
evenly spaced values of [0, T-1], highest first (T-1 ... 0; diffusers'
"leading" spacing would start at 79 for n = 80, T = 100). Each step goes
from timestep t to the next listed one t' (alpha_bar = 1 past the last):

  DDPM (ancestral, diffusers' `DDPMScheduler.step` with a skip): x0 from eps,
    clipped; mean = sqrt(ab') (1 - a) / (1 - ab) x0 + sqrt(a) (1 - ab') / (1 - ab) x_t
    with a = ab / ab'; plus sqrt((1 - ab') / (1 - ab) (1 - a)) z when t > 0.
  DDIM (eta 0): `agents.diffusion.schedule.ddim_step`.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from agents.diffusion.schedule import ddim_step


def inference_timesteps(num_train_timesteps: int, steps: int) -> np.ndarray:
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"inference steps {steps} must be in [1, {num_train_timesteps}]")
    values = np.unique(np.round(np.linspace(0, num_train_timesteps - 1, steps)).astype(np.int32))
    return values[::-1].copy()


def step_tables(alphas_cumprod: np.ndarray, timesteps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """alpha_bar at each listed timestep and at the next one (1.0 after the last)."""
    alpha_bar = alphas_cumprod[timesteps].astype(np.float32)
    prev = np.append(alphas_cumprod[timesteps[1:]], 1.0).astype(np.float32)
    return alpha_bar, prev


def ddpm_step(sample, epsilon, alpha_bar, alpha_bar_prev, noise, *, clip_sample: bool):
    pred_clean = (sample - jnp.sqrt(1.0 - alpha_bar) * epsilon) / jnp.sqrt(alpha_bar)
    if clip_sample:
        pred_clean = jnp.clip(pred_clean, -1.0, 1.0)
    alpha = alpha_bar / alpha_bar_prev
    beta = 1.0 - alpha
    mean = (jnp.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar)) * pred_clean \
        + (jnp.sqrt(alpha) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)) * sample
    variance = jnp.maximum((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta, 1e-20)
    last = alpha_bar_prev >= 1.0
    return mean + jnp.where(last, 0.0, jnp.sqrt(variance)) * noise


def diffusion_sample(net, params, seq, extra, key, *, timesteps, alphas_cumprod, shape, sampler: str,
                     clip_sample: bool):
    """(B, L, C), (B, E) normalized inputs -> (B, Tp, D) in [-1, 1]; call under jit."""
    variables = {"params": params}
    cond = net.apply(variables, seq, extra, method="condition")
    obs_films = net.apply(variables, cond, method="film_from_obs")
    time_films = net.apply(variables, jnp.asarray(timesteps), method="film_from_time")
    alpha_bar, alpha_bar_prev = (jnp.asarray(a) for a in step_tables(alphas_cumprod, timesteps))
    init_key, loop_key = jax.random.split(key)

    def body(i, x):
        films = [o + t[i][None, :] for o, t in zip(obs_films, time_films)]
        epsilon = net.apply(variables, x, films, method="denoise")
        if sampler == "ddim":
            return ddim_step(x, epsilon, alpha_bar[i], alpha_bar_prev[i], clip_sample=clip_sample)
        noise = jax.random.normal(jax.random.fold_in(loop_key, i), x.shape)
        return ddpm_step(x, epsilon, alpha_bar[i], alpha_bar_prev[i], noise, clip_sample=clip_sample)

    x = jax.random.normal(init_key, shape, jnp.float32)
    return jnp.clip(jax.lax.fori_loop(0, len(timesteps), body, x), -1.0, 1.0)


def bet_sample(net, params, seq, extra, centers, key):
    """A bin per predicted step drawn from the softmax, plus its offset; clipped to [-1, 1]."""
    logits, offsets = net.apply({"params": params}, seq, extra)
    bins = jax.random.categorical(key, logits, axis=-1)
    chosen = jnp.take_along_axis(offsets, bins[..., None, None], axis=-2)[..., 0, :]
    return jnp.clip(centers[bins] + chosen, -1.0, 1.0)


def _sq_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.maximum((points ** 2).sum(1)[:, None] + (centers ** 2).sum(1)[None] - 2.0 * points @ centers.T, 0.0)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50) -> np.ndarray:
    """(K, D) Lloyd centers of (N, D) points (k-means++ start); K = min(k, distinct points)."""
    points = np.asarray(points, np.float64)
    distinct = np.unique(points, axis=0)
    k = min(k, len(distinct))
    centers = [distinct[rng.integers(len(distinct))]]
    d2 = _sq_distances(distinct, np.asarray(centers))[:, 0]
    for _ in range(1, k):
        pick = rng.choice(len(distinct), p=d2 / d2.sum()) if d2.sum() > 0 else int(np.argmax(d2))
        centers.append(distinct[pick])
        d2 = np.minimum(d2, _sq_distances(distinct, distinct[pick][None])[:, 0])
    centers = np.asarray(centers)
    for _ in range(iterations):
        labels = np.argmin(_sq_distances(points, centers), axis=1)
        for j in range(k):
            members = points[labels == j]
            if len(members):
                centers[j] = members.mean(0)
    return centers.astype(np.float32)
