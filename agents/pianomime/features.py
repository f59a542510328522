"""What each PianoMime level sees and predicts, from RP1M's flat observation (Table 3).

Raw inputs (numpy, env units), for B windows:

    goals       (B, n, 88)  piano_goal rows 0..n-1 of the current observation
    sustain     (B, n)      sustain_goal, same rows
    fingertips  (B, 30)     current fingertip positions
    proprio     (B, To*135) hand joints (46), key joints (88), pedal (1) of each observed step
    trajectory  (B, Tp, 30) fingertips after actions t .. t+Tp-1 (observations t+1 .. t+Tp): the
                            high level's target and the low level's input

Goal row k of the observation at t is what must be down after action t + k,
so fingertip step k of `trajectory` is scored against goal row k; the snap to
the key midline (App. H) uses that pairing.

Levels (PianoMime App. H, I): "high" = TCN over the (encoded) goals of
`high_goal_steps` rows + current fingertips -> trajectory; "low" = TCN over
the trajectory + the goals of `low_goal_steps` rows and proprioception ->
actions (or residuals); "one" = TCN over the goals + proprioception and
fingertips -> actions. RP1M's observation has no joint velocities (PianoMime's
low level also sees them); `obs_horizon` 2 gives the low level two steps.

Feature maps (`level_features`) run under jit: the goal encoder, then z-scoring
with statistics of the training data (`stats[level]`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from agents.sdf import SDFConfig, encoder_apply
from envs.piano.spec import GOAL_STEPS, N_FINGERTIPS, N_KEYS, OBS_DIM, observation_sizes

FINGERTIP_DIM = 3 * N_FINGERTIPS
PROPRIO_KEYS = ("hand_state", "piano_state", "sustain_state")


def _slices() -> dict[str, slice]:
    out, start = {}, 0
    for key, size in observation_sizes().items():
        out[key] = slice(start, start + size)
        start += size
    return out


OBS_SLICES = _slices()
PROPRIO_DIM = sum(observation_sizes()[k] for k in PROPRIO_KEYS)


@dataclasses.dataclass(frozen=True)
class LevelSpec:
    """Static sizes of one level's model (hashable: a static jit argument)."""

    name: str
    seq_len: int
    seq_channels: int
    extra_dim: int
    horizon: int
    target_dim: int


def check_obs(owner: str, obs: np.ndarray, obs_horizon: int) -> np.ndarray:
    obs = np.asarray(obs, np.float32)
    if obs.ndim != 3 or obs.shape[1:] != (obs_horizon, OBS_DIM) or len(obs) < 1:
        raise ValueError(f"{owner}: obs has shape {obs.shape}, expected (B, {obs_horizon}, {OBS_DIM}) "
                         f"(RP1M's flat observation, {GOAL_STEPS} goal steps)")
    return obs


def raw_inputs(obs: np.ndarray, goal_steps: int) -> dict[str, np.ndarray]:
    """goals, sustain, fingertips, proprio of (B, To, 1144) raw observation windows."""
    last = obs[:, -1]
    goals = last[:, OBS_SLICES["piano_goal"]].reshape(len(obs), GOAL_STEPS, N_KEYS)[:, :goal_steps]
    sustain = last[:, OBS_SLICES["sustain_goal"]][:, :goal_steps]
    proprio = np.concatenate([obs[:, :, OBS_SLICES[k]] for k in PROPRIO_KEYS], axis=-1).reshape(len(obs), -1)
    return {"goals": goals.astype(np.float32), "sustain": sustain.astype(np.float32),
            "fingertips": last[:, OBS_SLICES["fingertip_positions"]].astype(np.float32),
            "proprio": proprio.astype(np.float32)}


def goal_steps_for(config, level: str) -> int:
    return config.low_goal_steps if level == "low" else config.high_goal_steps


def level_spec(config, level: str, action_dim: int) -> LevelSpec:
    goal_width = (config.sdf_latent_dim if config.goal_encoding == "sdf" else N_KEYS) + 1  # + sustain
    proprio = PROPRIO_DIM * config.obs_horizon
    if level == "high":
        return LevelSpec(level, config.high_goal_steps, goal_width, FINGERTIP_DIM, config.pred_horizon, FINGERTIP_DIM)
    if level == "low":
        return LevelSpec(level, config.pred_horizon, FINGERTIP_DIM, config.low_goal_steps * goal_width + proprio,
                         config.pred_horizon, action_dim)
    if level == "one":
        return LevelSpec(level, config.high_goal_steps, goal_width, proprio + FINGERTIP_DIM, config.pred_horizon,
                         action_dim)
    raise ValueError(f"unknown PianoMime level {level!r}: expected high, low or one")


def sdf_config_of(config) -> SDFConfig:
    """The encoder architecture the policy config names (decoder fields at their defaults)."""
    return SDFConfig(conv_channels=config.sdf_channels, kernel_size=config.sdf_kernel_size,
                     conv_stride=config.sdf_stride, latent_dim=config.sdf_latent_dim,
                     epochs=config.sdf_epochs, max_steps=config.sdf_max_steps)


def unnormalized_features(raw: dict, encoder_params, config, level: str) -> tuple[jax.Array, jax.Array]:
    """(seq (B, L, C), extra (B, E)) before z-scoring."""
    goals = jnp.asarray(raw["goals"])
    if config.goal_encoding == "sdf":
        goals = encoder_apply(encoder_params, goals, sdf_config_of(config))
    goal_seq = jnp.concatenate([goals, jnp.asarray(raw["sustain"])[..., None]], axis=-1)
    batch = goal_seq.shape[0]
    if level == "high":
        return goal_seq, jnp.asarray(raw["fingertips"])
    if level == "low":
        extra = jnp.concatenate([goal_seq.reshape(batch, -1), jnp.asarray(raw["proprio"])], axis=-1)
        return jnp.asarray(raw["trajectory"]).reshape(batch, -1, FINGERTIP_DIM), extra
    return goal_seq, jnp.concatenate([jnp.asarray(raw["proprio"]), jnp.asarray(raw["fingertips"])], axis=-1)


def level_features(raw: dict, encoder_params, stats: dict, config, level: str, noise_key=None):
    """z-scored (seq, extra); with `noise_key`, the high level's fingertips get N(0, std^2) (App. H)."""
    seq, extra = unnormalized_features(raw, encoder_params, config, level)
    seq = (seq - stats["seq_mean"]) / stats["seq_std"]
    extra = (extra - stats["extra_mean"]) / stats["extra_std"]
    if noise_key is not None and level == "high" and config.fingertip_noise_std > 0:
        extra = extra + config.fingertip_noise_std * jax.random.normal(noise_key, extra.shape)
    return seq, extra


def normalize_target(target, stats):
    """Min/max to [-1, 1] per dimension (diffusion_policy's limits mode); constant dims map to 0."""
    span = stats["target_max"] - stats["target_min"]
    live = span > 1e-6
    scaled = 2.0 * (target - stats["target_min"]) / jnp.where(live, span, 1.0) - 1.0
    return jnp.where(live, scaled, 0.0)


def unnormalize_target(value, stats):
    span = stats["target_max"] - stats["target_min"]
    return jnp.where(span > 1e-6, (value + 1.0) * 0.5 * span + stats["target_min"], stats["target_min"])


def fit_stats(raw: dict, target: np.ndarray, encoder_params, config, level: str, eps: float = 1e-6) -> dict:
    """Per-channel mean/std of seq and extra, min/max of the target, on a sample of windows."""
    seq, extra = jax.device_get(jax.jit(unnormalized_features, static_argnums=(2, 3))(raw, encoder_params, config,
                                                                                        level))
    seq = np.asarray(seq, np.float64).reshape(-1, seq.shape[-1])
    extra = np.asarray(extra, np.float64)
    target = np.asarray(target, np.float64).reshape(-1, target.shape[-1])
    return {"seq_mean": seq.mean(0).astype(np.float32), "seq_std": np.maximum(seq.std(0), eps).astype(np.float32),
            "extra_mean": extra.mean(0).astype(np.float32),
            "extra_std": np.maximum(extra.std(0), eps).astype(np.float32),
            "target_min": target.min(0).astype(np.float32), "target_max": target.max(0).astype(np.float32)}
