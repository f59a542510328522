"""The one contract every imitation policy (BC, IBC, BC-RNN, Diffusion Policy) follows.

Shapes (diffusion_policy's convention, RP1M Appendix B):

- observation window ``obs``: ``(B, To, obs_dim)`` float32, the last ``To`` flat
  observations (``tasks.rlds.reader.flatten_observation`` order), oldest first. At
  an episode start the first observation is repeated, as in training
  (`tasks.rlds.reader.WindowDataset`).
- action chunk: ``(B, Ta, action_dim)`` float32 in the env's action units (as
  stored in the shards), ``Ta = spec.action_horizon`` steps that the caller
  executes one per control step before it asks again.

A policy is trained on `WindowDataset` batches with
``obs_horizon = spec.obs_horizon``, ``action_horizon = spec.pred_horizon`` and
``action_offset = spec.action_offset``; of the predicted ``pred_horizon`` steps
it returns the ``action_horizon`` starting at the current step.

Every policy class implements `Policy`: a frozen config dataclass, parameters as
a pytree, a `Normalizer` fitted on the training data and saved with them,
``reset(batch_size)`` at each episode start (recurrent state, e.g. BC-RNN), and
``predict_chunk(obs, key)``. `agents.common.io` saves and loads any registered
policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """Sizes shared by a policy, its training windows and its evaluation loop.

    Attributes:
      obs_dim: flat observation size (1144 for RP1M, Table 3).
      action_dim: action size (39: two Shadow hands with forearms + sustain).
      obs_horizon: observations per window, To.
      pred_horizon: actions the model predicts per window, Tp (>= action_horizon).
      action_horizon: actions executed per `predict_chunk` call, Ta.
      action_offset: window index of the first predicted action relative to the
        current step (0: the chunk starts now; -(To - 1): diffusion_policy's
        horizon that starts at the first observed step).
    """

    obs_dim: int
    action_dim: int
    obs_horizon: int = 1
    pred_horizon: int = 1
    action_horizon: int = 1
    action_offset: int = 0

    def __post_init__(self):
        for name in ("obs_dim", "action_dim", "obs_horizon", "pred_horizon", "action_horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PolicySpec.{name} must be a positive int, got {value!r}")
        if not -(self.obs_horizon - 1) <= self.action_offset <= 0:
            raise ValueError(
                f"PolicySpec.action_offset={self.action_offset} must lie in [-(obs_horizon-1), 0] = "
                f"[{-(self.obs_horizon - 1)}, 0]"
            )
        if self.current_index + self.action_horizon > self.pred_horizon:
            raise ValueError(
                f"PolicySpec: pred_horizon={self.pred_horizon} is too short to return "
                f"action_horizon={self.action_horizon} actions from the current step "
                f"(index {self.current_index} of the predicted chunk)"
            )

    @property
    def current_index(self) -> int:
        """Index, within a predicted chunk, of the action for the current step."""
        return -self.action_offset

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-dimension affine maps fitted on training data, saved with the policy.

    Observations: zero mean, unit variance (std floored at `eps`, so constant
    dimensions such as unused keys pass through centred). Actions: min/max to
    [-1, 1] (diffusion_policy's `LinearNormalizer` "limits" mode; dimensions
    with range below `eps` map to 0).
    """

    obs_mean: np.ndarray
    obs_std: np.ndarray
    action_min: np.ndarray
    action_max: np.ndarray
    eps: float = 1e-6

    @classmethod
    def fit(cls, observations: np.ndarray, actions: np.ndarray, eps: float = 1e-6) -> "Normalizer":
        obs = np.asarray(observations, np.float64).reshape(-1, np.shape(observations)[-1])
        act = np.asarray(actions, np.float64).reshape(-1, np.shape(actions)[-1])
        if len(obs) == 0 or len(act) == 0:
            raise ValueError("Normalizer.fit: no data")
        return cls(
            obs_mean=obs.mean(0).astype(np.float32),
            obs_std=np.maximum(obs.std(0), eps).astype(np.float32),
            action_min=act.min(0).astype(np.float32),
            action_max=act.max(0).astype(np.float32),
            eps=eps,
        )

    @classmethod
    def from_dataset(cls, dataset, *, max_samples: int = 200_000, seed: int = 0) -> "Normalizer":
        """Fitted on (up to `max_samples`) steps of a `tasks.rlds.reader.WindowDataset`.

        Each anchor contributes its own step: the last observation of the
        window and the action at the anchor, chunk index `-action_offset`
        (index 0 would skip each episode's last `-action_offset` actions).
        """
        n = len(dataset)
        anchors = np.arange(n) if n <= max_samples else np.random.default_rng(seed).choice(n, max_samples, replace=False)
        obs, actions = dataset.get_batch(np.sort(anchors))
        current = min(max(-int(getattr(dataset, "action_offset", 0)), 0), actions.shape[1] - 1)
        return cls.fit(obs[:, -1], actions[:, current])

    def _action_scale(self) -> tuple[np.ndarray, np.ndarray]:
        span = self.action_max - self.action_min
        live = span > self.eps
        scale = np.where(live, 2.0 / np.where(live, span, 1.0), 0.0).astype(np.float32)
        offset = np.where(live, -1.0 - self.action_min * scale, 0.0).astype(np.float32)
        return scale, offset

    def normalize_obs(self, obs):
        return (obs - self.obs_mean) / self.obs_std

    def normalize_action(self, action):
        scale, offset = self._action_scale()
        return action * scale + offset

    def unnormalize_action(self, action):
        """Inverse of `normalize_action`; dimensions with no range return their constant."""
        span = self.action_max - self.action_min
        live = span > self.eps
        return np.where(live, (np.asarray(action) + 1.0) * 0.5 * span + self.action_min, self.action_min).astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "obs_mean": self.obs_mean,
            "obs_std": self.obs_std,
            "action_min": self.action_min,
            "action_max": self.action_max,
            "eps": np.float64(self.eps),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> "Normalizer":
        return cls(
            obs_mean=np.asarray(state["obs_mean"], np.float32),
            obs_std=np.asarray(state["obs_std"], np.float32),
            action_min=np.asarray(state["action_min"], np.float32),
            action_max=np.asarray(state["action_max"], np.float32),
            eps=float(state["eps"]),
        )


@runtime_checkable
class Policy(Protocol):
    """What the evaluation loop and the benchmark flow use.

    Implementations are plain classes holding `spec`, `config`, `params` (a
    pytree) and `normalizer`; their math lives in module-level pure functions
    (house rule 1).
    """

    name: ClassVar[str]
    spec: PolicySpec
    config: Any
    params: Any
    normalizer: Normalizer

    def reset(self, batch_size: int) -> None:
        """Start new episodes for `batch_size` parallel envs (clears recurrent state)."""

    def predict_chunk(self, obs: np.ndarray, key) -> np.ndarray:
        """(B, To, obs_dim) raw observations -> (B, Ta, action_dim) env-unit actions."""


# name -> (policy class, config class, train function). Filled by each policy
# module through `register_policy`; `policy_registry()` imports them all.
_REGISTRY: dict[str, tuple[type, type, Callable[..., Policy]]] = {}
POLICY_MODULES = ("agents.bc", "agents.ibc", "agents.bc_rnn", "agents.diffusion", "agents.pianomime", "agents.flow_matching")


def register_policy(name: str, policy_cls: type, config_cls: type, train_fn: Callable[..., Policy]) -> None:
    _REGISTRY[name] = (policy_cls, config_cls, train_fn)


def policy_registry() -> dict[str, tuple[type, type, Callable[..., Policy]]]:
    """All registered policies, importing the policy packages on first use."""
    import importlib

    for module in POLICY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return dict(_REGISTRY)


def get_policy(name: str) -> tuple[type, type, Callable[..., Policy]]:
    registry = policy_registry()
    if name not in registry:
        raise ValueError(f"unknown policy {name!r}: expected one of {sorted(registry)}")
    return registry[name]
