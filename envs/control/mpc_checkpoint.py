"""The MPC's progress through a chunk, and its checkpoint file (one .npz, written atomically).

A checkpoint holds everything the next control step depends on: the executed
prefix and its per-step records, the current plan, the executed lane's MuJoCo
state and the rng state, under a key of chunk, task, MPC config, nominal and
seed. A file with another key is ignored (and later overwritten).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envs import atomic
from envs.piano.lean import LaneState
from envs.piano.spec import ACTION_DIM

if TYPE_CHECKING:
    from envs.control.mpc_config import MPCConfig
    from envs.music.chunks import Chunk
    from envs.piano.config import EnvConfig

log = logging.getLogger(__name__)

MPC_VERSION = "mpc-1"  # bump when a change alters optimised trajectories
_ARRAYS = ("actions", "precision", "recall", "f1", "plan_score", "best_score", "winner", "round_gain")


def _array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes()).hexdigest()[:16]


def progress_key(chunk: "Chunk", env_config: "EnvConfig", config: "MPCConfig", nominal: np.ndarray,
                 seed: int | None, offsets: np.ndarray | None = None,
                 alternatives: np.ndarray | None = None) -> str:
    """Identity of one optimisation: what its result depends on."""
    from envs.control.nominal import chunk_digest

    blob = f"{chunk_digest(chunk)}|{env_config.digest()}|{config.digest()}|{_array_digest(nominal)}|{seed}|{MPC_VERSION}"
    if offsets is not None:
        blob += f"|{_array_digest(offsets)}"
    if alternatives is not None:
        blob += f"|alternatives {_array_digest(alternatives)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class MPCProgress:
    """The executed prefix (steps 0..t-1) and the plan for step t."""

    t: int
    plan: np.ndarray  # (<= horizon, 39) actions planned from step t
    actions: np.ndarray  # (T, 39), rows < t executed
    precision: np.ndarray  # (T,)
    recall: np.ndarray
    f1: np.ndarray
    plan_score: np.ndarray
    best_score: np.ndarray
    winner: np.ndarray  # (T,) int8
    round_gain: np.ndarray  # (T, n_iterations) score gained by each sampling round
    physics: np.ndarray | None = None  # the executed lane's state at step t (loaded checkpoints)
    sustain: float = 0.0
    rng_state: dict | None = None
    cpu_seconds_before: float = 0.0  # CPU time of earlier runs

    @classmethod
    def start(cls, n_steps: int, plan: np.ndarray, n_iterations: int) -> "MPCProgress":
        zeros = lambda: np.zeros(n_steps)  # noqa: E731
        return cls(0, np.array(plan, dtype=np.float64), np.zeros((n_steps, ACTION_DIM)), zeros(), zeros(), zeros(),
                   zeros(), zeros(), np.zeros(n_steps, np.int8), np.zeros((n_steps, n_iterations)))

    def record(self, t: int, action: np.ndarray, precision: float, recall: float, f1: float,
               plan_score: float, best_score: float, winner: int) -> None:
        self.actions[t] = action
        self.precision[t], self.recall[t], self.f1[t] = precision, recall, f1
        self.plan_score[t], self.best_score[t], self.winner[t] = plan_score, best_score, winner

    def lane_state(self) -> LaneState:
        return LaneState(self.physics, self.t, self.sustain)


def save_progress(path, key: str, progress: MPCProgress, state: LaneState, rng_state: dict,
                  cpu_seconds: float) -> None:
    """Write the progress (through step `progress.t`) to `path` atomically."""
    if state.t != progress.t:
        raise ValueError(f"save_progress({path}): lane at step {state.t}, progress at {progress.t}")
    arrays = {name: getattr(progress, name) for name in _ARRAYS}
    atomic.write_with(Path(path), lambda tmp: np.savez(
        tmp, key=np.array(key), t=np.array(progress.t), plan=progress.plan, physics=state.physics,
        sustain=np.array(state.sustain), rng_state=np.array(json.dumps(rng_state)),
        cpu_seconds=np.array(cpu_seconds), **arrays))


def load_progress(path, key: str, n_steps: int) -> MPCProgress | None:
    """The progress stored at `path` if it exists and is of `key` (else None)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            if str(data["key"]) != key:
                log.info("%s: checkpoint of another optimisation, starting over", path)
                return None
            arrays = {name: np.array(data[name]) for name in _ARRAYS}
            progress = MPCProgress(t=int(data["t"]), plan=np.array(data["plan"]), physics=np.array(data["physics"]),
                                   sustain=float(data["sustain"]), rng_state=json.loads(str(data["rng_state"])),
                                   cpu_seconds_before=float(data["cpu_seconds"]), **arrays)
    except (OSError, KeyError, ValueError) as exc:  # damaged: start over
        log.warning("%s: unreadable MPC checkpoint (%s), starting over", path, exc)
        return None
    if progress.actions.shape != (n_steps, ACTION_DIM) or not 0 <= progress.t <= n_steps:
        log.warning("%s: checkpoint of %s steps at step %d does not fit %d steps, starting over", path,
                    progress.actions.shape, progress.t, n_steps)
        return None
    return progress
