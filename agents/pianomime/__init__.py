"""PianoMime's distilled generalist (PianoMime 3.3, App. G-I): two-stage diffusion (fingertips, then
joints or an IK residual), its ablations (binary goals, one stage, BeT); registered as "pianomime"."""

from agents.common.policy import register_policy
from agents.pianomime.agent import PianoMimePolicy, level_sample, level_update, snap_to_midline
from agents.pianomime.config import PianoMimeConfig
from agents.pianomime.train import train

# Bump when a change makes previously trained policies stale (tasks.benchmark keys on it).
CODE_VERSION = "1"

register_policy("pianomime", PianoMimePolicy, PianoMimeConfig, train)

__all__ = ["PianoMimeConfig", "PianoMimePolicy", "level_sample", "level_update", "snap_to_midline", "train"]
