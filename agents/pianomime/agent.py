"""PianoMime's generalist behind the policy contract (agents.common.policy): update and sample.

    policy, history = train(dataset, PianoMimeConfig(), steps=..., seed=0)    # agents.pianomime.train
    actions = policy.predict_chunk(obs_window, key)                           # (B, Ta, 39), env units

Parameters of a policy: {"encoder": goal autoencoder (sdf only), "levels": {level: EMA weights},
"stats": {level: normalization statistics (and BeT's bin centers)}}.

Two-stage inference: the high level samples a fingertip trajectory (Tp, 30);
fingertips that press a goal key get that key's midline y (App. H); the low
level samples actions from it (Diff), or residuals that are added, times
`residual_scale`, to the IK actions of the trajectory's first Ta steps
(Diff-res). One stage: the single model samples actions.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.common.policy import Normalizer, PolicySpec
from agents.common.supervised import check_spec, to_device
from agents.diffusion.schedule import alphas_cumprod as make_alphas_cumprod
from agents.pianomime import losses, sampler
from agents.pianomime.config import PianoMimeConfig
from agents.pianomime.features import (
    FINGERTIP_DIM,
    LevelSpec,
    check_obs,
    goal_steps_for,
    level_features,
    level_spec,
    normalize_target,
    raw_inputs,
    unnormalize_target,
)
from agents.pianomime.networks import make_network
from envs.piano.keyboard import key_geometry

Params = Any
EMA_MAX_DECAY = 0.9999  # diffusion_policy's EMAModel max_value


@flax.struct.dataclass
class LevelState:
    """One level's training state: weights, their EMA, optimizer state, updates done."""

    params: Params
    ema_params: Params
    opt_state: Any
    step: jax.Array


@functools.lru_cache(maxsize=None)
def make_optimizer(weight_decay: float) -> optax.GradientTransformation:
    """AdamW without the step size (applied from `learning_rate`). PianoMime Tables 7, 8: AdamW."""
    adam = optax.scale_by_adam()
    return optax.chain(adam, optax.add_decayed_weights(weight_decay)) if weight_decay else adam


def learning_rate(config: PianoMimeConfig, step, total):
    """Linear warm-up, then cosine decay to 0 at `total` (PianoMime Tables 7, 8: cosine)."""
    peak = config.bet_learning_rate if config.generator == "bet" else config.learning_rate
    step = jnp.asarray(step, jnp.float32)
    warm = float(config.warmup_steps)
    progress = jnp.clip((step - warm) / jnp.maximum(jnp.asarray(total, jnp.float32) - warm, 1.0), 0.0, 1.0)
    return jnp.where(step < warm, peak * step / max(warm, 1.0), peak * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))


def ema_decay(config: PianoMimeConfig, step):
    """diffusion_policy's EMAModel: 1 - (1 + s / inv_gamma) ** -power, s = step - 1; 0 at the start."""
    s = jnp.maximum(jnp.asarray(step, jnp.float32) - 1.0, 0.0)
    value = jnp.clip(1.0 - (1.0 + s / config.ema_inv_gamma) ** (-config.ema_power), 0.0, EMA_MAX_DECAY)
    return jnp.where(s <= 0.0, 0.0, value)


@functools.lru_cache(maxsize=None)
def alphas_cumprod(num_train_timesteps: int) -> np.ndarray:
    """squaredcos_cap_v2 (PianoMime's released code) alpha_bar table."""
    return make_alphas_cumprod("squaredcos_cap_v2", num_train_timesteps)


def live_dims(stats: dict):
    """(D,) bool: target dimensions with a range in the training data (the others are constants)."""
    return (stats["target_max"] - stats["target_min"]) > 1e-6


def init_level(params: Params, config: PianoMimeConfig) -> LevelState:
    return LevelState(params=params, ema_params=jax.tree_util.tree_map(jnp.copy, params),
                      opt_state=make_optimizer(config.weight_decay).init(params), step=jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, static_argnames=("config", "spec"), donate_argnums=(0,))
def level_update(state: LevelState, raw: dict, target, stats: dict, encoder_params, key, total_steps, *,
                 config: PianoMimeConfig, spec: LevelSpec):
    """One gradient step of one level on a raw batch (`features.raw_inputs` + "trajectory"), then the EMA."""
    feature_key, loss_key = jax.random.split(jax.random.fold_in(key, state.step))
    seq, extra = level_features(raw, encoder_params, stats, config, spec.name, noise_key=feature_key)
    target = normalize_target(target, stats)
    net = make_network(config, spec)
    if config.generator == "bet":
        grads, metrics = jax.grad(losses.bet_loss, has_aux=True)(
            state.params, net.apply, seq, extra, target, stats["centers"], config.bet_focal_gamma,
            config.bet_offset_weight)
    else:
        grads, metrics = jax.grad(losses.diffusion_loss, has_aux=True)(
            state.params, net.apply, seq, extra, target, loss_key,
            jnp.asarray(alphas_cumprod(config.num_train_timesteps)), live_dims(stats))
    updates, opt_state = make_optimizer(config.weight_decay).update(grads, state.opt_state, state.params)
    lr = learning_rate(config, state.step, total_steps)
    params = jax.tree_util.tree_map(lambda p, u: p - lr * u, state.params, updates)
    decay = ema_decay(config, state.step)
    ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
    return LevelState(params=params, ema_params=ema, opt_state=opt_state, step=state.step + 1), metrics


@functools.partial(jax.jit, static_argnames=("config", "spec"))
def level_sample(params: Params, raw: dict, stats: dict, encoder_params, key, *, config: PianoMimeConfig,
                 spec: LevelSpec):
    """Raw inputs -> (B, Tp, D) sampled output in env units (fingertips in m, actions, residuals)."""
    seq, extra = level_features(raw, encoder_params, stats, config, spec.name)
    net = make_network(config, spec)
    if config.generator == "bet":
        normalized = sampler.bet_sample(net, params, seq, extra, stats["centers"], key)
    else:
        timesteps = sampler.inference_timesteps(config.num_train_timesteps, config.inference_steps(spec.name))
        normalized = sampler.diffusion_sample(
            net, params, seq, extra, key, timesteps=timesteps, alphas_cumprod=alphas_cumprod(config.num_train_timesteps),
            shape=(seq.shape[0], spec.horizon, spec.target_dim), sampler=config.sampler,
            clip_sample=config.clip_sample)
    return unnormalize_target(normalized, stats)


def snap_to_midline(trajectory: np.ndarray, goals: np.ndarray, radius: float, height: float) -> np.ndarray:
    """(B, K, 30) fingertips, (B, >=K, 88) goal rows -> fingertips whose y is within `radius` of a goal
    key of their step and whose z is at most `height` above its top get that key's y (App. H)."""
    geometry = key_geometry()
    key_y, key_top = geometry.centers[:, 1], geometry.tops[:, 2]
    tips = np.array(trajectory, np.float32).reshape(*trajectory.shape[:2], -1, 3)
    active = np.asarray(goals[:, : tips.shape[1]], bool)[:, :, None, :]  # (B, K, 1, 88)
    dy = np.abs(tips[..., 1:2] - key_y)  # (B, K, 10, 88)
    near = active & (dy < radius) & (tips[..., 2:3] <= key_top + height)
    best = np.argmin(np.where(near, dy, np.inf), axis=-1)
    pressing = near.any(-1)
    tips[..., 1] = np.where(pressing, key_y[best], tips[..., 1])
    return tips.reshape(trajectory.shape)


def check_params(params: Params, config: PianoMimeConfig) -> None:
    missing = [level for level in config.levels if level not in params.get("levels", {})]
    if missing or (config.goal_encoding == "sdf" and "encoder" not in params):
        raise ValueError(f"PianoMimePolicy: parameters lack {missing or ['encoder']} for config levels "
                         f"{config.levels} (goal_encoding={config.goal_encoding!r})")


class PianoMimePolicy:
    """A trained PianoMime generalist (any of Table 1's distilled variants)."""

    name: ClassVar[str] = "pianomime"

    def __init__(self, spec: PolicySpec, config: PianoMimeConfig, params: Params, normalizer: Normalizer):
        check_spec(type(self).__name__, spec, config.spec_for(spec.obs_dim, spec.action_dim))
        check_params(params, config)
        self.spec, self.config, self.normalizer = spec, config, normalizer
        self.params = to_device(params)
        self.level_specs = {level: level_spec(config, level, spec.action_dim) for level in config.levels}

    @classmethod
    def from_parts(cls, *, spec: PolicySpec, config: PianoMimeConfig, params: Params, normalizer: Normalizer):
        return cls(spec, config, params, normalizer)

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: the policy sees only its observation window."""

    def _sample(self, level: str, raw: dict, key) -> np.ndarray:
        return np.asarray(level_sample(self.params["levels"][level], raw, self.params["stats"][level],
                                       self.params.get("encoder", {}), key, config=self.config.jit_view(),
                                       spec=self.level_specs[level]))

    def predict_fingertips(self, obs: np.ndarray, key) -> np.ndarray:
        """(B, To, 1144) -> (B, Tp, 30) high-level fingertip trajectory (snapped if configured), m."""
        if self.config.stages != 2:
            raise ValueError("PianoMimePolicy.predict_fingertips: a one-stage policy predicts no fingertips")
        obs = check_obs("PianoMimePolicy.predict_fingertips", obs, self.spec.obs_horizon)
        trajectory = self._sample("high", raw_inputs(obs, goal_steps_for(self.config, "high")), key)
        if self.config.snap_to_key_midline:
            goals = raw_inputs(obs, self.config.pred_horizon)["goals"]
            trajectory = snap_to_midline(trajectory, goals, self.config.snap_radius, self.config.snap_height)
        return trajectory

    def ik_actions(self, obs: np.ndarray, trajectory: np.ndarray) -> np.ndarray:
        """(B, Ta, 39) IK actions of the first Ta steps of each trajectory, from the observed joints."""
        from agents.pianomime.ik import fingertip_ik
        from agents.pianomime.features import OBS_SLICES

        solver = fingertip_ik(self.config.ik_iterations)
        joints = np.asarray(obs)[:, -1, OBS_SLICES["hand_state"]]
        steps = self.spec.action_horizon
        return np.stack([solver.chain(j, t[:steps].reshape(steps, FINGERTIP_DIM)) for j, t in zip(joints, trajectory)])

    def predict_chunk(self, obs: np.ndarray, key) -> np.ndarray:
        """(B, To, obs_dim) raw observations -> (B, Ta, action_dim) env-unit actions."""
        obs = check_obs("PianoMimePolicy.predict_chunk", obs, self.spec.obs_horizon)
        steps = self.spec.action_horizon
        if self.config.stages == 1:
            return self._sample("one", raw_inputs(obs, goal_steps_for(self.config, "one")), key)[:, :steps]
        high_key, low_key = jax.random.split(key)
        trajectory = self.predict_fingertips(obs, high_key)
        raw = raw_inputs(obs, goal_steps_for(self.config, "low"))
        raw["trajectory"] = trajectory.astype(np.float32)
        low = self._sample("low", raw, low_key)[:, :steps]
        if self.config.low_level == "joints":
            return low.astype(np.float32)
        return (self.ik_actions(obs, trajectory) + self.config.residual_scale * low).astype(np.float32)
