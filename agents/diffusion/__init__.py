"""Diffusion Policy (Chi et al. 2023), the CNN variant with a DDIM sampler, as RP1M benchmarks it (Sec. 5, B.1.4)."""

from agents.common.policy import register_policy
from agents.diffusion.agent import (
    DiffusionPolicy,
    DiffusionTrainState,
    ddim_sample,
    ddim_time_films,
    ema_decay,
    ema_update,
    init_params,
    init_state,
    learning_rate,
    sample_normalized_actions,
    train,
    update,
    update_step,
)
from agents.diffusion.config import DiffusionConfig

# Bump when a change makes previously trained policies stale (tasks.benchmark keys on it).
CODE_VERSION = "1"

register_policy("diffusion", DiffusionPolicy, DiffusionConfig, train)

__all__ = [
    "DiffusionConfig",
    "DiffusionPolicy",
    "DiffusionTrainState",
    "ddim_sample",
    "ddim_time_films",
    "ema_decay",
    "ema_update",
    "init_params",
    "init_state",
    "learning_rate",
    "sample_normalized_actions",
    "train",
    "update",
    "update_step",
]
