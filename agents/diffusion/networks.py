"""The 1-D temporal U-Net of Diffusion Policy (Chi et al. 2023, `ConditionalUnet1D`).

Layout is channels-last: a noisy action sequence (B, Tp, Da) is a length-Tp
signal with Da channels. Structure as diffusion_policy:

  timestep -> sinusoidal embedding -> Dense(4E) -> Mish -> Dense(E)
  cond = [time features, global cond (flattened normalized obs window)]
  down: per level two FiLM residual blocks, then a stride-2 conv (not after the last level)
  mid: two FiLM residual blocks
  up: per level concat the skip, two FiLM residual blocks, a stride-2 transposed conv
  final: Conv1dBlock -> 1x1 conv to Da
  Conv1dBlock = Conv1d -> GroupNorm -> Mish;
  residual block: out = block(x); out = scale(cond) * out + bias(cond); out = block(out); out + res(x)

Exact rearrangements that make it cheaper without changing the function:

* Each block's FiLM encoder is Mish -> Linear on [time features, global cond].
  Mish is elementwise, so the Linear splits into a time part (`cond_time`,
  with the bias) and an observation part (`cond_obs`); `film_from_obs` runs
  once per `predict_chunk`, `film_from_time` once for all DDIM timesteps, and
  only `denoise` runs inside the denoising loop.
* A 'same'-padded convolution on a sequence shorter than its kernel has taps
  that only ever multiply padding zeros (at Tp = 4 the deepest levels run on
  length 1, where 4 of 5 taps are dead). `Conv1d` leaves them out of the
  computation; they would receive zero gradient anyway (they stay at their
  initial values and are saved with the rest).
* Convolutions are sums of dots over taps, each tap its own (C_in, C_out)
  parameter, not `lax.conv` (much faster on CPU at these shapes; see `_taps_matmul`).

Initialization follows PyTorch's defaults (uniform +-1/sqrt(fan_in) for weights
and biases), the initialization diffusion_policy trains from.
"""

from __future__ import annotations

import contextvars
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

GROUP_NORM_EPS = 1e-5  # torch.nn.GroupNorm's default


def mish(x: jax.Array) -> jax.Array:
    """x * tanh(softplus(x)) (Misra 2019), diffusion_policy's activation."""
    return x * jnp.tanh(jax.nn.softplus(x))


# While set, `torch_uniform_init` returns its bound instead of a random draw (see `init_params_fast`).
_BOUNDS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("unet_bounds_only", default=False)


def torch_uniform_init(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights and biases."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        if _BOUNDS_ONLY.get():
            return jnp.full(shape, bound, dtype)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def is_uniform_param(path) -> bool:
    """Whether a parameter (a key path of the "params" tree) is drawn by `torch_uniform_init`:
    all of them except GroupNorm's scale (init 1) and bias (init 0)."""
    return not any("GroupNorm" in str(getattr(entry, "key", entry)) for entry in path)


def init_params_fast(net: nn.Module, key: jax.Array, *init_args) -> dict:
    """The same distribution as `net.init(key, *init_args)["params"]`, much cheaper to compile.

    flax draws every parameter with its own threefry hash, and XLA takes about
    as long to compile those ~100 hashes as the whole training step. Here the
    network is initialized with each uniform parameter set to its bound b (no
    randomness, the forward pass is dead code), then one uniform draw over all
    of them is cut up and scaled to U(-b, b). Call under jit.
    """
    token = _BOUNDS_ONLY.set(True)
    try:
        bounds = net.init(jax.random.PRNGKey(0), *init_args)["params"]
    finally:
        _BOUNDS_ONLY.reset(token)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(bounds)
    sizes = [leaf.size if is_uniform_param(path) else 0 for path, leaf in leaves]
    draws = jax.random.uniform(key, (max(sum(sizes), 1),), jnp.float32, -1.0, 1.0)
    out, offset = [], 0
    for (path, leaf), size in zip(leaves, sizes):
        if size:
            out.append(leaf * draws[offset : offset + size].reshape(leaf.shape))
            offset += size
        else:
            out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


def sinusoidal_embedding(timesteps: jax.Array, dim: int) -> jax.Array:
    """(N,) timesteps -> (N, dim): [sin(t f_k), cos(t f_k)], f_k = 10000 ** (-k / (dim/2 - 1))."""
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
    args = jnp.asarray(timesteps, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def live_taps(kernel_size: int, stride: int, padding: int, length: int) -> tuple[list[int], int]:
    """Taps of a conv (symmetric zero `padding`) that touch real data for some output, and the
    output length. Tap j reads input s*o + j - padding for output o; the other taps only
    ever multiply padding zeros."""
    out_length = (length + 2 * padding - kernel_size) // stride + 1
    live = [
        j for j in range(kernel_size)
        if any(0 <= stride * o + j - padding < length for o in range(out_length))
    ]
    return live, out_length


def _taps_matmul(slices: list[jax.Array], kernels: list[jax.Array]) -> jax.Array:
    """sum_j slices[j] @ kernels[j] for (B, L, C_in) slices and (C_in, C_out) kernels.

    XLA's CPU convolution is one to two orders of magnitude slower than dots at
    these shapes (a length-4 signal with 256-1024 channels), so convolutions
    are written as one dot per tap. Each tap is its own parameter: slicing one
    out of a (k, C_in, C_out) array would copy it on every call, and at batch 1
    inference is bound by reading the weights.
    """
    out = slices[0] @ kernels[0]
    for x, w in zip(slices[1:], kernels[1:]):
        out = out + x @ w
    return out


def _tap_params(module: nn.Module, kernel_size: int, in_channels: int, features: int, init) -> list[jax.Array]:
    return [module.param(f"kernel_{j}", init, (in_channels, features)) for j in range(kernel_size)]


class Conv1d(nn.Module):
    """Conv1d on (B, L, C_in) -> (B, L_out, features), PyTorch's `Conv1d(stride=, padding=)`.

    Parameters: `kernel_j` (C_in, features) for each tap j (PyTorch's
    weight[:, :, j].T) and `bias`. Only taps that can touch real data are
    computed (`live_taps`): exact, and at Tp = 4 most of the deep levels' work.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_channels = x.shape[-1]
        init = torch_uniform_init(in_channels * self.kernel_size)
        kernels = _tap_params(self, self.kernel_size, in_channels, self.features, init)
        bias = self.param("bias", init, (self.features,))
        live, out_length = live_taps(self.kernel_size, self.stride, self.padding, x.shape[-2])
        padded = jnp.pad(x, ((0, 0), (self.padding, self.padding), (0, 0))) if self.padding else x
        span = self.stride * (out_length - 1) + 1
        slices = [padded[:, j : j + span : self.stride] for j in live]
        return _taps_matmul(slices, [kernels[j] for j in live]) + bias


class Upsample1d(nn.Module):
    """Doubles the length: PyTorch's ConvTranspose1d(dim, dim, 4, stride=2, padding=1).

    A stride-2 transposed conv is a conv over the input with zeros between
    samples; output 2m + r only meets real samples through the taps j with
    r + j - (k - 1 - padding) even, i.e. input m + (r + j - (k - 1 - padding)) / 2.
    Taps that only reach padding (at length 1) are skipped, as in `Conv1d`.
    """

    features: int
    kernel_size: int = 4
    padding: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, in_channels = x.shape
        # torch computes a transposed conv's fan_in from its weight (in, out, k): out * k.
        init = torch_uniform_init(self.features * self.kernel_size)
        kernels = _tap_params(self, self.kernel_size, in_channels, self.features, init)
        bias = self.param("bias", init, (self.features,))
        out_length = 2 * (length - 1) - 2 * self.padding + self.kernel_size
        if out_length != 2 * length:
            raise ValueError(
                f"Upsample1d: kernel_size={self.kernel_size}, padding={self.padding} do not double the length"
            )
        edge = self.kernel_size - 1 - self.padding
        reach = (self.kernel_size + 1) // 2
        padded = jnp.pad(x, ((0, 0), (reach, reach), (0, 0)))
        phases = []
        for phase in (0, 1):
            offsets = {j: (phase + j - edge) // 2 for j in range(self.kernel_size) if (phase + j - edge) % 2 == 0}
            # input m + offset for outputs m = 0 .. length-1 must hit [0, length) for some m
            live = [j for j, d in offsets.items() if -length < d < length]
            slices = [padded[:, reach + offsets[j] : reach + offsets[j] + length] for j in live]
            phases.append(_taps_matmul(slices, [kernels[j] for j in live]))
        return jnp.stack(phases, axis=2).reshape(batch, 2 * length, self.features) + bias


class Conv1dBlock(nn.Module):
    """Conv1d ('same' padding) -> GroupNorm -> Mish."""

    features: int
    kernel_size: int
    n_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv1d(self.features, self.kernel_size, padding=self.kernel_size // 2)(x)
        x = nn.GroupNorm(num_groups=self.n_groups, epsilon=GROUP_NORM_EPS)(x)
        return mish(x)


class ConditionalResidualBlock1D(nn.Module):
    """Two Conv1dBlocks with FiLM conditioning between them and a (1x1 conv) residual.

    `cond_dim` is the width of the full condition [time features, global cond],
    the fan-in of the FiLM Linear that `cond_time` and `cond_obs` split.
    """

    in_channels: int
    out_channels: int
    cond_dim: int
    kernel_size: int
    n_groups: int
    cond_predict_scale: bool = True

    def setup(self):
        self.block_in = Conv1dBlock(self.out_channels, self.kernel_size, self.n_groups)
        self.block_out = Conv1dBlock(self.out_channels, self.kernel_size, self.n_groups)
        width = 2 * self.out_channels if self.cond_predict_scale else self.out_channels
        init = torch_uniform_init(self.cond_dim)
        self.cond_time = nn.Dense(width, kernel_init=init, bias_init=init)
        self.cond_obs = nn.Dense(width, use_bias=False, kernel_init=init)
        if self.in_channels != self.out_channels:
            self.residual = Conv1d(self.out_channels, 1)

    def film_from_time(self, time_features: jax.Array) -> jax.Array:
        """Mish'ed time features (N, E) -> this block's FiLM contribution (N, W)."""
        return self.cond_time(time_features)

    def film_from_obs(self, obs_features: jax.Array) -> jax.Array:
        """Mish'ed global condition (B, G) -> this block's FiLM contribution (B, W)."""
        return self.cond_obs(obs_features)

    def __call__(self, x: jax.Array, film: jax.Array) -> jax.Array:
        out = self.block_in(x)
        if self.cond_predict_scale:
            scale, bias = jnp.split(film, 2, axis=-1)
            out = scale[:, None, :] * out + bias[:, None, :]
        else:
            out = out + film[:, None, :]
        out = self.block_out(out)
        skip = self.residual(x) if self.in_channels != self.out_channels else x
        return out + skip


class ConditionalUnet1D(nn.Module):
    """Noise predictor eps(x_t, t, global_cond) for action sequences (B, Tp, action_dim)."""

    action_dim: int
    global_cond_dim: int
    down_dims: Sequence[int] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 256
    cond_predict_scale: bool = True

    def setup(self):
        embed = self.diffusion_step_embed_dim
        self.time_hidden = nn.Dense(4 * embed, kernel_init=torch_uniform_init(embed), bias_init=torch_uniform_init(embed))
        self.time_out = nn.Dense(embed, kernel_init=torch_uniform_init(4 * embed), bias_init=torch_uniform_init(4 * embed))
        block = functools.partial(
            ConditionalResidualBlock1D,
            cond_dim=embed + self.global_cond_dim,
            kernel_size=self.kernel_size,
            n_groups=self.n_groups,
            cond_predict_scale=self.cond_predict_scale,
        )
        dims = (self.action_dim, *self.down_dims)
        levels = list(zip(dims[:-1], dims[1:]))
        self.down_blocks = [
            (block(dim_in, dim_out), block(dim_out, dim_out)) for dim_in, dim_out in levels
        ]
        self.downsamples = [Conv1d(dim_out, 3, stride=2, padding=1) for _, dim_out in levels[:-1]]
        mid = self.down_dims[-1]
        self.mid_blocks = [block(mid, mid), block(mid, mid)]
        # diffusion_policy's up path: one level per downsampling, each upsampling at its end.
        self.up_blocks = [
            (block(2 * dim_out, dim_in), block(dim_in, dim_in)) for dim_in, dim_out in reversed(levels[1:])
        ]
        self.upsamples = [Upsample1d(dim_in) for dim_in, _ in reversed(levels[1:])]
        self.final_block = Conv1dBlock(self.down_dims[0], self.kernel_size, self.n_groups)
        self.final_conv = Conv1d(self.action_dim, 1)

    def _residual_blocks(self) -> list[ConditionalResidualBlock1D]:
        blocks = [b for pair in self.down_blocks for b in pair] + list(self.mid_blocks)
        return blocks + [b for pair in self.up_blocks for b in pair]

    def film_from_time(self, timesteps: jax.Array) -> tuple[jax.Array, ...]:
        """(N,) timesteps -> per residual block, the time part of its FiLM (N, W) (bias included)."""
        embedding = sinusoidal_embedding(timesteps, self.diffusion_step_embed_dim)
        features = self.time_out(mish(self.time_hidden(embedding)))
        features = mish(features)  # the first layer of every block's FiLM encoder
        return tuple(b.film_from_time(features) for b in self._residual_blocks())

    def film_from_obs(self, global_cond: jax.Array) -> tuple[jax.Array, ...]:
        """(B, G) global condition -> per residual block, its part of the FiLM (B, W)."""
        return self.film_from_obs_features(mish(global_cond))

    def film_from_obs_features(self, features: jax.Array) -> tuple[jax.Array, ...]:
        """`film_from_obs` after its Mish: linear in the (B, G) features (`agents.diffusion.film`)."""
        return tuple(b.film_from_obs(features) for b in self._residual_blocks())

    def denoise(self, sample: jax.Array, films: Sequence[jax.Array]) -> jax.Array:
        """(B, Tp, action_dim) noisy actions and per-block FiLM (B, W) -> predicted noise."""
        films = iter(films)
        x, skips = sample, []
        for index, (first, second) in enumerate(self.down_blocks):
            x = first(x, next(films))
            x = second(x, next(films))
            skips.append(x)
            if index < len(self.downsamples):
                x = self.downsamples[index](x)
        for mid in self.mid_blocks:
            x = mid(x, next(films))
        for (first, second), upsample in zip(self.up_blocks, self.upsamples):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = first(x, next(films))
            x = second(x, next(films))
            x = upsample(x)
        return self.final_conv(self.final_block(x))

    def __call__(self, sample: jax.Array, timesteps: jax.Array, global_cond: jax.Array) -> jax.Array:
        """eps(x_t, t, cond): sample (B, Tp, Da), timesteps (B,) ints, global_cond (B, G)."""
        films = [t + o for t, o in zip(self.film_from_time(timesteps), self.film_from_obs(global_cond))]
        return self.denoise(sample, films)


def make_unet(config, action_dim: int, global_cond_dim: int) -> ConditionalUnet1D:
    """The U-Net of a `DiffusionConfig` (memoised: the same module object for the same sizes,
    so jitted functions that close over it are not recompiled)."""
    return _unet(
        action_dim,
        global_cond_dim,
        tuple(config.down_dims),
        config.kernel_size,
        config.n_groups,
        config.diffusion_step_embed_dim,
        config.cond_predict_scale,
    )


@functools.lru_cache(maxsize=None)
def _unet(action_dim, global_cond_dim, down_dims, kernel_size, n_groups, embed_dim, cond_predict_scale):
    return ConditionalUnet1D(
        action_dim=action_dim,
        global_cond_dim=global_cond_dim,
        down_dims=down_dims,
        kernel_size=kernel_size,
        n_groups=n_groups,
        diffusion_step_embed_dim=embed_dim,
        cond_predict_scale=cond_predict_scale,
    )
