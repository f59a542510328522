"""Circular replay buffer of flat float32 transitions, in numpy.

Memory: arrays are preallocated with `np.zeros`, which on Linux maps lazily
zeroed pages, so RAM grows as the buffer fills. Full size is
capacity * (2 * obs_dim + action_dim + 2) * 4 bytes, i.e. ~9.3 GB for RP1M's
1M transitions x 1144-dim observations (Table 3, Table 4): observation and
next observation are both stored, trading memory for simplicity.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np


class Batch(NamedTuple):
    """A batch of transitions; every field has the same leading batch shape.

    `discounts` is the environment's per-step continuation (0.0 at a true
    terminal, 1.0 otherwise, including time-limit truncation); the agent
    multiplies it by its own discount factor.
    """

    observations: np.ndarray  # (..., obs_dim) float32
    actions: np.ndarray  # (..., action_dim) float32, in [-1, 1]
    rewards: np.ndarray  # (...,) float32
    discounts: np.ndarray  # (...,) float32
    next_observations: np.ndarray  # (..., obs_dim) float32


_FIELDS = Batch._fields
_COUNTERS = ("insert_index", "size", "capacity")


class ReplayBuffer:
    """Fixed-capacity FIFO buffer; the oldest transition is overwritten when full.

    Args:
      obs_dim: length of the flat observation vector (RP1M: 1144).
      action_dim: length of the action vector (RP1M: 39).
      capacity: maximum number of transitions kept (RP1M Table 4: 1M).
    """

    def __init__(self, obs_dim: int, action_dim: int, capacity: int):
        for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim), ("capacity", capacity)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ReplayBuffer {name} must be a positive int, got {value!r}")
        self.obs_dim = int(obs_dim)
        self.action_dim = int(action_dim)
        self.capacity = int(capacity)
        self._observations = np.zeros((capacity, obs_dim), np.float32)
        self._actions = np.zeros((capacity, action_dim), np.float32)
        self._rewards = np.zeros((capacity,), np.float32)
        self._discounts = np.zeros((capacity,), np.float32)
        self._next_observations = np.zeros((capacity, obs_dim), np.float32)
        self._insert_index = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "observations": self._observations,
            "actions": self._actions,
            "rewards": self._rewards,
            "discounts": self._discounts,
            "next_observations": self._next_observations,
        }

    def _expected_shape(self, field: str) -> tuple[int, ...]:
        return self._arrays()[field].shape[1:]

    def insert(self, obs, action, reward, discount, next_obs) -> None:
        """Appends one transition (obs, action, reward, discount, next_obs)."""
        self.insert_many(
            np.asarray(obs, np.float32)[None],
            np.asarray(action, np.float32)[None],
            np.asarray(reward, np.float32).reshape(1),
            np.asarray(discount, np.float32).reshape(1),
            np.asarray(next_obs, np.float32)[None],
        )

    def insert_many(self, observations, actions, rewards, discounts, next_observations) -> None:
        """Appends n transitions given as arrays with a leading axis of length n.

        Intended for parallel rollouts (one row per env). If n exceeds the
        capacity, only the last `capacity` rows are kept.
        """
        values = dict(
            zip(_FIELDS, (observations, actions, rewards, discounts, next_observations))
        )
        values = {k: np.asarray(v, np.float32) for k, v in values.items()}
        n = values["rewards"].shape[0] if values["rewards"].ndim == 1 else -1
        for field, value in values.items():
            expected = (n, *self._expected_shape(field))
            if n < 0 or value.shape != expected:
                raise ValueError(
                    f"ReplayBuffer.insert_many: {field} has shape {value.shape}, expected "
                    f"(n, {', '.join(map(str, self._expected_shape(field)))}) with the same n "
                    f"as rewards {values['rewards'].shape}"
                )
        if n == 0:
            return
        if n > self.capacity:
            values = {k: v[-self.capacity :] for k, v in values.items()}
            self._insert_index = (self._insert_index + n - self.capacity) % self.capacity
            n = self.capacity
        indices = (self._insert_index + np.arange(n)) % self.capacity
        for field, array in self._arrays().items():
            array[indices] = values[field]
        self._insert_index = (self._insert_index + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def sample(
        self, rng: np.random.Generator, batch_size: int, num_batches: int | None = None
    ) -> Batch:
        """Samples transitions uniformly with replacement.

        Returns a Batch with leading shape (batch_size,), or
        (num_batches, batch_size) when `num_batches` is given (the layout the
        DroQ `update` expects when it runs several updates per call).
        """
        if self._size == 0:
            raise ValueError(f"cannot sample {batch_size} transitions from an empty ReplayBuffer")
        if batch_size < 1 or (num_batches is not None and num_batches < 1):
            raise ValueError(
                f"batch_size and num_batches must be positive, got {batch_size}, {num_batches}"
            )
        shape = (batch_size,) if num_batches is None else (num_batches, batch_size)
        indices = rng.integers(0, self._size, size=shape)
        return Batch(*(array[indices] for array in self._arrays().values()))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled part of the buffer plus counters, as a flat dict of numpy arrays."""
        state = {field: array[: self._size] for field, array in self._arrays().items()}
        state["insert_index"] = np.asarray(self._insert_index, np.int64)
        state["size"] = np.asarray(self._size, np.int64)
        state["capacity"] = np.asarray(self.capacity, np.int64)
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restores contents written by `state_dict` into this (same-shaped) buffer."""
        missing = [k for k in (*_FIELDS, *_COUNTERS) if k not in state]
        if missing:
            raise ValueError(f"replay state is missing keys {missing}")
        capacity = int(state["capacity"])
        size = int(state["size"])
        insert_index = int(state["insert_index"])
        if capacity != self.capacity:
            raise ValueError(
                f"replay state has capacity {capacity}, this buffer has {self.capacity}"
            )
        if not (0 <= size <= capacity and 0 <= insert_index < capacity):
            raise ValueError(
                f"replay state counters are inconsistent: size={size} "
                f"insert_index={insert_index} capacity={capacity}"
            )
        for field in _FIELDS:
            expected = (size, *self._expected_shape(field))
            if tuple(state[field].shape) != expected:
                raise ValueError(
                    f"replay state {field} has shape {tuple(state[field].shape)}, expected {expected}"
                )
        for field, array in self._arrays().items():
            array[:size] = state[field]
            if self._size > size:  # Clear stale rows without touching never-used pages.
                array[size : self._size] = 0.0
        self._size = size
        self._insert_index = insert_index
