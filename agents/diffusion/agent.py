"""Diffusion Policy (Chi et al. 2023, CNN variant) behind the policy contract (agents.common.policy).

    policy, history = train(dataset, DiffusionConfig(), steps=..., seed=0)
    actions = policy.predict_chunk(obs_window, key)          # (B, Ta, Da), env units

Training (diffusion_policy's `DiffusionUnetLowdimPolicy` with global
observation conditioning): normalized actions of a window of Tp steps that
starts at the first observed step are noised with a random DDPM timestep and
the U-Net predicts the noise, conditioned on the flattened normalized
observation window (To * obs_dim). AdamW with warm-up and decay, and an EMA of
the weights (power decay) that is what the returned policy uses.

Inference: Gaussian noise (B, Tp, Da) is denoised with DDIM in one jitted
`lax.fori_loop`; of the clipped result, the Ta actions starting at the current
step (index To - 1) are unnormalized and returned.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.common.policy import Normalizer, PolicySpec
from agents.diffusion import losses
from agents.diffusion.config import DiffusionConfig
from agents.diffusion.networks import init_params_fast, make_unet
from agents.diffusion.schedule import config_alphas_cumprod, config_ddim_tables, ddim_step

log = logging.getLogger(__name__)

Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class DiffusionTrainState:
    """Everything that changes during training. `config` and the sizes are static (not leaves)."""

    params: Params
    ema_params: Params
    opt_state: optax.OptState
    step: jax.Array  # int32: completed updates
    total_steps: jax.Array  # int32: length of the learning-rate schedule
    config: DiffusionConfig = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)
    global_cond_dim: int = flax.struct.field(pytree_node=False)


# ----------------------------------------------------------------------------- pieces


@functools.lru_cache(maxsize=None)
def make_optimizer(b1: float, b2: float, eps: float, weight_decay: float) -> optax.GradientTransformation:
    """AdamW without the learning-rate scaling (applied in `update` from `learning_rate`), so the
    schedule length is data, not part of the compiled program. Memoised: a static field of jit."""
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
    if weight_decay == 0.0:  # plain Adam (RP1M Table 8); skips a pass over ~100M weights per step
        return adam
    return optax.chain(adam, optax.add_decayed_weights(weight_decay))


def _optimizer(config: DiffusionConfig) -> optax.GradientTransformation:
    return make_optimizer(config.adam_b1, config.adam_b2, config.adam_eps, config.weight_decay)


def learning_rate(config: DiffusionConfig, step: jax.Array, total_steps: jax.Array) -> jax.Array:
    """Learning rate for update number `step` (0-based) of `total_steps`.

    Warm-up: lr * step / warmup_steps (0 at the first update, as diffusers'
    schedulers). Then "constant": lr; "linear": lr * (total - step) / (total - warmup);
    "cosine": lr * (1 + cos(pi * progress)) / 2 with progress = (step - warmup) / (total - warmup).
    """
    step = jnp.asarray(step, jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    warmup = float(config.warmup_steps)
    peak = config.learning_rate
    warm = peak * step / max(warmup, 1.0)
    progress = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
    if config.lr_schedule == "linear":
        after = peak * (1.0 - progress)
    elif config.lr_schedule == "cosine":
        after = peak * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    else:
        after = jnp.full_like(progress, peak)
    return jnp.where(step < warmup, warm, after)


def ema_decay(config: DiffusionConfig, step: jax.Array) -> jax.Array:
    """diffusion_policy's `EMAModel.get_decay` for its `optimization_step` = `step` updates done:
    s = max(0, step - 1); 0 if s == 0, else clip(1 - (1 + s / inv_gamma) ** -power, min, max)."""
    s = jnp.maximum(jnp.asarray(step, jnp.float32) - 1.0, 0.0)
    value = 1.0 - (1.0 + s / config.ema_inv_gamma) ** (-config.ema_power)
    value = jnp.clip(value, config.ema_min_decay, config.ema_max_decay)
    return jnp.where(s <= 0.0, 0.0, value)


def ema_update(ema_params: Params, params: Params, decay: jax.Array) -> Params:
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def init_params(key: jax.Array, config: DiffusionConfig, action_dim: int, global_cond_dim: int) -> Params:
    """Fresh U-Net parameters (the flax "params" collection)."""
    net = make_unet(config, action_dim, global_cond_dim)
    return _init_params(net, key, config.pred_horizon)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_params(net, key, pred_horizon):
    sample = jnp.zeros((1, pred_horizon, net.action_dim), jnp.float32)
    cond = jnp.zeros((1, net.global_cond_dim), jnp.float32)
    return init_params_fast(net, key, sample, jnp.zeros((1,), jnp.int32), cond)


def param_shapes(config: DiffusionConfig, action_dim: int, global_cond_dim: int) -> Params:
    """The parameter tree's shapes (jax.ShapeDtypeStruct leaves), without allocating it."""
    net = make_unet(config, action_dim, global_cond_dim)
    return jax.eval_shape(lambda key: _init_params(net, key, config.pred_horizon), jax.random.PRNGKey(0))


def init_state(
    key: jax.Array, config: DiffusionConfig, action_dim: int, global_cond_dim: int, total_steps: int
) -> DiffusionTrainState:
    """Parameters, their EMA copy, the optimizer state, for a run of `total_steps` updates."""
    params = init_params(key, config, action_dim, global_cond_dim)
    return DiffusionTrainState(
        params=params,
        ema_params=jax.tree_util.tree_map(jnp.copy, params),
        opt_state=_optimizer(config).init(params),
        step=jnp.zeros((), jnp.int32),
        total_steps=jnp.asarray(total_steps, jnp.int32),
        config=config,
        action_dim=action_dim,
        global_cond_dim=global_cond_dim,
    )


def update_step(
    state: DiffusionTrainState, global_cond: jax.Array, actions: jax.Array, key: jax.Array
) -> tuple[DiffusionTrainState, Metrics]:
    """One (unjitted) gradient step on normalized data, then the EMA.

    Args:
      global_cond: (B, To * obs_dim) flattened normalized observation windows.
      actions: (B, Tp, Da) normalized action chunks.
    """
    config = state.config
    net = make_unet(config, state.action_dim, state.global_cond_dim)
    alphas_cumprod = jnp.asarray(config_alphas_cumprod(config))
    grads, info = jax.grad(losses.ddpm_epsilon_loss, has_aux=True)(
        state.params, net.apply, global_cond, actions, key, alphas_cumprod
    )
    updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
    lr = learning_rate(config, state.step, state.total_steps)
    params = jax.tree_util.tree_map(lambda p, u: p - lr * u, state.params, updates)
    decay = ema_decay(config, state.step)
    ema_params = ema_update(state.ema_params, params, decay)
    info = {**info, "lr": lr, "ema_decay": decay}
    return state.replace(params=params, ema_params=ema_params, opt_state=opt_state, step=state.step + 1), info


update = jax.jit(update_step, donate_argnums=(0,))
update.__doc__ = "Jitted `update_step`; the input state's buffers are donated (do not reuse it)."


@functools.partial(jax.jit, static_argnames=("config", "action_dim", "global_cond_dim"))
def ddim_time_films(
    params: Params, *, config: DiffusionConfig, action_dim: int, global_cond_dim: int
) -> tuple[jax.Array, ...]:
    """The timestep part of every residual block's FiLM at each DDIM step, (n_steps, W) per block.

    It depends on the weights only, so a policy computes it once, not per call.
    """
    net = make_unet(config, action_dim, global_cond_dim)
    timesteps = jnp.asarray(config_ddim_tables(config).timesteps)
    return net.apply({"params": params}, timesteps, method="film_from_time")


@functools.partial(jax.jit, static_argnames=("config", "action_dim"))
def ddim_sample(
    params: Params,
    time_films: tuple[jax.Array, ...],
    global_cond: jax.Array,
    key: jax.Array,
    *,
    config: DiffusionConfig,
    action_dim: int,
) -> jax.Array:
    """DDIM sampling: (B, G) normalized global condition -> (B, Tp, Da) normalized actions in [-1, 1].

    Starts from x ~ N(0, I) drawn with `key`. The observation part of the FiLM
    is computed once per call, the timestep part (`ddim_time_films`) is given;
    only the U-Net body runs inside the `fori_loop` over denoising steps.
    """
    net = make_unet(config, action_dim, global_cond.shape[-1])
    obs_films = net.apply({"params": params}, global_cond, method="film_from_obs")
    return _ddim_loop(net, params, time_films, obs_films, key, config, action_dim)


@functools.partial(jax.jit, static_argnames=("config", "action_dim", "global_cond_dim"))
def ddim_sample_with_films(
    params: Params,
    time_films: tuple[jax.Array, ...],
    obs_films: tuple[jax.Array, ...],
    key: jax.Array,
    *,
    config: DiffusionConfig,
    action_dim: int,
    global_cond_dim: int,
) -> jax.Array:
    """`ddim_sample` given the observation part of the FiLM, per block (B, W) (`agents.diffusion.film`)."""
    net = make_unet(config, action_dim, global_cond_dim)
    return _ddim_loop(net, params, time_films, obs_films, key, config, action_dim)


def _ddim_loop(net, params, time_films, obs_films, key, config: DiffusionConfig, action_dim: int) -> jax.Array:
    tables = config_ddim_tables(config)
    variables = {"params": params}
    alpha_bar = jnp.asarray(tables.alpha_bar)
    alpha_bar_prev = jnp.asarray(tables.alpha_bar_prev)

    def denoise_once(i, sample):
        films = [obs + time[i][None, :] for obs, time in zip(obs_films, time_films)]
        epsilon = net.apply(variables, sample, films, method="denoise")
        return ddim_step(sample, epsilon, alpha_bar[i], alpha_bar_prev[i], clip_sample=config.clip_sample)

    noise = jax.random.normal(key, (obs_films[0].shape[0], config.pred_horizon, action_dim), jnp.float32)
    sample = jax.lax.fori_loop(0, len(tables.timesteps), denoise_once, noise)
    return jnp.clip(sample, -1.0, 1.0)


def sample_normalized_actions(
    params: Params, global_cond: jax.Array, key: jax.Array, *, config: DiffusionConfig, action_dim: int
) -> jax.Array:
    """`ddim_sample` with the timestep FiLM computed here (policies cache it instead)."""
    time_films = ddim_time_films(params, config=config, action_dim=action_dim, global_cond_dim=global_cond.shape[-1])
    return ddim_sample(params, time_films, global_cond, key, config=config, action_dim=action_dim)


# ----------------------------------------------------------------------------- policy


def _check_params(params: Params, config: DiffusionConfig, spec: PolicySpec) -> None:
    expected = param_shapes(config, spec.action_dim, spec.obs_horizon * spec.obs_dim)
    expected_paths = {jax.tree_util.keystr(p): leaf.shape for p, leaf in jax.tree_util.tree_leaves_with_path(expected)}
    given_paths = {jax.tree_util.keystr(p): np.shape(leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
    missing = sorted(set(expected_paths) - set(given_paths))
    extra = sorted(set(given_paths) - set(expected_paths))
    if missing or extra:
        raise ValueError(
            f"DiffusionPolicy: parameters do not match the config's U-Net: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
        )
    for path, shape in expected_paths.items():
        if tuple(given_paths[path]) != tuple(shape):
            raise ValueError(f"DiffusionPolicy: parameter {path} has shape {given_paths[path]}, expected {shape}")


class DiffusionPolicy:
    """A trained Diffusion Policy: spec, config, (EMA) U-Net parameters and the normalizer."""

    name: ClassVar[str] = "diffusion"

    def __init__(self, spec: PolicySpec, config: DiffusionConfig, params: Params, normalizer: Normalizer):
        if (spec.obs_horizon, spec.pred_horizon, spec.action_horizon, spec.action_offset) != (
            config.obs_horizon, config.pred_horizon, config.action_horizon, config.action_offset
        ):
            raise ValueError(
                f"DiffusionPolicy: spec horizons (To={spec.obs_horizon}, Tp={spec.pred_horizon}, "
                f"Ta={spec.action_horizon}, offset={spec.action_offset}) differ from the config's "
                f"({config.obs_horizon}, {config.pred_horizon}, {config.action_horizon}, {config.action_offset})"
            )
        _check_params(params, config, spec)
        self.spec = spec
        self.config = config
        # Device arrays once, so each predict_chunk does not copy ~400 MB of numpy weights.
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.normalizer = normalizer
        self._time_films = None  # ddim_time_films(params), computed at the first predict_chunk
        self._obs_film = False  # agents.diffusion.film.ObsFilm (None: none), built at the first predict_chunk

    @classmethod
    def from_parts(cls, *, spec: PolicySpec, config: DiffusionConfig, params: Params, normalizer: Normalizer):
        return cls(spec, config, params, normalizer)

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: the policy sees only its observation window."""

    def predict_chunk(self, obs: np.ndarray, key: jax.Array) -> np.ndarray:
        """(B, To, obs_dim) raw observations -> (B, Ta, action_dim) actions in env units."""
        spec = self.spec
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 3 or obs.shape[1:] != (spec.obs_horizon, spec.obs_dim):
            raise ValueError(
                f"DiffusionPolicy.predict_chunk: obs has shape {obs.shape}, expected "
                f"(B, {spec.obs_horizon}, {spec.obs_dim})"
            )
        cond_dim = spec.obs_horizon * spec.obs_dim
        if self._time_films is None:
            self._time_films = ddim_time_films(
                self.params, config=self.config, action_dim=spec.action_dim, global_cond_dim=cond_dim
            )
        if self._obs_film is False:
            from agents.diffusion.film import ObsFilm

            self._obs_film = ObsFilm.build(self.params, self.config, spec, self.normalizer)
        obs_films = self._obs_film(obs) if self._obs_film is not None else None
        if obs_films is not None:  # goal inputs 0/1: the FiLM from a few weight rows
            actions = ddim_sample_with_films(self.params, self._time_films, obs_films, key, config=self.config,
                                             action_dim=spec.action_dim, global_cond_dim=cond_dim)
        else:
            global_cond = self.normalizer.normalize_obs(obs).reshape(obs.shape[0], -1).astype(np.float32)
            actions = ddim_sample(
                self.params, self._time_films, global_cond, key, config=self.config, action_dim=spec.action_dim
            )
        start = spec.current_index
        chunk = np.asarray(actions[:, start : start + spec.action_horizon])
        return self.normalizer.unnormalize_action(chunk)


# ----------------------------------------------------------------------------- training


def normalized_batch(normalizer: Normalizer, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw (B, To, Do), (B, Tp, Da) windows -> (B, To * Do) global condition, (B, Tp, Da) in [-1, 1]."""
    global_cond = normalizer.normalize_obs(obs).reshape(obs.shape[0], -1).astype(np.float32)
    return global_cond, normalizer.normalize_action(actions).astype(np.float32)


def _check_dataset(dataset, config: DiffusionConfig) -> None:
    want = (config.obs_horizon, config.pred_horizon, config.action_offset)
    have = (dataset.obs_horizon, dataset.action_horizon, dataset.action_offset)
    if have != want:
        raise ValueError(
            f"diffusion.train: dataset windows (obs_horizon, action_horizon, action_offset) = {have}, "
            f"but the config needs {want} (build it with the spec's obs_horizon, pred_horizon, action_offset)"
        )


def train(
    dataset,
    config: DiffusionConfig = DiffusionConfig(),
    *,
    steps: int,
    seed: int,
    on_progress: Callable[[int, int, dict], None] | None = None,
) -> tuple[DiffusionPolicy, list[dict]]:
    """Trains a Diffusion Policy on a `tasks.rlds.reader.WindowDataset` for `steps` gradient steps.

    Returns the policy (EMA weights) and the history: {"step", "loss"} about
    every max(1, steps // 20) steps and at the last one, "loss" being the mean
    batch loss since the previous record. `on_progress(step, steps, record)` is
    called with each record.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"diffusion.train: steps must be an int >= 1, got {steps!r}")
    _check_dataset(dataset, config)
    spec = config.spec_for(int(dataset.obs_dim), int(dataset.action_dim))
    normalizer = Normalizer.from_dataset(dataset, seed=seed)
    init_key, update_key = jax.random.split(jax.random.PRNGKey(seed))
    state = init_state(init_key, config, spec.action_dim, spec.obs_horizon * spec.obs_dim, steps)
    rng = np.random.default_rng(seed)
    record_every = max(1, steps // 20)
    history: list[dict] = []
    pending: list[jax.Array] = []
    for step in range(1, steps + 1):
        obs, actions = dataset.sample(config.batch_size, rng)
        global_cond, target = normalized_batch(normalizer, obs, actions)
        state, metrics = update(state, global_cond, target, jax.random.fold_in(update_key, step))
        pending.append(metrics["loss"])
        if step % record_every == 0 or step == steps:
            record = {"step": step, "loss": float(np.mean(jax.device_get(pending)))}
            pending.clear()
            history.append(record)
            log.info("diffusion: step %d/%d loss %.4f lr %.2e", step, steps, record["loss"], float(metrics["lr"]))
            if on_progress is not None:
                on_progress(step, steps, record)
    policy = DiffusionPolicy(spec, config, state.ema_params, normalizer)
    return policy, history
