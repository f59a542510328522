"""A tiny fixed RP1M-shaped dataset for the PianoMime and flow-matching tests.

Each episode walks the right thumb over a few keys: step t's goal is one key
(k_t, a white key a few keys up every 3 steps); the observation's goal rows
show k_t .. k_{t+10}. The fingertips after action t put the right thumb on
k_t's top (the other nine at the hands' rest pose of the real env), so the
high level's target is a function of the goals. The action is a function of
the current goal key (the low level's target: it sees the goals and the trajectory). The joints are
the env's rest pose, so the IK starts from a real configuration.
"""

from __future__ import annotations

import numpy as np

from envs.piano.keyboard import key_geometry
from envs.piano.spec import ACTION_DIM, GOAL_STEPS, N_KEYS, observation_sizes
from tasks.rlds import Episode
from tasks.rlds.reader import WindowDataset

EPISODE_STEPS = 24
WHITE = np.array([k for k in range(N_KEYS) if not key_geometry().is_black[k]])


def rest_pose():
    """(hand_state (46,), fingertips (30,)) of the real env after reset."""
    from agents.pianomime.ik import fingertip_ik

    env = fingertip_ik(4)._env
    obs = env.reset().observation
    return np.asarray(obs["hand_state"], np.float32), np.asarray(obs["fingertip_positions"], np.float32)


def toy_episodes(n_episodes: int = 4, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    joints, rest_tips = rest_pose()
    tops = key_geometry().tops.astype(np.float32)
    sizes = observation_sizes()
    episodes = []
    for _ in range(n_episodes):
        start = rng.integers(20, 30)
        keys = WHITE[start + np.arange(EPISODE_STEPS + GOAL_STEPS + 1) // 3]
        obs = {k: np.zeros((EPISODE_STEPS, n), np.float32) for k, n in sizes.items()}
        goal = np.zeros((EPISODE_STEPS, GOAL_STEPS, N_KEYS), bool)
        actions = np.zeros((EPISODE_STEPS, ACTION_DIM), np.float32)
        for t in range(EPISODE_STEPS):
            goal[t, np.arange(GOAL_STEPS), keys[t : t + GOAL_STEPS]] = True
            tips = rest_tips.reshape(10, 3).copy()
            if t > 0:
                tips[0] = tops[keys[t - 1]]  # after action t-1, the thumb is on goal key k_{t-1}
            obs["fingertip_positions"][t] = tips.ravel()
            obs["hand_state"][t] = joints
            actions[t, :3] = [np.sin(keys[t] / 7.0), np.cos(keys[t] / 5.0), tops[keys[t], 1] * 3.0]
            actions[t, -1] = 0.5 * (keys[t] % 2)
        obs["piano_goal"] = goal.reshape(EPISODE_STEPS, -1)
        steps = {"observation": obs, "action": actions}
        episodes.append(Episode(steps=steps, metadata={}))
    return episodes


def toy_dataset(config, n_episodes: int = 4, seed: int = 0) -> WindowDataset:
    spec = config.spec_for(1144, ACTION_DIM)
    return WindowDataset.from_episodes(toy_episodes(n_episodes, seed), spec.obs_horizon, spec.pred_horizon,
                                       action_offset=spec.action_offset)
