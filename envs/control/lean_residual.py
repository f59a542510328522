"""The residual task (`envs.control.residual.ResidualEnv`) for many lanes of the lean path.

`LeanResidual(lean, controller, config, targets)` is `ResidualEnv` for every lane
of a `LeanPiano`, each at its own step t: the applied action is
clip(nominal_t + scale * half_range * r) for residuals r clipped to [-1, 1];
the agent's extra input is the scaled nominal action of the step about to be
taken; PianoMime's mimic term (when weighted) is added to the reward and the
reward terms. The same arithmetic, element by element, as `ResidualEnv`, so
rollouts through it store the episodes of the env path (tested).
`make_lean_residual` builds it from the chunk's (cached) nominal trajectory.
"""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Sequence

import numpy as np
from dm_env import specs

from envs.control.nominal import NominalController
from envs.control.residual import NOMINAL_KEY, ResidualConfig, ResidualEnv, gaussian_tolerance, nominal_arrays
from envs.piano.config import EnvConfig
from envs.piano.lean import LeanPiano, LeanStep
from envs.piano.lean_env import lean_piano
from envs.piano.spec import ACTION_DIM

if TYPE_CHECKING:
    from envs.music.chunks import Chunk


class LeanResidual:
    """`ResidualEnv`'s task on every lane of `lean`, stepped together."""

    def __init__(self, lean: LeanPiano, controller: NominalController, config: ResidualConfig,
                 fingertip_targets: np.ndarray | None = None) -> None:
        self.lean = lean
        self.config = config
        spec = lean.action_spec()
        self._minimum = np.asarray(spec.minimum, dtype=np.float64)
        self._maximum = np.asarray(spec.maximum, dtype=np.float64)
        self._half_range = 0.5 * (self._maximum - self._minimum)
        self._centre = 0.5 * (self._maximum + self._minimum)
        self._divisor = np.where(self._half_range > 0, self._half_range, 1.0)
        self._controller = controller
        self._targets = fingertip_targets

    @property
    def n_lanes(self) -> int:
        return self.lean.n_lanes

    @property
    def n_steps(self) -> int:
        return self.lean.n_steps

    @property
    def obs_dim(self) -> int:
        return self.lean.obs_dim + ACTION_DIM

    def action_spec(self) -> specs.BoundedArray:
        """The residual's range, [-1, 1] per action (as `ResidualEnv`)."""
        shape = self._half_range.shape
        return specs.BoundedArray(shape, np.float64, -np.ones(shape), np.ones(shape), name="residual")

    def reset(self, lanes: Sequence[int] | None = None) -> None:
        self.lean.reset(lanes)

    def observation(self, lane: int) -> "OrderedDict[str, np.ndarray]":
        """The lane's RP1M observation plus ``nominal_action`` (as `ResidualEnv` gives it)."""
        obs = self.lean.observation(lane)
        nominal = self._controller(int(self.lean.t[lane]))
        obs[NOMINAL_KEY] = (nominal - self._centre) / self._divisor
        return obs

    flat_observation = staticmethod(ResidualEnv.flat_observation)

    def applied_actions(self, residuals: np.ndarray, lanes: Sequence[int] | None = None) -> np.ndarray:
        """(n, 39) actions the piano receives for residuals (n, 39) of `lanes` at their steps."""
        lanes = self.lean._lanes(lanes)
        residuals = np.clip(np.asarray(residuals, dtype=np.float64), -1.0, 1.0)
        t = self.lean.t
        nominal = np.stack([self._controller(int(t[i])) for i in lanes])
        return np.clip(nominal + self.config.scale * self._half_range * residuals, self._minimum, self._maximum)

    def step(self, residuals: np.ndarray, lanes: Sequence[int] | None = None) -> tuple[LeanStep, np.ndarray]:
        """One step of `lanes` (all if None); the step (reward with the mimic term when
        weighted, no observation) and the applied actions."""
        lanes = self.lean._lanes(lanes)
        before = self.lean.t
        applied = self.applied_actions(residuals, lanes)
        step = self.lean.step(applied, lanes, observe=False)
        if self.config.mimic_weight > 0 and self._targets is not None:
            tips = self.lean.fingertip_positions(lanes)
            mimic = np.zeros(len(lanes))
            for j, i in enumerate(lanes):
                target = self._targets[min(int(before[i]), len(self._targets) - 1)]
                value = float(np.mean(gaussian_tolerance(np.linalg.norm(tips[j] - target, axis=-1),
                                                          self.config.mimic_margin)))
                mimic[j] = self.config.mimic_weight * value
            step.reward_terms["mimic"] = mimic
            step.reward = step.reward + mimic
        return step, applied


def make_lean_residual(chunk: "Chunk", env_config: EnvConfig | None = None,
                       residual_config: ResidualConfig | None = None, n_lanes: int = 1, *,
                       nominal_file=None) -> LeanResidual:
    """The residual task of `chunk` on `n_lanes` lanes; the nominal trajectory comes from
    `nominal_file` when it holds this chunk's (as `make_residual_env`)."""
    env_config = env_config or EnvConfig()
    residual_config = residual_config or ResidualConfig()
    lean = lean_piano(chunk, env_config, n_lanes)
    actions, targets = nominal_arrays(chunk, env_config, residual_config.nominal, nominal_file,
                                       residual_config.nominal_source)
    spec = lean.action_spec()
    controller = NominalController(SimpleNamespace(actions=actions), spec.minimum, spec.maximum)
    return LeanResidual(lean, controller, residual_config, fingertip_targets=targets)
