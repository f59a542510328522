"""Rollout groups on the lean path: one `LeanPiano` of `LANES` lanes per worker.

`tasks.rollouts` runs a group here for the kinds in `LEAN_KINDS` (engine
"lean", the default): the same per-lane policy noise and action arithmetic as
its env path, one `step` call for every lane instead of one dm_control env per
lane, and records taken from `LeanStep`. The stored episodes are those of the
env path (tests/tasks/test_lean_rollouts.py compares them field by field).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.piano.env import flatten_observation
from envs.piano.spec import OBSERVATION_KEYS

LEAN_KINDS = ("droq", "residual", "ik")  # kinds whose rollouts have a lean path


class PlainGroup:
    """The RP1M task on the lanes of a `LeanPiano` (the droq kind), as `LeanResidual` is the residual one."""

    def __init__(self, lean) -> None:
        self.lean = lean
        self.obs_dim = lean.obs_dim

    @property
    def n_steps(self) -> int:
        return self.lean.n_steps

    def action_spec(self):
        return self.lean.action_spec()

    def reset(self, lanes=None) -> None:
        self.lean.reset(lanes)

    def observation(self, lane: int):
        return self.lean.observation(lane)

    flat_observation = staticmethod(flatten_observation)

    def step(self, actions: np.ndarray, lanes=None):
        return self.lean.step(actions, lanes, observe=False), actions


def make_group_sim(job, kind: str, residual_config, n_lanes: int):
    """The lanes a worker steps for `job`'s chunk: a `PlainGroup` or a `LeanResidual`."""
    from envs.piano.lean_env import lean_piano
    from tasks.names import NOMINAL_FILE

    if kind not in LEAN_KINDS:
        raise ValueError(f"{job.chunk.chunk_id}: no lean rollout path for kind {kind!r} (have {LEAN_KINDS})")
    if kind == "droq":
        return PlainGroup(lean_piano(job.chunk, job.env_config, n_lanes))
    from envs.control.lean_residual import make_lean_residual

    return make_lean_residual(job.chunk, job.env_config, residual_config.task, n_lanes,
                              nominal_file=Path(job.specialist_dir) / NOMINAL_FILE)


def run_group_lean(sim, forward, indices: list[int], seeds: list[int], n_lanes: int) -> list[list[dict]]:
    """The step records of rollouts `indices` (one lane each, seeds `seeds`) of `sim`:
    per lane, a list of step dicts as `tasks.rollouts` stores them (with `_goal`)."""
    from agents.common import to_env_action

    n = len(indices)
    lanes = list(range(n))
    noise_rngs = [np.random.default_rng(seed) for seed in seeds]
    sim.reset(lanes)
    spec = sim.action_spec()
    n_steps = sim.n_steps
    records: list[list[dict]] = [[] for _ in lanes]
    obs_batch = np.zeros((n_lanes, sim.obs_dim), np.float32)  # rows past n stay zero, as the env path
    env_actions = np.empty((n, spec.shape[0]))
    for t in range(n_steps):
        observations = [sim.observation(lane) for lane in lanes]
        for lane, obs in enumerate(observations):
            obs_batch[lane] = sim.flat_observation(obs)
        mean, log_std = (np.asarray(x, np.float64) for x in forward(obs_batch))
        for lane in lanes:  # lane by lane, the env path's exact operations
            noise = noise_rngs[lane].standard_normal(mean.shape[1])
            action = np.tanh(mean[lane] + np.exp(log_std[lane]) * noise)
            env_actions[lane] = to_env_action(action, spec.minimum, spec.maximum)
        step, applied = sim.step(env_actions, lanes)
        terms = step.reward_terms
        fingering = terms.get("ot", terms.get("fingering"))  # the fingering term of the configured mode
        mimic = terms.get("mimic")  # the residual's mimic term, when weighted
        for lane, obs in enumerate(observations):
            records[lane].append({
                "observation": {k: obs[k] for k in OBSERVATION_KEYS},
                "action": applied[lane].copy(),  # what the piano received
                "reward": step.reward[lane],
                "discount": 1.0,  # episodes end on the chunk's time limit
                "is_first": t == 0,
                "is_last": t == n_steps - 1,
                "is_terminal": False,
                "ot_key_for_finger": step.ot_key_for_finger[lane],
                "pressed_keys": step.pressed_keys[lane],
                "sustain_pressed": step.sustain_pressed[lane],
                "reward_fingering": fingering[lane] if fingering is not None else 0.0,
                "reward_mimic": mimic[lane] if mimic is not None else 0.0,
                "reward_press": terms["press"][lane],
                "reward_sustain": terms["sustain"][lane],
                "reward_collision": terms["collision"][lane],
                "reward_energy": terms["energy"][lane],
                "_goal": step.goal_keys[lane],
            })
    return records
