"""The observation part of Diffusion Policy's FiLM, read from binary goal inputs as a sum of rows.

Every residual block's FiLM adds Mish(g) @ W_b, g the normalized observation
window (To x 1144 values, RP1M Table 3). At batch 1 that product reads all
of W (To * 1144 x 14336 floats at paper sizes, more than a whole denoising
step's weights) and is most of a decision's fixed cost. But the goal inputs
(`piano_goal`, `sustain_goal`: 979 of the 1144 per frame) are 0 or 1, so their
Mish(g) takes one of two values per input, and

    Mish(g) @ W = Mish(g_rest) @ W_rest + base + sum over goal inputs at 1 of delta_k

with base = sum_k Mish(n_k(0)) W_k and delta_k = (Mish(n_k(1)) - Mish(n_k(0))) W_k
computed once per policy. Per call that reads W_rest and a few dozen rows
(the keys to press). The same function up to float rounding (the sum runs in
another order; tests/agents/test_diffusion.py bounds the difference); a
window with a goal value other than 0 or 1 goes the dense way.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from agents.diffusion.networks import make_unet, mish
from envs.piano.spec import OBS_DIM, observation_sizes

BINARY_KEYS = ("piano_goal", "sustain_goal")  # RP1M observation entries that are 0 or 1


def binary_dims(obs_dim: int = OBS_DIM) -> np.ndarray:
    """Indices of the 0/1 entries in one RP1M observation (empty unless `obs_dim` is RP1M's)."""
    if obs_dim != OBS_DIM:
        return np.zeros(0, np.int64)
    out, offset = [], 0
    for key, size in observation_sizes().items():
        if key in BINARY_KEYS:
            out.append(np.arange(offset, offset + size))
        offset += size
    return np.concatenate(out)


def obs_film_kernels(params, net) -> list[jax.Array]:
    """Each residual block's observation FiLM kernel (G, W), in `film_from_obs` order."""
    bound = net.bind({"params": params})
    return [block.cond_obs.variables["params"]["kernel"] for block in bound._residual_blocks()]


@jax.jit
def _dense(weights, features):
    return mish(features) @ weights


@dataclass
class ObsFilm:
    """`film_from_obs` of one policy's U-Net for raw windows whose goal inputs are 0/1."""

    dense_index: np.ndarray  # (Gd,) window positions computed densely
    binary_index: np.ndarray  # (Gb,) window positions that are 0/1
    dense_mean: np.ndarray  # normalizer of the dense positions
    dense_std: np.ndarray
    dense_weights: jax.Array  # (Gd, sum W)
    binary_weights: np.ndarray  # (Gb, sum W)
    binary_gain: np.ndarray  # (Gb,) Mish(n(1)) - Mish(n(0))
    base: np.ndarray  # (sum W,)
    widths: tuple[int, ...]  # W of each block, in `film_from_obs` order

    @classmethod
    def build(cls, params, config, spec, normalizer) -> "ObsFilm | None":
        """For a policy on RP1M observations; None when its observations have no 0/1 entries."""
        per_frame = binary_dims(spec.obs_dim)
        if not per_frame.size:
            return None
        to, dim = spec.obs_horizon, spec.obs_dim
        kernels = obs_film_kernels(params, make_unet(config, spec.action_dim, to * dim))
        weights = np.concatenate([np.asarray(k, np.float32) for k in kernels], axis=-1)  # (G, sum W)
        binary = np.concatenate([f * dim + per_frame for f in range(to)])
        dense = np.setdiff1d(np.arange(to * dim), binary)
        mean = np.tile(np.asarray(normalizer.obs_mean, np.float32), to)
        std = np.tile(np.asarray(normalizer.obs_std, np.float32), to)
        off = np.asarray(mish(jnp.asarray((0.0 - mean[binary]) / std[binary])))
        on = np.asarray(mish(jnp.asarray((1.0 - mean[binary]) / std[binary])))
        return cls(
            dense_index=dense, binary_index=binary, dense_mean=mean[dense], dense_std=std[dense],
            dense_weights=jnp.asarray(weights[dense]), binary_weights=weights[binary],
            binary_gain=(on - off).astype(np.float32), base=(off @ weights[binary]).astype(np.float32),
            widths=tuple(int(k.shape[-1]) for k in kernels),
        )

    def __call__(self, obs: np.ndarray) -> tuple[jax.Array, ...] | None:
        """Per block the (B, W) observation FiLM of raw windows (B, To, obs_dim), or None if a
        goal input is not 0/1."""
        flat = np.asarray(obs, np.float32).reshape(obs.shape[0], -1)
        goal = flat[:, self.binary_index]
        active = goal == 1.0
        if not (active | (goal == 0.0)).all():
            return None
        dense = (flat[:, self.dense_index] - self.dense_mean) / self.dense_std
        films = np.asarray(_dense(self.dense_weights, jnp.asarray(dense))) + self.base
        for row, keys in enumerate(active):
            index = np.flatnonzero(keys)
            if index.size:
                films[row] += self.binary_gain[index] @ self.binary_weights[index]
        bounds = np.cumsum((0,) + self.widths)
        return tuple(jnp.asarray(films[:, lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]))
