"""PianoMime's networks: the TCN-conditioned U-Net of App. H and the Behavior Transformer of App. I.

TCN (App. H, Table 7): 1-D convolutions over the time axis of the sequence
input (goals for the high level and One-stage, fingertips for the low level),
Mish after each, flattened and concatenated with the other inputs; the U-Net
(diffusion_policy's `ConditionalUnet1D`, `agents.diffusion.networks`) takes
that vector as its FiLM condition at every level.

BeT (Shafiullah et al. 2022; PianoMime Table 8): tokens = one per sequence
step, one for the other inputs, one learned query per predicted step, each
with a learned position; pre-LayerNorm transformer blocks over all of them
(no causal mask: the chunk is predicted at once); each query token gives
logits over the k-means bins and one offset per bin.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.diffusion.networks import ConditionalUnet1D, Conv1d, init_params_fast, mish, torch_uniform_init
from agents.pianomime.features import LevelSpec


class TCN(nn.Module):
    """(B, L, C) -> (B, L * channels[-1]): 'same' Conv1d + Mish per layer, flattened."""

    channels: Sequence[int]
    kernel_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.channels:
            x = mish(Conv1d(width, self.kernel_size, padding=self.kernel_size // 2)(x))
        return x.reshape(x.shape[0], -1)


class ConditionedUnet(nn.Module):
    """eps(x_t, t | seq, extra): the TCN features and `extra` are the U-Net's global condition."""

    spec: LevelSpec
    down_dims: Sequence[int]
    kernel_size: int
    n_groups: int
    embed_dim: int
    tcn_channels: Sequence[int]
    tcn_kernel_size: int

    def setup(self):
        self.tcn = TCN(self.tcn_channels, self.tcn_kernel_size)
        cond_dim = self.spec.seq_len * self.tcn_channels[-1] + self.spec.extra_dim
        self.unet = ConditionalUnet1D(action_dim=self.spec.target_dim, global_cond_dim=cond_dim,
                                      down_dims=tuple(self.down_dims), kernel_size=self.kernel_size,
                                      n_groups=self.n_groups, diffusion_step_embed_dim=self.embed_dim)

    def condition(self, seq: jax.Array, extra: jax.Array) -> jax.Array:
        return jnp.concatenate([self.tcn(seq), extra], axis=-1)

    def film_from_obs(self, cond: jax.Array):
        return self.unet.film_from_obs(cond)

    def film_from_time(self, timesteps: jax.Array):
        return self.unet.film_from_time(timesteps)

    def denoise(self, sample: jax.Array, films):
        return self.unet.denoise(sample, films)

    def __call__(self, sample: jax.Array, timesteps: jax.Array, cond_inputs) -> jax.Array:
        seq, extra = cond_inputs
        return self.unet(sample, timesteps, self.condition(seq, extra))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + MHA(LN(x)); x + MLP(LN(x)) with a 4x GELU MLP."""

    heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(x))
        h = nn.Dense(width)(nn.gelu(nn.Dense(4 * width)(nn.LayerNorm()(x))))
        return x + h


class BeTNet(nn.Module):
    """(seq (B, L, C), extra (B, E)) -> (logits (B, Tp, K), offsets (B, Tp, K, D))."""

    spec: LevelSpec
    bins: int
    heads: int
    layers: int
    embed_dim: int

    @nn.compact
    def __call__(self, seq: jax.Array, extra: jax.Array):
        batch, width = seq.shape[0], self.embed_dim
        spec = self.spec
        seq_tokens = nn.Dense(width, name="seq_in")(seq)
        extra_token = nn.Dense(width, name="extra_in")(extra)[:, None, :]
        queries = self.param("queries", nn.initializers.normal(0.02), (spec.horizon, width))
        tokens = jnp.concatenate([seq_tokens, extra_token, jnp.broadcast_to(queries, (batch, *queries.shape))], 1)
        positions = self.param("positions", nn.initializers.normal(0.02), (tokens.shape[1], width))
        x = tokens + positions
        for _ in range(self.layers):
            x = Block(self.heads)(x)
        x = nn.LayerNorm()(x[:, -spec.horizon:])
        logits = nn.Dense(self.bins, name="logits")(x)
        offsets = nn.Dense(self.bins * spec.target_dim, name="offsets")(x)
        return logits, offsets.reshape(batch, spec.horizon, self.bins, spec.target_dim)


def make_network(config, spec: LevelSpec) -> nn.Module:
    """The level's model for the config's generator (memoised: jitted closures are not recompiled)."""
    if config.generator == "bet":
        return _bet(spec, config.bet_bins, config.bet_heads, config.bet_layers, config.bet_embed_dim)
    return _unet(spec, tuple(config.down_dims), config.kernel_size, config.n_groups,
                 config.diffusion_step_embed_dim, tuple(config.tcn_channels), config.tcn_kernel_size)


@functools.lru_cache(maxsize=None)
def _bet(spec, bins, heads, layers, embed_dim) -> BeTNet:
    return BeTNet(spec=spec, bins=bins, heads=heads, layers=layers, embed_dim=embed_dim)


@functools.lru_cache(maxsize=None)
def _unet(spec, down_dims, kernel_size, n_groups, embed_dim, tcn_channels, tcn_kernel_size) -> ConditionedUnet:
    return ConditionedUnet(spec=spec, down_dims=down_dims, kernel_size=kernel_size, n_groups=n_groups,
                           embed_dim=embed_dim, tcn_channels=tcn_channels, tcn_kernel_size=tcn_kernel_size)


def init_network(config, spec: LevelSpec, key: jax.Array):
    """Fresh parameters of the level's model."""
    net = make_network(config, spec)
    seq = jnp.zeros((1, spec.seq_len, spec.seq_channels), jnp.float32)
    extra = jnp.zeros((1, spec.extra_dim), jnp.float32)
    if config.generator == "bet":
        return jax.jit(net.init)(key, seq, extra)["params"]
    sample = jnp.zeros((1, spec.horizon, spec.target_dim), jnp.float32)
    # One uniform draw cut up (`init_params_fast`): XLA compiles flax's per-parameter hashes slowly.
    init = jax.jit(functools.partial(init_params_fast, net))
    return init(key, sample, jnp.zeros((1,), jnp.int32), (seq, extra))


__all__ = ["BeTNet", "ConditionedUnet", "TCN", "init_network", "make_network", "torch_uniform_init"]
