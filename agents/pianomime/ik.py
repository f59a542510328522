"""The IK solution of fingertip targets, for Two-stage Diff-res (PianoMime App. I).

`FingertipIK` runs `envs.control.ik.HandsIK` on the model of a piano env
(built once per process and iteration count: the policy needs the hands'
kinematics, not a song). Each solve starts from observed hand joints
(`hand_state`, the IK's joint order) and returns the 39-dim env action of the
solution (the pedal at 0: the residual carries it).

- `chain(hand_state, targets)`: from the current joints through K successive
  fingertip targets (warm started, one control step each), K actions: what
  the policy adds its residual to at inference.
- `table(hand_states, next_fingertips)`: for every training step s, one solve
  from the joints at s towards the fingertips at s + 1: the IK action of step
  s, from which the residual target a_s - ik_s is made. (At inference the
  joints at later steps are the chain's own, not observed ones.)
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import numpy as np
from mink.exceptions import NoSolutionFound

from envs.piano.spec import ACTION_DIM, N_FINGERTIPS

log = logging.getLogger(__name__)

# A short built-in song: any chunk gives the same hands and piano.
_MODEL_SONG = "robopianist:CMajorScaleTwoHands"


class FingertipIK:
    def __init__(self, iterations: int):
        from envs.control.ik import HandsIK, IKConfig
        from envs.piano.env import load_chunk_env

        self._env = load_chunk_env(_MODEL_SONG)
        self._env.reset()
        self.ik = HandsIK(self._env.physics, self._env.task, IKConfig(iterations=iterations))
        self._qpos0 = np.array(self._env.physics.data.qpos, dtype=np.float64)
        self._lock = threading.Lock()  # one solver per process; evaluations may run in threads
        # Observed joints can sit a hair outside their limits (contacts); the QP's limit
        # constraints are infeasible from there, so a solve starts from them clipped.
        model = self.ik.model
        self._low = np.full(model.nq, -np.inf)
        self._high = np.full(model.nq, np.inf)
        for j in range(model.njnt):
            if model.jnt_limited[j] and model.jnt_type[j] in (2, 3):  # slide, hinge: one qpos each
                self._low[model.jnt_qposadr[j]], self._high[model.jnt_qposadr[j]] = model.jnt_range[j]
        self.failures = 0

    def _reset(self, hand_state: np.ndarray) -> None:
        qpos = self._qpos0.copy()
        qpos[self.ik.hand_qpos] = hand_state
        self.ik.reset(np.clip(qpos, self._low, self._high))

    def chain(self, hand_state: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(46,) joints, (K, 30) fingertip targets (world, m) -> (K, 39) actions."""
        targets = np.asarray(targets, np.float64).reshape(len(targets), N_FINGERTIPS, 3)
        actions = np.empty((len(targets), ACTION_DIM), np.float32)
        with self._lock:
            self._reset(np.asarray(hand_state, np.float64))
            for k, target in enumerate(targets):
                try:
                    self.ik.solve(target)
                except NoSolutionFound:  # the configuration holds: this step's action is the last one's
                    self.failures += 1
                    if self.failures in (1, 100, 10_000):
                        log.warning("FingertipIK: the QP found no solution %d time(s); holding the joints",
                                    self.failures)
                actions[k] = self.ik.action(sustain=0.0)
        return actions

    def table(self, hand_states: np.ndarray, next_fingertips: np.ndarray) -> np.ndarray:
        """(N, 46), (N, 30) -> (N, 39): one solve per row, each from its own joints."""
        started = time.perf_counter()
        out = np.empty((len(hand_states), ACTION_DIM), np.float32)
        for i, (joints, target) in enumerate(zip(hand_states, next_fingertips)):
            out[i] = self.chain(joints, np.asarray(target)[None])[0]
            if i and i % 2000 == 0:
                log.info("IK table: %d/%d steps (%.0f s)", i, len(out), time.perf_counter() - started)
        return out


@functools.lru_cache(maxsize=4)
def fingertip_ik(iterations: int) -> FingertipIK:
    """The process-wide solver for `iterations` QP steps per solve (building it takes seconds)."""
    return FingertipIK(iterations)
