"""Pieces shared by the agents: networks, distributions, replay, checkpoints, action scaling."""

from agents.common.actions import from_env_action, to_env_action
from agents.common.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    list_checkpoints,
    restore,
    save_checkpoint,
)
from agents.common.replay import Batch, ReplayBuffer

__all__ = [
    "Batch",
    "Checkpoint",
    "ReplayBuffer",
    "from_env_action",
    "latest_checkpoint",
    "list_checkpoints",
    "restore",
    "save_checkpoint",
    "to_env_action",
]
