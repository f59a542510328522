"""PianoMime's SDF goal autoencoder (App. G): a pre-trained encoder of the 88-key goal into a
16-d code, used by the PianoMime generalist (`agents.pianomime`). Not a policy."""

from agents.sdf.agent import (
    GoalAutoencoder,
    encode_goals,
    encoder_apply,
    key_points,
    load_autoencoder,
    query_box,
    read_autoencoder_meta,
    save_autoencoder,
    train_sdf,
)
from agents.sdf.config import SDFConfig
from agents.sdf.losses import goal_sdf

# Bump when a change makes saved autoencoders stale (the benchmark keys on it).
CODE_VERSION = "1"

__all__ = [
    "CODE_VERSION",
    "GoalAutoencoder",
    "SDFConfig",
    "encode_goals",
    "encoder_apply",
    "goal_sdf",
    "key_points",
    "load_autoencoder",
    "query_box",
    "read_autoencoder_meta",
    "save_autoencoder",
    "train_sdf",
]
