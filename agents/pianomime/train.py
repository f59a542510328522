"""Training PianoMime's generalist on a `tasks.rlds.reader.WindowDataset` (PianoMime 3.3, App. G-I).

    spec = config.spec_for(1144, 39)
    dataset = WindowDataset(songs, spec.obs_horizon, spec.pred_horizon, action_offset=0)
    policy, history = train(dataset, config, steps=..., seed=0)

1. Goal encoder (sdf): the autoencoder in `config.sdf_dir`, or one trained
   here on the distinct goal rows of the dataset (App. G); frozen afterwards.
2. Diff-res: the IK action of every training step (`ik.FingertipIK.table`);
   the low level learns a_s - ik_s.
3. Statistics of each level's inputs and targets on up to `STATS_WINDOWS`
   windows (BeT: k-means bin centers of the normalized targets).
4. `steps` updates of every level on the same sampled windows (the high level
   learns from the recorded fingertips, the low level from the recorded
   fingertips too: teacher forcing, as PianoMime trains them apart).

The policy keeps each level's EMA weights.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import jax
import numpy as np

from agents.common.policy import Normalizer
from agents.common.supervised import check_dataset, check_steps
from agents.pianomime import sampler
from agents.pianomime.agent import PianoMimePolicy, init_level, level_update
from agents.pianomime.config import PianoMimeConfig
from agents.pianomime.features import (
    FINGERTIP_DIM,
    fit_stats,
    goal_steps_for,
    level_spec,
    normalize_target,
    raw_inputs,
    sdf_config_of,
)
from agents.pianomime.networks import init_network
from envs.piano.spec import N_KEYS, OBS_DIM

log = logging.getLogger(__name__)

STATS_WINDOWS = 8192  # windows the normalization statistics and BeT's bins are fitted on
KMEANS_POINTS = 20_000  # per-step targets k-means runs on (at most)
HISTORY_POINTS = 20


def goal_encoder(dataset, config: PianoMimeConfig, seed: int) -> tuple[dict, dict]:
    """(encoder params {"encoder": ...} or {}, info for the policy metadata)."""
    if config.goal_encoding != "sdf":
        return {}, {}
    from agents.sdf import load_autoencoder, train_sdf

    if config.sdf_dir:
        autoencoder = load_autoencoder(config.sdf_dir)
        wanted = sdf_config_of(config)
        fields = ("conv_channels", "kernel_size", "conv_stride", "latent_dim")
        mismatch = {f: (getattr(autoencoder.config, f), getattr(wanted, f)) for f in fields
                    if getattr(autoencoder.config, f) != getattr(wanted, f)}
        if mismatch:
            raise ValueError(f"PianoMimeConfig.sdf_dir={config.sdf_dir}: the autoencoder's encoder differs from the "
                             f"config's sdf_* fields (saved, config): {mismatch}")
        return {"encoder": autoencoder.params["encoder"]}, {"sdf_dir": config.sdf_dir}
    goals = dataset.observation_at("piano_goal", np.arange(len(dataset))).reshape(-1, N_KEYS)
    goals = np.unique(goals.astype(bool), axis=0)
    log.info("pianomime: training the goal autoencoder on %d distinct goals of the training set", len(goals))
    autoencoder, history = train_sdf(goals, sdf_config_of(config), seed=seed)
    return {"encoder": autoencoder.params["encoder"]}, {"sdf_goals": len(goals), "sdf_history": history}


def residual_table(dataset, config: PianoMimeConfig) -> np.ndarray:
    """(N, 39) IK action of every step: from its joints towards the next step's fingertips."""
    from agents.pianomime.ik import fingertip_ik

    every = np.arange(len(dataset))
    joints = dataset.observation_at("hand_state", every)
    following = dataset.observation_at("fingertip_positions", dataset.step_indices(every, [1])[:, 0])
    started = time.perf_counter()
    table = fingertip_ik(config.ik_iterations).table(joints, following)
    log.info("pianomime: IK of %d steps in %.0f s", len(table), time.perf_counter() - started)
    return table


def gather(dataset, config: PianoMimeConfig, ik_table: Optional[np.ndarray], anchors: np.ndarray) -> dict:
    """{level: (raw inputs, target)} for the windows at `anchors`."""
    obs, actions = dataset.get_batch(anchors)
    horizon = np.arange(config.pred_horizon)
    future = dataset.observation_at("fingertip_positions", dataset.step_indices(anchors, horizon + 1))
    future = future.astype(np.float32)
    out = {}
    for level in config.levels:
        raw = raw_inputs(obs, goal_steps_for(config, level))
        if level == "high":
            target = future
        elif level == "low":
            raw["trajectory"] = future
            target = actions
            if ik_table is not None:
                target = actions - ik_table[dataset.step_indices(anchors, horizon)]
        else:
            target = actions
        out[level] = (raw, target.astype(np.float32))
    return out


def fit_level_stats(batch: dict, encoder_params, config: PianoMimeConfig, rng: np.random.Generator) -> dict:
    stats = {}
    for level, (raw, target) in batch.items():
        stats[level] = fit_stats(raw, target, encoder_params, config, level)
        if config.generator == "bet":
            points = np.asarray(normalize_target(target, stats[level])).reshape(-1, target.shape[-1])
            if len(points) > KMEANS_POINTS:
                points = points[rng.choice(len(points), KMEANS_POINTS, replace=False)]
            stats[level]["centers"] = sampler.kmeans(points, config.bet_bins, rng)
    return stats


def train(
    dataset,
    config: PianoMimeConfig = PianoMimeConfig(),
    *,
    steps: int,
    seed: int,
    on_progress: Optional[Callable[[int, int, dict], None]] = None,
) -> tuple[PianoMimePolicy, list[dict]]:
    """Trains every level of `config` for `steps` updates each; returns the policy and the history
    ({"step", "loss" (sum over levels), "<level>_loss", "elapsed_s", "samples_per_s"}, ~20 entries)."""
    owner = "pianomime.train"
    spec = config.spec_for(int(dataset.obs_dim), int(dataset.action_dim))
    check_dataset(owner, dataset, spec)
    check_steps(owner, steps)
    if spec.obs_dim != OBS_DIM:
        raise ValueError(f"{owner}: the dataset's observations have {spec.obs_dim} values, PianoMime's "
                         f"features need RP1M's {OBS_DIM} (Table 3)")
    rng = np.random.default_rng(seed)
    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))
    normalizer = Normalizer.from_dataset(dataset, seed=seed)
    encoder_params, info = goal_encoder(dataset, config, seed)
    ik_table = residual_table(dataset, config) if config.low_level == "residual" and config.stages == 2 else None

    sample = np.sort(rng.choice(len(dataset), min(len(dataset), STATS_WINDOWS), replace=False))
    stats = fit_level_stats(gather(dataset, config, ik_table, sample), encoder_params, config, rng)
    specs = {level: level_spec(config, level, spec.action_dim) for level in config.levels}
    states = {level: init_level(init_network(config, specs[level], jax.random.fold_in(init_key, i)), config)
              for i, level in enumerate(config.levels)}
    stats_device = jax.tree_util.tree_map(np.asarray, stats)

    every = max(1, steps // HISTORY_POINTS)
    history: list[dict] = []
    pending: list[dict] = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = gather(dataset, config, ik_table, rng.integers(0, len(dataset), config.batch_size))
        metrics = {}
        for i, level in enumerate(config.levels):
            raw, target = batch[level]
            states[level], level_metrics = level_update(
                states[level], raw, target, stats_device[level], encoder_params, jax.random.fold_in(loop_key, i),
                steps, config=config.jit_view(), spec=specs[level])
            metrics.update({f"{level}_{k}": v for k, v in level_metrics.items()})
        pending.append(metrics)
        if step % every == 0 or step == steps:
            values = jax.device_get(pending)
            entry: dict[str, Any] = {"step": step}
            for name in values[0]:
                entry[name] = float(np.mean([v[name] for v in values]))
            entry["loss"] = float(sum(entry[f"{level}_loss"] for level in config.levels))
            entry["elapsed_s"] = time.perf_counter() - started
            entry["samples_per_s"] = step * config.batch_size / entry["elapsed_s"]
            if not np.isfinite(entry["loss"]):
                raise FloatingPointError(f"{owner}: loss became {entry['loss']} at step {step}")
            history.append(entry)
            pending = []
            log.info("%s step %d/%d loss %.5g", owner, step, steps, entry["loss"])
            if on_progress is not None:
                on_progress(step, steps, entry)
    params = {"levels": {level: state.ema_params for level, state in states.items()}, "stats": stats}
    if encoder_params:
        params["encoder"] = encoder_params
    if info.get("sdf_history"):
        history[0]["sdf_final_loss"] = info["sdf_history"][-1]["loss"]
    return PianoMimePolicy(spec, config, params, normalizer), history


__all__ = ["FINGERTIP_DIM", "gather", "goal_encoder", "residual_table", "train"]
