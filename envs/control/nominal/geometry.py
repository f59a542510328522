"""Keyboard geometry read from the env, the goal-timed fingertip plan, finger helpers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.control.nominal.config import LEFT, RIGHT, NominalConfig
from envs.piano.config import EnvConfig
from envs.piano.spec import FINGERS_PER_HAND, LITTLE_FINGER, N_FINGERTIPS, N_KEYS

if TYPE_CHECKING:
    from envs.piano.env import PianoEnv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyboardGeometry:
    """Where the keys are (world frame, keys at rest)."""

    centers: np.ndarray  # (88, 3) key geom centres
    half_sizes: np.ndarray  # (88, 3) key geom half sizes (x: half length, towards the player is +x)
    press_points: np.ndarray  # (88, 3) robopianist's press point of each key (envs.piano.task.key_press_points)

    @classmethod
    def from_env(cls, env: "PianoEnv") -> "KeyboardGeometry":
        """Read the geometry from a freshly reset env (keys at rest)."""
        physics, task = env.physics, env.task
        geoms = [key.geom[0] for key in task.piano.keys]
        bound = physics.bind(geoms)
        return cls(centers=np.array(bound.xpos, dtype=np.float64), half_sizes=np.array(bound.size, dtype=np.float64),
                   press_points=np.asarray(task.key_press_points(physics, np.arange(N_KEYS)), dtype=np.float64))

    @property
    def key_tops(self) -> np.ndarray:
        """(88,) z of each key's top surface."""
        return self.centers[:, 2] + self.half_sizes[:, 2]

    @property
    def white_top(self) -> float:
        return float(self.key_tops.min())

    @property
    def is_black(self) -> np.ndarray:
        return self.key_tops > self.white_top + 1e-6

    def press_targets(self, config: "NominalConfig") -> np.ndarray:
        """(88, 3) fingertip target of a finger pressing each key."""
        fraction = np.where(self.is_black, config.black_press_fraction, config.white_press_fraction)
        targets = self.centers.copy()
        targets[:, 0] += fraction * self.half_sizes[:, 0]
        targets[:, 2] = self.key_tops - config.press_depth
        return targets

    def hover_x(self, config: "NominalConfig") -> float:
        """x of a hovering fingertip: over the white keys' press targets."""
        white = ~self.is_black
        return float(np.median(self.centers[white, 0] + config.white_press_fraction * self.half_sizes[white, 0]))


@dataclass(frozen=True)
class FingertipPlan:
    """Planned fingertips over a chunk, at goal timing (step t: end of step t)."""

    targets: np.ndarray  # (T, 10, 3) fingertip target positions, world frame
    pressing: np.ndarray  # (T, 10) bool: the fingertip is on a key that must be down
    key: np.ndarray  # (T, 10) int: the key (0-87) each fingertip presses, -1 when hovering
    unassigned: np.ndarray  # (T,) int: goal keys left without a finger (more keys than fingers)

    @property
    def n_steps(self) -> int:
        return len(self.key)


def hand_of(finger: int) -> int:
    return RIGHT if finger < FINGERS_PER_HAND else LEFT


def usable_fingers(env_config: EnvConfig | None = None) -> np.ndarray:
    """Finger indices that may press keys (little fingers out in the four-finger embodiment)."""
    fingers = np.arange(N_FINGERTIPS)
    if env_config is not None and env_config.four_fingers:
        fingers = fingers[fingers % FINGERS_PER_HAND != LITTLE_FINGER]
    return fingers

