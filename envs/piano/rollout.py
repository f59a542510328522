"""Running one episode of the piano env with any controller.

A controller is `act(observation_dict, rng) -> action`. `run_episode` steps the
env to the end of the chunk, computes the episode's key-press metrics
(`envs.piano.metrics`) from the goal and pressed keys of every step, and, when asked,
records the RLDS step fields (observation, action, reward, discount, step
metadata) as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from envs.piano.env import PianoEnv
from envs.piano.metrics import KeyPressMetrics, key_press_metrics
from envs.piano.spec import OBSERVATION_KEYS, REWARD_TERMS

Controller = Callable[[dict, np.random.Generator], np.ndarray]


@dataclass
class EpisodeRecord:
    n_steps: int
    episode_return: float
    metrics: KeyPressMetrics
    reward_term_totals: dict[str, float]
    goal_keys: np.ndarray  # (T, 88) bool
    pressed_keys: np.ndarray  # (T, 88) bool
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # filled when record=True


def random_controller(env: PianoEnv) -> Controller:
    spec = env.action_spec()

    def act(obs: dict, rng: np.random.Generator) -> np.ndarray:
        del obs
        return rng.uniform(spec.minimum, spec.maximum).astype(np.float64)

    return act


def zero_controller(env: PianoEnv) -> Controller:
    spec = env.action_spec()
    action = np.clip(np.zeros(spec.shape), spec.minimum, spec.maximum)

    def act(obs: dict, rng: np.random.Generator) -> np.ndarray:
        del obs, rng
        return action

    return act


CONTROLLERS = {"random": random_controller, "zero": zero_controller}


def run_episode(env: PianoEnv, act: Controller, rng: np.random.Generator, *, record: bool = False) -> EpisodeRecord:
    timestep = env.reset()
    goal, pressed = [], []
    totals: dict[str, float] = {}
    episode_return = 0.0
    rec: dict[str, list] = {}
    while not timestep.last():
        obs = timestep.observation
        action = np.asarray(act(obs, rng), dtype=np.float64)
        next_timestep = env.step(action)
        info = env.step_info()
        goal.append(info["goal_keys"])
        pressed.append(info["pressed_keys"])
        reward = float(next_timestep.reward)
        episode_return += reward
        for name, value in info["reward_terms"].items():
            totals[name] = totals.get(name, 0.0) + float(value)
        if record:
            for key in OBSERVATION_KEYS:
                rec.setdefault(f"observation/{key}", []).append(np.asarray(obs[key]))
            rec.setdefault("action", []).append(action)
            rec.setdefault("reward", []).append(reward)
            rec.setdefault("discount", []).append(float(next_timestep.discount))
            rec.setdefault("ot_key_for_finger", []).append(info["ot_key_for_finger"])
            rec.setdefault("pressed_keys", []).append(info["pressed_keys"])
            rec.setdefault("sustain_pressed", []).append(info["sustain_pressed"])
            for name in REWARD_TERMS:
                rec.setdefault(f"reward_{name}", []).append(float(info["reward_terms"].get(name, 0.0)))
        timestep = next_timestep
    goal_arr, pressed_arr = np.array(goal, dtype=bool), np.array(pressed, dtype=bool)
    return EpisodeRecord(
        n_steps=len(goal),
        episode_return=episode_return,
        metrics=key_press_metrics(goal_arr, pressed_arr),
        reward_term_totals=totals,
        goal_keys=goal_arr,
        pressed_keys=pressed_arr,
        steps={k: np.asarray(v) for k, v in rec.items()},
    )
