"""The `mpc` specialist kind: the OT-IK nominal optimised by sampling MPC.

Training (`train_mpc`) solves the chunk's IK nominal (`envs.control.nominal`,
cached in `ik_nominal.npz`), optimises it with `envs.control.mpc` (resumable
through `mpc_progress.npz`) and writes the executed actions as the specialist's
`nominal.npz`; the rollout env (`mpc_env`) is a `ResidualEnv` around it.
Rollouts (`MPCSpecialistConfig.rollout_mode`):

- ``closed_loop``: rollout i runs the MPC again (`rollout_planner`) along the
  optimised trajectory while each executed action gets the rollout noise of
  seed i (`rollout_noise`, as `tasks.rollouts` draws it); the env then plays
  those actions with a zero residual. The trajectory alone is fragile: any
  noise makes a finger catch a key edge somewhere and the open-loop hand never
  recovers, so the stored F1 of open-loop noisy replays falls far below the
  noise-free one (benchmarks/mpc_dev.py); the MPC corrects it.
- ``open_loop``: as the `ik` kind, a zero residual plus Gaussian noise of
  `rollout_noise` (cheap, lower F1).

`params.yaml`'s `collect.mpc` section sets `MPCSpecialistConfig` (the `MPCConfig`
fields, `rollout_noise`, `rollout_mode`, `rollout_planner`; one flat dict);
`collect.residual` keeps shaping the env around the nominal (its `scale` and the
IK `nominal` config).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from envs import atomic
from envs.checks import check_int
from envs.control.mpc_config import MPCConfig
from envs.piano.config import EnvConfig
from tasks.names import NOMINAL_FILE

log = logging.getLogger(__name__)

IK_NOMINAL_FILE = "ik_nominal.npz"  # the IK nominal the MPC starts from (work folder only)
PROGRESS_FILE = "mpc_progress.npz"  # the MPC's checkpoint (work folder only)
# Std of the pre-tanh Gaussian noise on the zero residual in rollouts (times
# ResidualConfig.scale of the half range: ~1.25% of each actuator's half range). RP1M rolls each
# policy out 500 times "with different random seeds" (its stochastic DroQ actor); this noise is
# what makes our episodes differ. Dev chunks (benchmarks/reports/mpc_dev.md): closed-loop
# episodes differ (F1 sd 0.003-0.02 across seeds); open-loop replays lose 0.1-0.2 F1 at 0.05
# and a little more at 0.1.
MPC_ROLLOUT_NOISE = 0.05


ROLLOUT_MODES = ("closed_loop", "open_loop")
# The MPC of closed-loop rollouts: the short cheap one (36-50 CPU-s per 200 steps and rollout),
# along the trajectory the default `MPCConfig` optimised. Dev chunks (benchmarks/reports/mpc_dev.md,
# first 200 steps, dt 0.005, noise 0.05): stored F1 closed loop 0.71/0.88/0.49/0.68 (Nocturne, bwv846,
# polonaise_op1n2, dichterliebe_no2) against 0.53/0.73/0.40/0.53 for open-loop noisy replays of the
# same trajectory and 0.69/0.89/0.53/0.76 for its noise-free replay.
TRACKING = MPCConfig(horizon=6, n_samples=15, n_iterations=1)


@dataclass(frozen=True)
class MPCSpecialistConfig:
    """What `params.yaml`'s `collect.mpc:` section sets.

    Attributes:
      planner: the MPC that optimises the IK nominal (`MPCConfig`).
      rollout_noise: std of the rollouts' pre-tanh Gaussian noise on the zero residual
        (times `ResidualConfig.scale` of each actuator's half range).
      rollout_mode: ``closed_loop`` (the MPC corrects the noise) or ``open_loop`` (module docstring).
      rollout_planner: the MPC of closed-loop rollouts (`TRACKING`; a dict in `from_dict`
        overrides TRACKING's fields; None: `planner`'s settings).
      passes: how many times the planner runs over the chunk; pass p > 0 optimises around the
        actions pass p - 1 executed (seed + p; its own checkpoint), so later passes sample
        around a trajectory that already plays better. 1: the IK nominal alone.
      alternative_nominals: the planner also scores, at every step, the windows of the IK
        nominal search's other candidates (`envs.control.mpc.optimise_trajectory`'s
        `alternatives`). Off: on four dev chunks (first 200 steps, seed 0) MPC F1 mean
        0.785 -> 0.786 (benchmarks/reports/nominal_dev.md), no gain beyond seed noise.
    """

    planner: MPCConfig = field(default_factory=MPCConfig)
    rollout_noise: float = MPC_ROLLOUT_NOISE
    rollout_mode: str = "closed_loop"
    rollout_planner: MPCConfig | None = TRACKING
    alternative_nominals: bool = False
    passes: int = 1

    def __post_init__(self) -> None:
        check_int("mpc", "passes", self.passes, minimum=1)
        if not 0.0 < self.rollout_noise <= 1.0:
            raise ValueError(f"mpc: rollout_noise={self.rollout_noise}: must be in (0, 1]")
        if self.rollout_mode not in ROLLOUT_MODES:
            raise ValueError(f"mpc: rollout_mode={self.rollout_mode!r}: expected one of {ROLLOUT_MODES}")
        if not isinstance(self.alternative_nominals, bool):
            raise ValueError(f"mpc: alternative_nominals={self.alternative_nominals!r}: expected true or false")

    @property
    def tracking(self) -> MPCConfig:
        """The MPC of closed-loop rollouts."""
        return self.rollout_planner or self.planner

    def as_dict(self) -> dict:
        return {**self.planner.as_dict(), "rollout_noise": self.rollout_noise, "rollout_mode": self.rollout_mode,
                "rollout_planner": None if self.rollout_planner is None else self.rollout_planner.as_dict(),
                "alternative_nominals": self.alternative_nominals,
                # one pass keeps the keys of the specialists made before passes existed
                **({"passes": self.passes} if self.passes != 1 else {})}

    @classmethod
    def from_dict(cls, payload: dict | None) -> "MPCSpecialistConfig":
        payload = dict(payload or {})
        noise = payload.pop("rollout_noise", MPC_ROLLOUT_NOISE)
        mode = payload.pop("rollout_mode", "closed_loop")
        tracking = payload.pop("rollout_planner", {})
        alternatives = payload.pop("alternative_nominals", cls.alternative_nominals)
        passes = payload.pop("passes", cls.passes)
        if tracking is not None:
            if not isinstance(tracking, dict):
                raise ValueError(f"mpc.rollout_planner={tracking!r}: expected a mapping of MPCConfig fields or null")
            tracking = MPCConfig.from_dict({**TRACKING.as_dict(), **tracking}, "mpc.rollout_planner")
        return cls(MPCConfig.from_dict(payload, "mpc"), noise, mode, tracking, alternatives, passes)

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def progress_file(p: int) -> str:
    """The checkpoint of MPC pass p (pass 0: `PROGRESS_FILE`, as before passes existed)."""
    return PROGRESS_FILE if p == 0 else PROGRESS_FILE.replace(".npz", f".pass{p}.npz")


def _trajectory_prefix(chunk, env_config: EnvConfig) -> str:
    from envs.control.nominal import chunk_digest

    return f"mpc|{chunk_digest(chunk)}|{env_config.digest()}|"


def load_trajectory(chunk, env_config: EnvConfig, work_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(actions (T, 39), IK fingertip targets (T, 10, 3), key) of an mpc specialist's `nominal.npz`."""
    path = Path(work_dir) / NOMINAL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no optimised trajectory; train the mpc specialist of "
                                f"{chunk.chunk_id} first")
    with np.load(path) as data:
        key, actions, targets = str(data["key"]), np.array(data["actions"]), np.array(data["targets"])
    if not key.startswith(_trajectory_prefix(chunk, env_config)) or actions.shape != (chunk.n_steps, 39):
        raise ValueError(f"{path}: trajectory {key!r} of shape {actions.shape} is not the mpc trajectory of "
                         f"{chunk.chunk_id} ({chunk.n_steps} steps) under this env config")
    return actions, targets, key


def mpc_env(chunk, env_config: EnvConfig | None, residual_task, *, work_dir: Path, seed: int | None = None):
    """The rollout env of a trained mpc specialist: a `ResidualEnv` around its optimised trajectory."""
    from envs.control.nominal import NominalController
    from envs.control.residual import ResidualEnv
    from envs.piano.env import make_env

    if work_dir is None:
        raise ValueError(f"{chunk.chunk_id}: the mpc env needs the specialist's work folder (its {NOMINAL_FILE})")
    env = make_env(chunk, env_config, seed=seed)
    actions, targets, _ = load_trajectory(chunk, env.config, work_dir)
    spec = env.action_spec()
    controller = NominalController(SimpleNamespace(actions=actions), spec.minimum, spec.maximum)
    return ResidualEnv(env, controller, residual_task, fingertip_targets=targets)


def train_mpc(chunk, work_dir: Path, env_config: EnvConfig, residual_config, mpc_config: MPCSpecialistConfig,
              seed: int, *, on_progress=None, should_stop=None) -> dict:
    """Plan the IK nominal, optimise it, write `nominal.npz`; returns the manifest's mpc fields
    (`final` point, `curve`, `mpc` summary). Resumes an interrupted optimisation; when
    `should_stop()` turns true it checkpoints and raises `agents.droq.train.TrainingStopped`."""
    from agents.droq.train import TrainingStopped, evaluate
    from envs.control.mpc import MPCStopped, optimise_trajectory
    from envs.control.mpc_checkpoint import progress_key
    from envs.control.residual import nominal_arrays

    work_dir = Path(work_dir)
    started, cpu = time.perf_counter(), time.process_time()
    ik_actions, targets, others = nominal_arrays(chunk, env_config, residual_config.task.nominal,
                                                 work_dir / IK_NOMINAL_FILE, alternatives=True)
    others = others if mpc_config.alternative_nominals else others[:0]
    ik_cpu = time.process_time() - cpu

    def step_done(step: int, n_steps: int) -> None:
        if step % 50 == 0 or step == n_steps:
            log.info("%s: MPC step %d/%d", chunk.chunk_id, step, n_steps)
            if on_progress is not None:
                on_progress(step, n_steps, {})

    nominal, passes = ik_actions, []
    for p in range(mpc_config.passes):  # a finished pass resumes from its checkpoint at once
        try:
            result = optimise_trajectory(chunk, env_config, nominal, mpc_config.planner, seed + p,
                                         checkpoint=work_dir / progress_file(p), on_step=step_done,
                                         should_stop=should_stop, alternatives=list(others) if p == 0 else [])
        except MPCStopped as exc:
            raise TrainingStopped(exc.step) from None
        key = progress_key(chunk, env_config, mpc_config.planner, nominal, seed + p,
                           alternatives=others if len(others) and p == 0 else None)
        passes.append({"mpc_f1": result.metrics["f1"], "replay_f1": result.replay["f1"],
                       "cpu_seconds": round(result.cpu_seconds, 1)})
        nominal = result.actions
    key = _trajectory_prefix(chunk, env_config) + key
    atomic.write_with(work_dir / NOMINAL_FILE, lambda tmp: np.savez(
        tmp, key=np.array(key), actions=result.actions, targets=targets, ik_actions=ik_actions))
    env = mpc_env(chunk, env_config, residual_config.task, work_dir=work_dir, seed=seed)
    point = {"step": 0, **evaluate(env, None)}
    env.close()
    if abs(point["f1"] - result.replay["f1"]) > 1e-9:  # the lean path equals the env step for step
        log.warning("%s: the optimised trajectory scores F1 %.4f in the env, %.4f in the lean replay",
                    chunk.chunk_id, point["f1"], result.replay["f1"])
    summary = {
        "trajectory_key": key,
        "mpc_f1": result.metrics["f1"],
        "replay_f1": result.replay["f1"],
        "ik_cpu_seconds_this_run": round(ik_cpu, 1),
        "mpc_cpu_seconds": round(sum(p["cpu_seconds"] for p in passes), 1),
        "passes": passes,
        "resumed_from_step": result.resumed_from,
        "winners": {name: int((result.winner == i).sum()) for i, name in enumerate(_winner_names())},
        "iteration_log": result.iteration_log,
    }
    log.info("%s: mpc specialist F1 %.3f (%.0f CPU-s MPC)", chunk.chunk_id, point["f1"], result.cpu_seconds)
    return {"final": point, "curve": [point], "mpc": summary,
            "train_seconds_this_run": round(time.perf_counter() - started, 1)}


def rollout_residuals(n_steps: int, noise: float, seed: int, action_dim: int = 39) -> np.ndarray:
    """(T, 39) the residuals rollout `seed` of a policy with zero mean and std `noise` sends to the
    `ResidualEnv`, in the operations of `tasks.rollouts` (to the bit)."""
    from agents.common import to_env_action

    rng = np.random.default_rng(seed)
    std = np.exp(np.full(action_dim, np.log(noise)))
    ones = np.ones(action_dim)
    out = np.empty((n_steps, action_dim))
    for t in range(n_steps):
        residual = np.tanh(np.zeros(action_dim) + std * rng.standard_normal(action_dim))
        out[t] = np.clip(to_env_action(residual, -ones, ones), -1.0, 1.0)
    return out


def rollout_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray, scale: float, noise: float,
                    seed: int) -> np.ndarray:
    """(T, 39) the actions an open-loop rollout `seed` of a trajectory gives the piano: the
    residuals of `rollout_residuals` through `ResidualEnv`'s bounds, in its operations, so that
    the lean path predicts the stored episodes (to the bit)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    half = 0.5 * (high - low)
    residuals = rollout_residuals(len(actions), noise, seed, actions.shape[1])
    return np.stack([np.clip(nominal + scale * half * r, low, high) for nominal, r in zip(actions, residuals)])


def closed_loop_actions(chunk, env_config: EnvConfig, trajectory: np.ndarray, config: MPCSpecialistConfig,
                        scale: float, seed: int, lean=None):
    """The `MPCResult` of closed-loop rollout `seed`: the MPC `config.tracking` along `trajectory`,
    each executed action offset by the rollout noise of seed `seed` (`rollout_residuals` times
    `scale` of the half range); its `actions` are what the piano received."""
    from envs.control.mpc import optimise_trajectory
    from envs.piano.lean import LeanPiano

    lean = lean or LeanPiano(chunk, env_config)
    spec = lean.action_spec()
    half = 0.5 * (np.asarray(spec.maximum, np.float64) - np.asarray(spec.minimum, np.float64))
    offsets = scale * half * rollout_residuals(chunk.n_steps, config.rollout_noise, seed, len(half))
    planner_rng = np.random.default_rng([seed, 1])  # its own stream, apart from the noise
    return optimise_trajectory(chunk, env_config, trajectory, config.tracking, planner_rng, lean=lean,
                               execution_offsets=offsets)


def closed_loop_nominals(chunk, env_config: EnvConfig, manifest: dict, work_dir: Path):
    """For the rollouts of a trained mpc specialist (its manifest): None in ``open_loop`` mode,
    else a function seed -> (T, 39) actions of that closed-loop rollout (`closed_loop_actions`)."""
    from envs.piano.lean import LeanPiano

    config = MPCSpecialistConfig.from_dict(manifest["mpc_config"])
    if config.rollout_mode != "closed_loop":
        return None
    trajectory, _, _ = load_trajectory(chunk, env_config, work_dir)
    scale = manifest["residual_config"]["scale"]
    lean = LeanPiano(chunk, env_config)

    def actions_for(seed: int) -> np.ndarray:
        result = closed_loop_actions(chunk, env_config, trajectory, config, scale, seed, lean=lean)
        log.info("%s: closed-loop rollout %d F1 %.3f (%.0f CPU-s)", chunk.chunk_id, seed, result.metrics["f1"],
                 result.cpu_seconds)
        return result.actions

    return actions_for


def noisy_replay_metrics(lean, actions: np.ndarray, scale: float, noise: float, seeds) -> list[dict]:
    """Precision/recall/F1 of the rollouts `seeds` of the trajectory `actions` (the noise of
    `rollout_actions`), played on the lean path (`envs.piano.lean.LeanPiano`, lane 0)."""
    from envs.control.mpc import replay_metrics

    spec = lean.action_spec()
    return [replay_metrics(lean, rollout_actions(actions, spec.minimum, spec.maximum, scale, noise, seed))
            for seed in seeds]


def _winner_names() -> tuple:
    from envs.control.mpc import WINNERS

    return WINNERS


def config_digest(config: MPCSpecialistConfig | None) -> str:
    return (config or MPCSpecialistConfig()).digest()


__all__ = ["IK_NOMINAL_FILE", "MPC_ROLLOUT_NOISE", "MPCSpecialistConfig", "PROGRESS_FILE", "TRACKING", "config_digest",
           "closed_loop_actions", "closed_loop_nominals", "load_trajectory", "mpc_env", "noisy_replay_metrics", "rollout_actions",
           "rollout_residuals", "train_mpc", "ROLLOUT_MODES"]
