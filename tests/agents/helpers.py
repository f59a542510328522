"""Shared small DroQ configurations and data (so every test module reuses the same jit
compilations), and the synthetic expert episodes the imitation policies learn."""

import dataclasses

import numpy as np

from agents.common.replay import Batch
from agents.droq import DroQConfig
from envs.piano.spec import OBSERVATION_KEYS
from tasks.rlds import Episode
from tasks.rlds.reader import WindowDataset

OBS_DIM = 3
ACTION_DIM = 2
BATCH_SIZE = 64

# Small networks and faster learning rates keep tests to seconds; the structure
# (dropout 0.01 + LayerNorm critics, 2 Qs, GELU, discount 0.88) stays RP1M Table 4's.
SMALL_CONFIG = DroQConfig(
    hidden_dims=(64, 64),
    actor_lr=1e-3,
    critic_lr=1e-3,
    temp_lr=1e-3,
    init_temperature=0.1,
    batch_size=BATCH_SIZE,
)
SCAN_CONFIG = dataclasses.replace(SMALL_CONFIG, num_updates_per_call=4)


def random_batch(rng: np.random.Generator, leading=(BATCH_SIZE,)) -> Batch:
    """Random transitions with OBS_DIM/ACTION_DIM and the given leading shape."""
    leading = tuple(leading)
    return Batch(
        observations=rng.normal(size=(*leading, OBS_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(*leading, ACTION_DIM)).astype(np.float32),
        rewards=rng.normal(size=leading).astype(np.float32),
        discounts=(rng.uniform(size=leading) > 0.1).astype(np.float32),
        next_observations=rng.normal(size=(*leading, OBS_DIM)).astype(np.float32),
    )


# Small per-key observation sizes (obs_dim 12) for the imitation policies' tests.
KEY_DIMS = dict(zip(OBSERVATION_KEYS, (3, 1, 2, 1, 2, 3)))


def expert_episodes(action_dim: int, seed: int = 0, n_episodes: int = 4, n_steps: int = 50) -> list[Episode]:
    """Episodes whose action is tanh(obs @ W) * 2 + 1 (env range (-1, 3))."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(sum(KEY_DIMS.values()), action_dim)) / 2
    episodes = []
    for _ in range(n_episodes):
        obs = {k: rng.normal(size=(n_steps, d)).astype(np.float32) for k, d in KEY_DIMS.items()}
        flat = np.concatenate([obs[k] for k in OBSERVATION_KEYS], axis=-1)
        actions = (np.tanh(flat @ weights) * 2 + 1).astype(np.float32)
        episodes.append(Episode(steps={"observation": obs, "action": actions}, metadata={"n_steps": n_steps}))
    return episodes


def dataset_for(config, episodes) -> WindowDataset:
    """A window dataset with the horizons of `config`."""
    spec = config.spec_for(1, 1)  # horizons only
    return WindowDataset.from_episodes(
        episodes, spec.obs_horizon, spec.pred_horizon, action_offset=spec.action_offset
    )
