"""The goal autoencoder's networks (PianoMime App. G, Fig. 8): a 1-D conv encoder over the
88 keys to the latent code z, and an MLP decoder f(z, PE(x)) -> SDF(x) / max_distance."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.diffusion.networks import mish  # diffusion_policy's activation, as PianoMime's released code


class GoalEncoder(nn.Module):
    """(..., 88) goal (0/1) -> (..., latent_dim): conv layers (stride, padding 1, Mish), flatten, Dense."""

    channels: Sequence[int]
    kernel_size: int
    stride: int
    latent_dim: int

    @nn.compact
    def __call__(self, goals: jax.Array) -> jax.Array:
        lead = goals.shape[:-1]
        x = goals.reshape(-1, goals.shape[-1], 1).astype(jnp.float32)
        pad = (self.kernel_size - 1) // 2
        for width in self.channels:
            x = mish(nn.Conv(width, (self.kernel_size,), strides=(self.stride,), padding=((pad, pad),))(x))
        z = nn.Dense(self.latent_dim)(x.reshape(x.shape[0], -1))
        return z.reshape(*lead, self.latent_dim)


def positional_encoding(unit_points: jax.Array, frequencies: int) -> jax.Array:
    """(..., 3) points in [-1, 1] -> (..., 3 + 6 F): [p, sin(2^k pi p), cos(2^k pi p)], k < F (NeRF)."""
    if frequencies == 0:
        return unit_points
    scales = (2.0 ** jnp.arange(frequencies)) * jnp.pi
    angles = unit_points[..., None, :] * scales[:, None]  # (..., F, 3)
    flat = angles.reshape(*unit_points.shape[:-1], -1)
    return jnp.concatenate([unit_points, jnp.sin(flat), jnp.cos(flat)], axis=-1)


class SDFDecoder(nn.Module):
    """[z (..., L), PE(x) (..., P)] -> (...,) predicted SDF / max_distance."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, z: jax.Array, encoded_points: jax.Array) -> jax.Array:
        x = jnp.concatenate([z, encoded_points], axis=-1)
        for width in self.hidden:
            x = mish(nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


class GoalAutoencoderNet(nn.Module):
    """Encoder and decoder under one parameter tree {"encoder": ..., "decoder": ...}."""

    channels: Sequence[int]
    kernel_size: int
    stride: int
    latent_dim: int
    decoder_hidden: Sequence[int]
    pe_frequencies: int

    def setup(self):
        self.encoder = GoalEncoder(self.channels, self.kernel_size, self.stride, self.latent_dim)
        self.decoder = SDFDecoder(self.decoder_hidden)

    def encode(self, goals: jax.Array) -> jax.Array:
        return self.encoder(goals)

    def __call__(self, goals: jax.Array, unit_queries: jax.Array) -> jax.Array:
        """goals (B, 88), queries (B, Q, 3) in [-1, 1] -> (B, Q) predicted SDF / max_distance."""
        z = self.encoder(goals)
        z = jnp.broadcast_to(z[:, None, :], (*unit_queries.shape[:-1], z.shape[-1]))
        return self.decoder(z, positional_encoding(unit_queries, self.pe_frequencies))


def make_network(config) -> GoalAutoencoderNet:
    return GoalAutoencoderNet(
        channels=tuple(config.conv_channels),
        kernel_size=config.kernel_size,
        stride=config.conv_stride,
        latent_dim=config.latent_dim,
        decoder_hidden=tuple(config.decoder_hidden),
        pe_frequencies=config.pe_frequencies,
    )
