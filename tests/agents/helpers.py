"""Shared small DroQ configurations and data, so every test module reuses the same jit compilations."""

import dataclasses

import numpy as np

from agents.common.replay import Batch
from agents.droq import DroQConfig

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
