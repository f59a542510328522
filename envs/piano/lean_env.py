"""dm_env view of one lane of the lean path, for the loops written against `PianoEnv`.

`make_lean_env(chunk, config)` steps the task of `make_env(chunk, config)` on
`envs.piano.lean.LeanPiano` (one lane) and gives the same time steps: the RP1M
observation dict (float64), the reward (Eq. 3, summed in robopianist's order),
discount 1.0, LAST at the chunk's end (a time limit), `step_info()` and the
specs. The DroQ loop, its evaluation and `tasks.policy_eval` run on it. It has
no `task` or `physics`: rendering and the IK planner need `make_env`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import dm_env
import numpy as np

from envs.piano.config import EnvConfig
from envs.piano.env import make_env
from envs.piano.lean import LeanPiano

if TYPE_CHECKING:
    from envs.music.chunks import Chunk


class LeanEnv(dm_env.Environment):
    """`PianoEnv`'s interface over lane `lane` of a `LeanPiano` (which it owns alone)."""

    def __init__(self, lean: LeanPiano, observation_spec: OrderedDict, reward_spec, discount_spec) -> None:
        self._lean = lean
        self._observation_spec = observation_spec
        self._reward_spec = reward_spec
        self._discount_spec = discount_spec
        self._reset_next = True

    # dm_env API
    def reset(self) -> dm_env.TimeStep:
        self._lean.reset([0])
        self._reset_next = False
        return dm_env.restart(self._lean.observation(0))

    def step(self, action) -> dm_env.TimeStep:
        if self._reset_next:  # as composer: a step after the last one starts a new episode
            return self.reset()
        step = self._lean.step(np.asarray(action, dtype=np.float64)[None], [0], observe=False)
        observation = self._lean.observation(0)
        reward = float(step.reward[0])
        if step.last[0]:
            self._reset_next = True
            return dm_env.truncation(reward, observation, 1.0)
        return dm_env.transition(reward, observation, 1.0)

    def observation_spec(self):
        return OrderedDict(self._observation_spec)

    def action_spec(self):
        return self._lean.action_spec()

    def reward_spec(self):
        return self._reward_spec

    def discount_spec(self):
        return self._discount_spec

    def close(self) -> None:
        """Nothing to release (the MjData are freed with the object)."""

    # extras, as PianoEnv
    @property
    def lean(self) -> LeanPiano:
        return self._lean

    @property
    def config(self) -> EnvConfig:
        return self._lean.config

    @property
    def episode_steps(self) -> int:
        return self._lean.n_steps

    def step_info(self) -> dict:
        """As `PianoEnv.step_info()`: reward_terms, ot_key_for_finger, pressed_keys, sustain_pressed, goal_keys."""
        return self._lean.step_info(0)

    def fingertip_positions(self) -> np.ndarray:
        """(10, 3) fingertip sites in world coordinates, right hand first."""
        return self._lean.fingertip_positions([0])[0].copy()

    def random_state_seed(self, seed: int) -> None:
        """The task has no randomness of its own (as `PianoEnv`, whose random state it leaves unused)."""
        del seed


_TEMPLATES: "OrderedDict[tuple, tuple]" = OrderedDict()  # (chunk, config) -> (LeanPiano, specs)
_TEMPLATES_KEPT = 8
_TEMPLATES_LOCK = threading.Lock()


def _template(chunk: "Chunk", config: EnvConfig) -> tuple:
    from envs.music.chunks import chunk_to_json

    key = (hashlib.sha256(chunk_to_json(chunk).encode()).hexdigest(), config.digest())
    with _TEMPLATES_LOCK:
        if key in _TEMPLATES:
            _TEMPLATES.move_to_end(key)
            return _TEMPLATES[key]
    env = make_env(chunk, config, seed=0)  # about 2 s: the MJCF of hands and piano, compiled
    try:
        template = (LeanPiano(chunk, config, 1, env=env), (env.observation_spec(), env.reward_spec(),
                                                          env.discount_spec()))
    finally:
        env.close()
    with _TEMPLATES_LOCK:
        _TEMPLATES[key] = template
        while len(_TEMPLATES) > _TEMPLATES_KEPT:
            _TEMPLATES.popitem(last=False)
    return template


def lean_piano(chunk: "Chunk", config: EnvConfig | None = None, n_lanes: int = 1) -> LeanPiano:
    """`LeanPiano(chunk, config, n_lanes)`; the model of the last few (chunk, config) is kept
    per process, so only the first call for a chunk builds an env."""
    return _template(chunk, config or EnvConfig())[0].spawn(n_lanes)


def make_lean_env(chunk: "Chunk", config: EnvConfig | None = None) -> LeanEnv:
    """The piano task of `chunk` as `make_env` builds it, stepped on the lean path."""
    template, specs = _template(chunk, config or EnvConfig())
    return LeanEnv(template.spawn(1), *specs)
