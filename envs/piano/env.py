"""One factory for the RP1M piano environment of one chunk.

`make_env(chunk, config)` builds robopianist's composer environment around
`envs.piano.task.PianoTask` and wraps it in `PianoEnv`, which exposes the RP1M
observation of Table 3 as a dict with fixed keys and order:

    piano_goal           L x 88  (968)  keys to press now and the next 10 steps
    sustain_goal         L x 1   (11)   sustain pedal targets, same steps
    piano_state          88             piano key joint positions
    sustain_state        1              sustain pedal state
    fingertip_positions  30             10 fingertips x (x, y, z), right hand first
    hand_state           46             joint positions, 23 per hand, right first
                         ----
                         1144

and a 39-dim action (19 reduced Shadow-hand actuators incl. forearm x/y per
hand, right first, then the sustain pedal), with per-step extras in
`env.step_info()` for datasets: reward terms, OT assignment, pressed keys.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import dm_env
import numpy as np
from dm_env import specs
from mujoco_utils import composer_utils

from envs.piano import spec
from envs.piano.config import EnvConfig
from envs.piano.spec import ACTION_DIM, OBSERVATION_KEYS  # noqa: F401 (re-exported)
from envs.piano.task import PianoTask

if TYPE_CHECKING:
    from envs.music.chunks import Chunk

def observation_sizes(config: EnvConfig) -> "OrderedDict[str, int]":
    """Sizes of the RP1M observation (Table 3) for `config`'s goal steps, in storage order."""
    return spec.observation_sizes(config.goal_steps)


# robopianist observable name(s) behind each RP1M key.
_SOURCES = {
    "piano_goal": ("piano_goal",),
    "sustain_goal": ("sustain_goal",),
    "piano_state": ("piano/state",),
    "sustain_state": ("piano/sustain_state",),
    "fingertip_positions": ("rh_shadow_hand/fingertip_positions", "lh_shadow_hand/fingertip_positions"),
    "hand_state": ("rh_shadow_hand/joints_pos", "lh_shadow_hand/joints_pos"),
}


def flatten_observation(obs: dict) -> np.ndarray:
    """The 1144-vector of RP1M Table 3 (float32), keys in `OBSERVATION_KEYS` order."""
    return np.concatenate([np.asarray(obs[k], dtype=np.float32).ravel() for k in OBSERVATION_KEYS])


class PianoEnv(dm_env.Environment):
    """dm_env view of the piano task with the RP1M observation dict."""

    def __init__(self, environment: composer_utils.Environment, config: EnvConfig) -> None:
        self._env = environment
        self._config = config
        self._sizes = observation_sizes(config)

    # dm_env API
    def reset(self) -> dm_env.TimeStep:
        return self._convert(self._env.reset())

    def step(self, action) -> dm_env.TimeStep:
        return self._convert(self._env.step(action))

    def observation_spec(self):
        return OrderedDict(
            (k, specs.Array(shape=(n,), dtype=np.float64, name=k)) for k, n in self._sizes.items()
        )

    def action_spec(self) -> specs.BoundedArray:
        return self._env.action_spec()

    def reward_spec(self):
        return self._env.reward_spec()

    def discount_spec(self):
        return self._env.discount_spec()

    def close(self) -> None:
        self._env.close()

    # extras
    @property
    def task(self) -> PianoTask:
        return self._env.task

    @property
    def physics(self):
        return self._env.physics

    @property
    def config(self) -> EnvConfig:
        return self._config

    @property
    def episode_steps(self) -> int:
        return self.task.episode_steps

    def step_info(self) -> dict:
        """Extras of the last step: reward_terms (weighted, summing to the reward),
        ot_key_for_finger (10,), pressed_keys (88,), sustain_pressed, goal_keys (88,)."""
        return self.task.step_info

    def fingertip_positions(self) -> np.ndarray:
        """(10, 3) fingertip sites in world coordinates, right hand first."""
        return self.task.fingertip_positions(self.physics)

    def random_state_seed(self, seed: int) -> None:
        """Reseed the env's own randomness (unused by the default task, kept for variations)."""
        self._env.random_state.seed(seed)

    def _convert(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
        raw = timestep.observation
        obs = OrderedDict()
        for key, sources in _SOURCES.items():
            obs[key] = np.concatenate([np.asarray(raw[s], dtype=np.float64).ravel() for s in sources])
        return timestep._replace(observation=obs)


def make_env(chunk: "Chunk", config: EnvConfig | None = None, *, seed: int | None = None) -> PianoEnv:
    """The RP1M environment for one chunk (see module docstring)."""
    config = config or EnvConfig()
    task = PianoTask(chunk.midi, n_steps=chunk.n_steps, config=config, title=chunk.chunk_id)
    environment = composer_utils.Environment(
        task=task,
        random_state=seed,
        strip_singleton_obs_buffer_dim=True,
        recompile_physics=False,
        legacy_step=True,
    )
    return PianoEnv(environment, config)


def load_chunk_env(ref: str, chunk_index: int = 0, config: EnvConfig | None = None, *,
                   seed: int | None = None, chunk_steps: int | None = None) -> PianoEnv:
    """Convenience: load a song by catalog reference, chunk it as RP1M, build the env."""
    from envs.music.chunks import CHUNK_STEPS, make_chunks
    from envs.music.songs import load_song

    song = load_song(ref)
    chunks = make_chunks(song, chunk_steps=chunk_steps or CHUNK_STEPS)
    if not 0 <= chunk_index < len(chunks):
        raise ValueError(f"{ref}: chunk {chunk_index} does not exist, the song has {len(chunks)} chunks")
    return make_env(chunks[chunk_index], config, seed=seed)
