"""Reading song shards: RLDS `tf.data` datasets and an in-memory window sampler.

`load_song` / `load_collection` give the standard RLDS view (a dataset of
episodes, each with a nested `steps` dataset) for `rlds.transformations` and
other TFDS tools. `WindowDataset` is what policy training uses: all steps of
the given songs as numpy arrays, sampled as (observation window, action chunk)
pairs with the diffusion_policy padding at episode boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from envs.piano.spec import N_KEYS, OBSERVATION_KEYS
from tasks.rlds.episode import Episode
from tasks.rlds.manifest import builder_dir, read_manifest
from tasks.rlds.spec import SPLIT, ShardError

_MAX_STEPS = 2**31 - 1  # batch a whole episode's steps into one element


def load_song(song_dir: Path) -> tf.data.Dataset:
    """Episodes of one complete song folder (RLDS: each has a `steps` dataset)."""
    return tfds.builder_from_directory(builder_dir(song_dir)).as_dataset(split=SPLIT)


def load_collection(song_dirs: Sequence[Path]) -> tf.data.Dataset:
    """Episodes of several song folders as one dataset, in the given song order.

    TFDS does not check that the folders share features; this does (the
    manifests' config hashes) and names the song that differs.
    """
    if not song_dirs:
        raise ValueError("load_collection: no song folders given")
    manifests = [read_manifest(d) for d in song_dirs]
    reference = manifests[0]
    for song_dir, manifest in zip(song_dirs, manifests):
        if manifest.config_hash != reference.config_hash:
            raise ShardError(
                f"{song_dir}: config {manifest.config_name} ({manifest.config_hash[:12]}) differs from "
                f"{song_dirs[0]}'s {reference.config_name} ({reference.config_hash[:12]}); cannot mix them"
            )
    dirs = [Path(d) / m.builder_dir for d, m in zip(song_dirs, manifests)]
    return tfds.builder_from_directories(dirs).as_dataset(split=SPLIT)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def iterate_episodes(song_dirs: Sequence[Path]) -> Iterator[Episode]:
    """Episodes of the given songs as numpy `Episode`s (the writer's container), in stored order."""
    episodes = load_collection(list(song_dirs))

    def whole_episode(episode: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(episode)
        out["steps"] = episode["steps"].batch(_MAX_STEPS).get_single_element()
        return out

    for episode in tfds.as_numpy(episodes.map(whole_episode)):
        steps = episode.pop("steps")
        yield Episode(steps=steps, metadata={k: _decode(v) for k, v in episode.items()})


def iterate_key_presses(song_dir: Path) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(metadata, goal (T, 88), pressed (T, 88)) per episode of one song, one at a time: only
    the two key arrays of the steps and song_id, chunk_id, specialist_id, f1 are decoded (stats)."""
    dataset = tfds.builder_from_directory(builder_dir(song_dir)).as_dataset(split=SPLIT, shuffle_files=False)

    def select(episode: Mapping[str, Any]) -> dict[str, Any]:
        # Batch the raw steps first: batching after a map over the steps is pathologically slow.
        steps = episode["steps"].batch(_MAX_STEPS).get_single_element()
        return {
            "goal": steps["observation"]["piano_goal"][:, :N_KEYS],
            "pressed": steps["pressed_keys"],
            **{key: episode[key] for key in ("song_id", "chunk_id", "specialist_id", "f1")},
        }

    for episode in tfds.as_numpy(dataset.map(select)):
        goal, pressed = episode.pop("goal"), episode.pop("pressed")
        metadata = {k: v.decode() if isinstance(v, bytes) else float(v) for k, v in episode.items()}
        yield metadata, goal, pressed


def flatten_observation(obs: Mapping[str, Any]) -> np.ndarray:
    """The flat float32 observation (1144 dims for RP1M), keys in `OBSERVATION_KEYS` order.

    Works on single steps (key -> (d,)) and on stacked ones (key -> (..., d)).
    """
    missing = [k for k in OBSERVATION_KEYS if k not in obs]
    extra = sorted(set(obs) - set(OBSERVATION_KEYS))
    if missing or extra:
        raise KeyError(f"flatten_observation: missing keys {missing}, unexpected keys {extra}")
    parts = [np.asarray(obs[k], dtype=np.float32) for k in OBSERVATION_KEYS]
    leading = {p.shape[:-1] for p in parts}
    if len(leading) != 1 or any(p.ndim == 0 for p in parts):
        shapes = {k: np.shape(obs[k]) for k in OBSERVATION_KEYS}
        raise ValueError(f"flatten_observation: keys disagree on leading dims: {shapes}")
    return np.concatenate(parts, axis=-1)


class WindowDataset:
    """(observation window, action chunk) pairs over every step of the given songs.

    For each anchor step t of an episode with T steps, the sample is
      obs    = o[t - obs_horizon + 1 .. t]                      (obs_horizon, obs_dim)
      action = a[t + action_offset .. t + action_offset + action_horizon - 1]
                                                                (action_horizon, action_dim)
    with indices clamped into [0, T-1]: before the episode start the first
    step repeats, after its end the last one (diffusion_policy's
    `SequenceSampler` with pad_before = To-1, pad_after = Ta-1). The default
    `action_offset=0` makes the chunk start at the current step;
    `action_offset = -(obs_horizon - 1)` gives diffusion_policy's horizon that
    starts with the first observed step. Every step is an anchor, so
    `len(ds)` = total steps.

    Steps are kept per observation key in their stored dtypes (binary keys as
    bool, about a third of the memory of float32) and flattened to float32
    only for the sampled batch.
    """

    def __init__(
        self,
        song_dirs: Sequence[Path],
        obs_horizon: int,
        action_horizon: int,
        *,
        action_offset: int = 0,
    ):
        self._build(iterate_episodes(song_dirs), obs_horizon, action_horizon, action_offset)

    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[Episode],
        obs_horizon: int,
        action_horizon: int,
        *,
        action_offset: int = 0,
    ) -> "WindowDataset":
        dataset = cls.__new__(cls)
        dataset._build(episodes, obs_horizon, action_horizon, action_offset)
        return dataset

    def _build(self, episodes, obs_horizon: int, action_horizon: int, action_offset: int) -> None:
        if obs_horizon < 1 or action_horizon < 1:
            raise ValueError(
                f"WindowDataset: obs_horizon={obs_horizon} and action_horizon={action_horizon} must be >= 1"
            )
        self.obs_horizon = obs_horizon
        self.action_horizon = action_horizon
        self.action_offset = action_offset
        obs_parts: dict[str, list[np.ndarray]] = {k: [] for k in OBSERVATION_KEYS}
        actions, lengths = [], []
        for ep in episodes:
            for key in OBSERVATION_KEYS:
                obs_parts[key].append(np.asarray(ep.steps["observation"][key]))
            actions.append(np.asarray(ep.steps["action"], dtype=np.float32))
            lengths.append(len(actions[-1]))
        if not lengths:
            raise ValueError("WindowDataset: no episodes")
        self._obs = {k: np.concatenate(v) for k, v in obs_parts.items()}
        self._actions = np.concatenate(actions)
        self.episode_lengths = np.asarray(lengths, dtype=np.int64)
        ends = np.cumsum(self.episode_lengths)
        starts = ends - self.episode_lengths
        index_dtype = np.int32 if ends[-1] < 2**31 else np.int64
        # Per step: first and last global index of its episode (the clamping bounds).
        self._first = np.repeat(starts, self.episode_lengths).astype(index_dtype)
        self._last = np.repeat(ends - 1, self.episode_lengths).astype(index_dtype)
        self.obs_dim = sum(v.shape[-1] for v in self._obs.values())
        self.action_dim = self._actions.shape[-1]

    def __len__(self) -> int:
        return len(self._first)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_lengths)

    def get_batch(self, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows at the given anchor indices (0 <= i < len(self)):
        obs (B, To, obs_dim) float32, actions (B, Ta, action_dim) float32."""
        anchors = np.asarray(anchors, dtype=np.int64)
        if anchors.size and (anchors.min() < 0 or anchors.max() >= len(self)):
            raise IndexError(f"WindowDataset: anchors outside [0, {len(self)})")
        first = self._first[anchors][:, None]
        last = self._last[anchors][:, None]
        obs_idx = np.clip(anchors[:, None] + np.arange(1 - self.obs_horizon, 1), first, last)
        act_idx = np.clip(anchors[:, None] + self.action_offset + np.arange(self.action_horizon), first, last)
        obs = flatten_observation({k: v[obs_idx] for k, v in self._obs.items()})
        return obs, self._actions[act_idx]

    def step_indices(self, anchors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(B, K) global step indices anchor + offset, clamped into each anchor's episode (the
        padding rule above), e.g. offsets 1..H for the next H observations of each anchor."""
        anchors = np.asarray(anchors, dtype=np.int64)
        first = self._first[anchors][:, None]
        last = self._last[anchors][:, None]
        return np.clip(anchors[:, None] + np.asarray(offsets, dtype=np.int64)[None, :], first, last)

    def observation_at(self, key: str, indices: np.ndarray) -> np.ndarray:
        """Observation `key` (stored dtype) at global step indices of any shape: (*indices.shape, d)."""
        if key not in self._obs:
            raise KeyError(f"WindowDataset: no observation {key!r}; have {sorted(self._obs)}")
        return self._obs[key][np.asarray(indices, dtype=np.int64)]

    def actions_at(self, indices: np.ndarray) -> np.ndarray:
        """Actions (float32) at global step indices of any shape: (*indices.shape, action_dim)."""
        return self._actions[np.asarray(indices, dtype=np.int64)]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        obs, actions = self.get_batch(np.array([index]))
        return obs[0], actions[0]

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A batch of windows drawn uniformly with replacement."""
        return self.get_batch(rng.integers(0, len(self), size=batch_size))

    def iterate_epoch(
        self, batch_size: int, rng: np.random.Generator, *, drop_last: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every window once, in an order shuffled by `rng`; the last batch may be short."""
        if batch_size < 1:
            raise ValueError(f"iterate_epoch: batch_size={batch_size} must be >= 1")
        order = rng.permutation(len(self))
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for begin in range(0, stop, batch_size):
            yield self.get_batch(order[begin : begin + batch_size])
