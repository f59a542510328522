"""The open-loop search and cache (step 5), and the nominal actions as a time-indexed policy.

Search (`NominalConfig.search`): the open-loop result of one config is
brittle (a finger catching a key edge costs a note and can jam the hand),
so `nominal_trajectory` also solves the chunk with each of
`SEARCH_VARIANTS` (press timing, hover height, step-by-step fingering),
plays every candidate open loop on the lean path (`envs.piano.lean_rollout`,
the F1 of a fresh env to the bit) and keeps the best key-press F1. The env is
deterministic, so that F1 is what the open-loop controller gets; it costs one
IK solve and one (lean) episode per candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from envs.control.nominal.config import SEARCH_VARIANTS, NominalConfig
from envs.control.nominal.trajectory import NominalTrajectory, solve_trajectory, sustain_goal
from envs.piano.config import EnvConfig

if TYPE_CHECKING:
    from envs.music.chunks import Chunk
    from envs.piano.env import PianoEnv
    from envs.piano.lean import LeanPiano
    from envs.piano.metrics import KeyPressMetrics
    from envs.piano.rollout import EpisodeRecord

logger = logging.getLogger(__name__)


_CACHE: "OrderedDict[tuple, NominalTrajectory]" = OrderedDict()
_CACHE_SIZE = 32


def chunk_digest(chunk: "Chunk") -> str:
    from envs.music.chunks import chunk_to_json

    return hashlib.sha256(chunk_to_json(chunk).encode()).hexdigest()[:16]


# Config overrides the open-loop search also plans with (`NominalConfig.search`).
def nominal_trajectory(chunk: "Chunk", env_config: EnvConfig | None = None,
                       config: NominalConfig | None = None) -> NominalTrajectory:
    """`solve_trajectory` for a chunk, cached per (chunk content, env config, nominal config).

    With `config.search`, the trajectory of `config` and of each of
    `SEARCH_VARIANTS` is played open loop (`open_loop_f1`) and the one with the
    best key-press F1 is returned (ties: the earlier candidate, `config` first).
    """
    from envs.piano.env import make_env
    from envs.piano.lean import LeanPiano

    env_config = env_config or EnvConfig()
    config = config or NominalConfig()
    cache_key = (chunk_digest(chunk), env_config.digest(), config.digest())
    if cache_key in _CACHE:
        _CACHE.move_to_end(cache_key)
        return _CACHE[cache_key]
    candidates = [{}] + (list(SEARCH_VARIANTS) if config.search else [])
    sustain = sustain_goal(chunk, chunk.n_steps)
    env = make_env(chunk, env_config, seed=0)
    try:
        lean = LeanPiano(chunk, env_config, 1, env=env) if len(candidates) > 1 else None
        trajectories = [_single_threaded(solve_trajectory, env, sustain, replace(config, **overrides))
                        for overrides in candidates]
    finally:
        env.close()
    f1s = open_loop_f1(lean, [t.actions for t in trajectories]) if lean is not None else [None]
    scores = [(json.dumps(overrides, sort_keys=True), f1) for overrides, f1 in zip(candidates, f1s)]
    chosen = 0  # the first best (ties: the earlier candidate)
    for index, f1 in enumerate(f1s):
        if f1 is not None and f1 > f1s[chosen]:
            chosen = index
    trajectory, f1 = trajectories[chosen], f1s[chosen]
    if len(candidates) > 1:
        others = [i for i in range(len(candidates)) if i != chosen]
        trajectory = replace(trajectory, search=tuple([scores[chosen]] + [scores[i] for i in others]),
                             alternatives=tuple(trajectories[i].actions for i in others))
        logger.info("%s: nominal search chose %s (open-loop F1 %.3f; %s)", chunk.chunk_id, scores[chosen][0], f1,
                    ", ".join(f"{o} {v:.3f}" for o, v in scores))
    logger.info("%s: nominal trajectory of %d steps, IK %.1f ms/step", chunk.chunk_id, len(trajectory.actions),
                1e3 * trajectory.ik_seconds / max(len(trajectory.actions), 1))
    _CACHE[cache_key] = trajectory
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return trajectory


def open_loop_f1(lean: "LeanPiano", candidates: list[np.ndarray]) -> list[float]:
    """Key-press F1 of each (T, 39) action sequence played open loop from the episode start
    over the whole chunk (the last action held past its end, as `play_actions`)."""
    from envs.piano.lean_rollout import open_loop, result_metrics

    n_steps = lean.n_steps
    padded = np.stack([np.asarray(a, np.float64)[np.minimum(np.arange(n_steps), len(a) - 1)] for a in candidates])
    return [float(f) for f in result_metrics(lean, open_loop(lean, padded))["f1"]]


def clear_nominal_cache() -> None:
    """Forget the cached nominal trajectories (e.g. to measure planning time)."""
    _CACHE.clear()


def _single_threaded(fn, *args):
    """Small dense QPs run fastest on one BLAS thread (several threads fight over a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return fn(*args)
    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


def nominal_actions(chunk: "Chunk", env_config: EnvConfig | None = None,
                    config: NominalConfig | None = None) -> np.ndarray:
    """(T, 39) open-loop nominal actions of the chunk (cached, deterministic)."""
    return nominal_trajectory(chunk, env_config, config).actions.copy()


# ----------------------------------------------------------------------------------
# As a policy


class NominalController:
    """The nominal actions of one chunk as a time-indexed policy.

    `controller(t)` is the action of control step t (the last one past the end).
    `residual_action(t, residual)` is nominal + residual clipped to the action
    bounds: the residual specialist's action (PianoMime section 3.2,
    pi = pi_residual + q_ik). `act` is an `envs.piano.rollout.Controller`.
    """

    def __init__(self, trajectory: NominalTrajectory, action_minimum: np.ndarray | None = None,
                 action_maximum: np.ndarray | None = None) -> None:
        self.trajectory = trajectory
        self.actions = trajectory.actions
        self.minimum = None if action_minimum is None else np.asarray(action_minimum, dtype=np.float64)
        self.maximum = None if action_maximum is None else np.asarray(action_maximum, dtype=np.float64)
        self._t = 0

    @classmethod
    def for_chunk(cls, chunk: "Chunk", env_config: EnvConfig | None = None,
                  config: NominalConfig | None = None, env: "PianoEnv | None" = None) -> "NominalController":
        trajectory = nominal_trajectory(chunk, env_config, config)
        if env is not None:
            spec = env.action_spec()
            return cls(trajectory, spec.minimum, spec.maximum)
        return cls(trajectory)

    @property
    def n_steps(self) -> int:
        return len(self.actions)

    def __call__(self, t: int) -> np.ndarray:
        if t < 0:
            raise ValueError(f"NominalController: step index must be >= 0, got {t}")
        return self.actions[min(t, self.n_steps - 1)].copy()

    def residual_action(self, t: int, residual: np.ndarray) -> np.ndarray:
        action = self(t) + np.asarray(residual, dtype=np.float64)
        if self.minimum is not None:
            action = np.clip(action, self.minimum, self.maximum)
        return action

    def reset(self) -> None:
        """Restart `act`'s step counter (call at each episode start)."""
        self._t = 0

    def act(self, observation: dict, rng: np.random.Generator) -> np.ndarray:
        """`envs.piano.rollout.Controller`: the action of the next step (counts calls since `reset`)."""
        del observation, rng
        action = self(self._t)
        self._t += 1
        return action


def run_open_loop(chunk: "Chunk", env_config: EnvConfig | None = None, config: NominalConfig | None = None,
                  *, n_steps: int | None = None) -> "EpisodeRecord":
    """Play the chunk's nominal actions open loop in a fresh env; the record has P/R/F1.

    `n_steps` shortens the episode (the first n steps of the chunk).
    """
    env_config = env_config or EnvConfig()
    if n_steps is not None:
        if not 0 < n_steps:
            raise ValueError(f"run_open_loop: n_steps must be positive, got {n_steps}")
        chunk = replace(chunk, n_steps=min(n_steps, chunk.n_steps))
    return play_actions(chunk, env_config, nominal_trajectory(chunk, env_config, config).actions)


def play_actions(chunk: "Chunk", env_config: EnvConfig | None, actions: np.ndarray) -> "EpisodeRecord":
    """Play a fixed action sequence (the last action past its end) in a fresh env of the chunk."""
    from envs.piano.env import make_env
    from envs.piano.rollout import run_episode

    controller = NominalController(SimpleNamespace(actions=np.asarray(actions)))
    env = make_env(chunk, env_config or EnvConfig(), seed=0)
    try:
        return run_episode(env, controller.act, np.random.default_rng(0))
    finally:
        env.close()


def open_loop_metrics(chunk: "Chunk", env_config: EnvConfig | None = None, config: NominalConfig | None = None,
                      *, n_steps: int | None = None) -> "KeyPressMetrics":
    """Precision, recall and F1 of the nominal controller played open loop."""
    return run_open_loop(chunk, env_config, config, n_steps=n_steps).metrics
