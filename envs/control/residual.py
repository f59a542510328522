"""The residual task: a learned correction around the OT-IK nominal controller.

PianoMime section 3.2: pi(a | s, g_t) = pi_residual(a | s, g_t) + q_ik_{t+1}.
Our nominal q_ik comes from the chunk's notes alone (`envs.control.nominal`, OT
fingering + mink IK), or, for a chunk of a video demonstration, from the
video's fingertips (`nominal_source: reference`, `envs.control.nominal.reference`).

`ResidualEnv` wraps a `PianoEnv` (or a `LeanEnv`, the same steps on the lean
path; `LeanResidual` in `envs.control.lean_residual` is this task for many lanes):

- action: the residual r in [-1, 1]^39 (the agent's tanh-Gaussian range);
  the env receives clip(nominal_t + scale * half_range * r) in its own units,
  so `scale` bounds the residual to a fraction of each actuator's range
  (PianoMime does not bound it; with scale = 1 the agent can reach any action
  from any nominal).
- observation: the RP1M dict (Table 3) plus ``nominal_action``, the nominal
  action of the step about to be taken, scaled to [-1, 1] (PianoMime
  Appendix Table 4, "prior control input solved by IK"). `flat_observation`
  gives the 1144 + 39 = 1183 vector the agent sees.
- reward: the RP1M reward (Eq. 3) plus, optionally, PianoMime's
  fingertip-mimic term (Appendix Table 3) toward the nominal plan's
  fingertip targets, weighted by `mimic_weight` (default 0: PianoMime's
  Fig. 7 shows F1 is highest without it; the term only trades F1 for
  similarity to the plan).
- `step_info()` adds ``applied_action``, the action the piano env received:
  what the shards store as the step's action.

With the agent's residual held at zero plus Gaussian noise, the same wrapper
is the open-loop `ik` specialist (`tasks.specialist`, kind ``ik``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from types import SimpleNamespace
from typing import TYPE_CHECKING

import dm_env
import numpy as np
from dm_env import specs

from envs import atomic
from envs.control.nominal import NominalConfig, NominalController, nominal_trajectory
from envs.piano.env import PianoEnv, flatten_observation, make_env

if TYPE_CHECKING:
    from envs.piano.lean_env import LeanEnv

NOMINAL_KEY = "nominal_action"
NOMINAL_SOURCES = ("plan", "reference")


@dataclasses.dataclass(frozen=True)
class ResidualConfig:
    """The residual specialist's task around the nominal controller (how DroQ learns in it:
    `agents.droq.ResidualLearning`).

    Attributes:
      scale: bound of the residual as a fraction of each actuator's half range
        (ours; PianoMime leaves it unbounded). 0.25 lets a finger move a
        quarter of its range away from the IK solution.
      mimic_weight: weight of PianoMime's fingertip-mimic reward
        g(||p_plan - p_robot||) (Appendix Table 3: 1/3 beside 2/3 key press);
        0 keeps the RP1M reward unchanged (PianoMime Fig. 7: best F1 at 0).
      mimic_margin: distance (m) at which the mimic term has fallen to 0.1
        (Gaussian tolerance as the RP1M OT term, which is 1 within 0.01 m).
      nominal: how the nominal trajectory is planned and solved.
      nominal_source: "plan" (the fingertips planned from the notes) or
        "reference" (PianoMime 3.2: IK of a video demonstration's fingertips,
        for chunks of ``video:`` songs; `envs.control.nominal.reference`). The
        mimic term follows the same fingertips.
    """

    scale: float = 0.25
    mimic_weight: float = 0.0
    mimic_margin: float = 0.05
    nominal: NominalConfig = dataclasses.field(default_factory=NominalConfig)
    nominal_source: str = "plan"

    def __post_init__(self) -> None:
        if self.nominal_source not in NOMINAL_SOURCES:
            raise ValueError(f"ResidualConfig.nominal_source={self.nominal_source!r}: must be one of "
                             f"{list(NOMINAL_SOURCES)}")
        if not 0.0 < self.scale <= 2.0:
            raise ValueError(f"ResidualConfig.scale={self.scale}: must be in (0, 2]")
        if self.mimic_weight < 0:
            raise ValueError(f"ResidualConfig.mimic_weight={self.mimic_weight}: must be >= 0")
        if self.mimic_margin <= 0:
            raise ValueError(f"ResidualConfig.mimic_margin={self.mimic_margin}: must be > 0")

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["nominal_source"] == "plan":  # left out at its default: run keys from before it existed hold
            del out["nominal_source"]
        return out

    @classmethod
    def from_dict(cls, payload: dict | None) -> "ResidualConfig":
        payload = dict(payload or {})
        nominal = payload.pop("nominal", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - names)
        if unknown:
            raise ValueError(f"ResidualConfig: unknown fields {unknown}")
        if nominal is not None:
            payload["nominal"] = NominalConfig.from_dict(nominal, "ResidualConfig.nominal")
        return cls(**payload)

    def digest(self) -> str:
        blob = json.dumps(self.digest_doc(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def digest_doc(self) -> dict:
        return {**self.as_dict(), "nominal": self.nominal.digest_doc()}


def gaussian_tolerance(distance: np.ndarray, margin: float) -> np.ndarray:
    """1 at 0, 0.1 at `margin` (dm_control rewards.tolerance, gaussian sigmoid, bounds (0, 0))."""
    scale = np.sqrt(-2.0 * np.log(0.1))
    return np.exp(-0.5 * (np.asarray(distance) * scale / margin) ** 2)


class ResidualEnv(dm_env.Environment):
    """A `PianoEnv` whose action is a bounded residual around the nominal controller."""

    def __init__(self, env: "PianoEnv | LeanEnv", controller: NominalController, config: ResidualConfig,
                 fingertip_targets: np.ndarray | None = None) -> None:
        self._env = env
        self._config = config
        spec = env.action_spec()
        self._minimum = np.asarray(spec.minimum, dtype=np.float64)
        self._maximum = np.asarray(spec.maximum, dtype=np.float64)
        self._half_range = 0.5 * (self._maximum - self._minimum)
        self._centre = 0.5 * (self._maximum + self._minimum)
        self._controller = controller
        self._targets = fingertip_targets
        self._t = 0
        self._info: dict = {}

    # dm_env API
    def reset(self) -> dm_env.TimeStep:
        self._t = 0
        self._info = {}
        return self._augment(self._env.reset())

    def step(self, residual) -> dm_env.TimeStep:
        residual = np.clip(np.asarray(residual, dtype=np.float64), -1.0, 1.0)
        applied = np.clip(self._controller(self._t) + self._config.scale * self._half_range * residual,
                          self._minimum, self._maximum)
        timestep = self._env.step(applied)
        info = dict(self._env.step_info())
        info["applied_action"] = applied
        reward = timestep.reward
        if self._config.mimic_weight > 0 and self._targets is not None:
            target = self._targets[min(self._t, len(self._targets) - 1)]
            tips = self._env.fingertip_positions()
            mimic = float(np.mean(gaussian_tolerance(np.linalg.norm(tips - target, axis=-1),
                                                      self._config.mimic_margin)))
            terms = dict(info.get("reward_terms", {}))
            terms["mimic"] = self._config.mimic_weight * mimic
            info["reward_terms"] = terms
            reward = reward + terms["mimic"]
            timestep = timestep._replace(reward=reward)
        self._info = info
        self._t += 1
        return self._augment(timestep)

    def observation_spec(self):
        spec = OrderedDict(self._env.observation_spec())
        spec[NOMINAL_KEY] = specs.Array(shape=self._half_range.shape, dtype=np.float64, name=NOMINAL_KEY)
        return spec

    def action_spec(self) -> specs.BoundedArray:
        shape = self._half_range.shape
        return specs.BoundedArray(shape, np.float64, -np.ones(shape), np.ones(shape), name="residual")

    def reward_spec(self):
        return self._env.reward_spec()

    def discount_spec(self):
        return self._env.discount_spec()

    def close(self) -> None:
        self._env.close()

    # extras, as PianoEnv
    @property
    def task(self):
        return self._env.task

    @property
    def physics(self):
        return self._env.physics

    @property
    def config(self):
        return self._env.config

    @property
    def residual_config(self) -> ResidualConfig:
        return self._config

    @property
    def episode_steps(self) -> int:
        return self._env.episode_steps

    @property
    def controller(self) -> NominalController:
        return self._controller

    def set_nominal(self, actions: np.ndarray) -> None:
        """Play around other nominal actions (T, 39) from the next reset (the mpc kind's
        closed-loop rollouts: each its own executed actions)."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self._env.episode_steps, len(self._half_range)):
            raise ValueError(f"ResidualEnv.set_nominal: actions of shape {actions.shape}, expected "
                             f"({self._env.episode_steps}, {len(self._half_range)})")
        self._controller = NominalController(SimpleNamespace(actions=actions), self._minimum, self._maximum)

    def step_info(self) -> dict:
        """`PianoEnv.step_info()` plus ``applied_action`` (and a ``mimic`` reward term when weighted)."""
        return self._info

    def random_state_seed(self, seed: int) -> None:
        self._env.random_state_seed(seed)

    @staticmethod
    def flat_observation(obs: dict) -> np.ndarray:
        """The agent's input: the RP1M 1144-vector, then the scaled nominal action (39)."""
        return np.concatenate([flatten_observation(obs), np.asarray(obs[NOMINAL_KEY], dtype=np.float32)])

    def _augment(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
        obs = OrderedDict(timestep.observation)
        nominal = self._controller(self._t)
        obs[NOMINAL_KEY] = (nominal - self._centre) / np.where(self._half_range > 0, self._half_range, 1.0)
        return timestep._replace(observation=obs)


def nominal_arrays(chunk, env_config, config: NominalConfig, cache_file=None,
                   source: str = "plan", alternatives: bool = False) -> tuple[np.ndarray, ...]:
    """(actions (T, 39), fingertip targets (T, 10, 3)) of the chunk's nominal trajectory,
    and with `alternatives` (A, T, 39): the actions of the open-loop search's other candidates.

    With `cache_file`, a file written earlier for the same chunk and configs is
    read instead of solving the IK again (rollout workers of one specialist
    share it); a new solution is written there atomically.
    """
    from pathlib import Path

    from envs.control.nominal import chunk_digest

    key = f"{chunk_digest(chunk)}|{env_config.digest()}|{config.digest()}" + ("" if source == "plan" else f"|{source}")
    if cache_file is not None and Path(cache_file).exists():
        try:
            with np.load(cache_file) as data:
                if str(data["key"]) == key and (not alternatives or "alternatives" in data.files):
                    found = data["actions"], data["targets"]
                    return (*found, data["alternatives"]) if alternatives else found
        except (OSError, KeyError, ValueError):
            pass  # damaged or foreign: solve again
    if source == "reference":
        from envs.control.nominal.reference import reference_trajectory

        trajectory = reference_trajectory(chunk, env_config, config)
    else:
        trajectory = nominal_trajectory(chunk, env_config, config)
    actions, targets = trajectory.actions, trajectory.command_targets
    others = np.array(trajectory.alternatives, dtype=np.float64).reshape(-1, *actions.shape)
    if cache_file is not None:
        atomic.write_with(cache_file, lambda tmp: np.savez(tmp, key=np.array(key), actions=actions, targets=targets,
                                                           alternatives=others))
    return (actions, targets, others) if alternatives else (actions, targets)


def make_residual_env(chunk, env_config=None, residual_config: ResidualConfig | None = None, *,
                      seed: int | None = None, nominal_file=None, lean: bool = False) -> ResidualEnv:
    """The residual task of one chunk; its nominal trajectory is solved once (cached
    in memory, and in `nominal_file` when given). `lean`: around a `LeanEnv`
    (`envs.piano.lean_env`, the same steps, cheaper) instead of a `PianoEnv`."""
    residual_config = residual_config or ResidualConfig()
    if lean:
        from envs.piano.lean_env import make_lean_env

        env = make_lean_env(chunk, env_config)
    else:
        env = make_env(chunk, env_config, seed=seed)
    actions, targets = nominal_arrays(chunk, env.config, residual_config.nominal, nominal_file,
                                       residual_config.nominal_source)
    spec = env.action_spec()
    controller = NominalController(SimpleNamespace(actions=actions), spec.minimum, spec.maximum)
    return ResidualEnv(env, controller, residual_config, fingertip_targets=targets)


def observation_dim(env) -> int:
    """Size of the flat vector an agent sees for `env` (PianoEnv: 1144; ResidualEnv: 1183)."""
    return sum(int(np.prod(s.shape)) for s in env.observation_spec().values())


def flat_observation_fn(env):
    """The function turning `env`'s observation dicts into the agent's flat vector."""
    return env.flat_observation if isinstance(env, ResidualEnv) else flatten_observation
