"""One episode as numpy arrays, and its validation against the format (`validate_episode`)."""
from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow_datasets.rlds import rlds_base

from envs.piano.metrics import key_press_metrics
from envs.piano.spec import N_KEYS
from tasks.rlds.spec import METRIC_ATOL, REWARD_TERMS, RLDS_FLAGS, ShardError, step_field_specs

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- episodes


@dataclasses.dataclass
class Episode:
    """One rollout as plain numpy data.

    `steps` is nested like an RLDS step, each leaf stacked over time
    (leading axis T): {'observation': {key: (T, ...)}, 'action': (T, A),
    'reward': (T,), ..., step metadata keys}. `metadata` holds the episode
    metadata (song_id, chunk_id, chunk_index, rollout_seed, specialist_id,
    precision, recall, f1, n_steps).
    """

    steps: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def n_steps(self) -> int:
        return int(np.shape(self.steps["action"])[0])

    def describe(self) -> str:
        md = self.metadata
        return f"song {md.get('song_id')!r} chunk {md.get('chunk_id')!r} seed {md.get('rollout_seed')}"

    @classmethod
    def from_steps(
        cls,
        steps: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, Any],
        config: rlds_base.DatasetConfig | None = None,
    ) -> "Episode":
        """Stacks per-step dicts (as an env loop produces them) and casts each
        field to its stored dtype; binary fields must hold only 0/1 and int8
        fields must fit."""
        if not steps:
            raise ShardError(f"Episode.from_steps: no steps for {dict(metadata)}")
        specs = step_field_specs(config)

        def stack(path: str, spec_tree: Any, get) -> Any:
            if isinstance(spec_tree, Mapping):
                return {
                    k: stack(f"{path}/{k}" if path else k, s, lambda st, k=k: get(st)[k]) for k, s in spec_tree.items()
                }
            try:
                values = np.stack([np.asarray(get(step)) for step in steps])
            except KeyError as exc:
                raise ShardError(f"Episode.from_steps: a step lacks {path!r} ({exc})") from None
            return _cast(path, values, spec_tree.dtype)

        stacked = stack("", specs, lambda st: st)
        md = dict(metadata)
        md.setdefault("n_steps", len(steps))
        return cls(steps=stacked, metadata=md)


def _cast(path: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if values.dtype == dtype:
        return values
    if dtype == np.bool_:
        if not np.isin(values, (0, 1)).all():
            raise ShardError(f"{path}: binary field holds values other than 0/1")
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not np.issubdtype(values.dtype, np.integer) and not np.array_equal(values, np.round(values)):
            raise ShardError(f"{path}: integer field holds non-integer values")
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ShardError(f"{path}: values outside {dtype} range [{info.min}, {info.max}]")
    return values.astype(dtype)


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            yield from _leaves(value, path)
        else:
            yield path, value


_EPISODE_METADATA_TYPES = {
    "song_id": str,
    "chunk_id": str,
    "specialist_id": str,
    "fingering_mode": str,
    "chunk_index": int,
    "rollout_seed": int,
    "n_steps": int,
    "precision": float,
    "recall": float,
    "f1": float,
}


def validate_episode(
    ep: Episode,
    config: rlds_base.DatasetConfig | None = None,
    *,
    index: int | None = None,
    check_metrics: bool = True,
) -> None:
    """Raises `ShardError` naming the episode and the field if `ep` does not
    match the spec: missing/extra fields, shapes, dtypes (exact), lengths,
    RLDS flags, non-finite floats, key indices, reward == sum of terms and
    (with `check_metrics`) stored precision/recall/F1 == recomputed from
    `piano_goal[:, :88]` and `pressed_keys`."""
    label = "episode" if index is None else f"episode {index}"
    if not isinstance(ep, Episode):
        raise ShardError(f"{label}: expected Episode, got {type(ep).__name__}")
    where = f"{label} ({ep.describe()})"

    def fail(message: str) -> None:
        raise ShardError(f"{where}: {message}")

    specs = step_field_specs(config)
    if not isinstance(ep.steps, Mapping):
        fail(f"steps must be a dict, got {type(ep.steps).__name__}")
    lengths = {path: (np.shape(v)[0] if np.ndim(v) else 0) for path, v in _leaves(ep.steps)}
    if not lengths:
        fail("has no step fields")
    counts = collections.Counter(lengths.values())
    n_steps = counts.most_common(1)[0][0]
    if len(counts) > 1:
        odd = {path: n for path, n in lengths.items() if n != n_steps}
        fail(f"step fields disagree on the number of steps: {odd}, the others have {n_steps}")
    if n_steps < 1:
        fail("has no steps")

    def check(path: str, spec_tree: Any, value: Any) -> None:
        if isinstance(spec_tree, Mapping):
            if not isinstance(value, Mapping):
                fail(f"{path or 'steps'} must be a dict, got {type(value).__name__}")
            missing = sorted(set(spec_tree) - set(value))
            extra = sorted(set(value) - set(spec_tree))
            if missing or extra:
                fail(f"{path or 'steps'}: missing fields {missing}, unexpected fields {extra}")
            for key, sub in spec_tree.items():
                check(f"{path}/{key}" if path else key, sub, value[key])
            return
        if not isinstance(value, np.ndarray):
            fail(f"{path} must be a numpy array, got {type(value).__name__}")
        expected = (n_steps, *spec_tree.shape)
        if value.shape != expected:
            fail(f"{path} has shape {value.shape}, expected {expected} (T={n_steps} steps)")
        if value.dtype != spec_tree.dtype:
            fail(f"{path} has dtype {value.dtype}, expected {spec_tree.dtype}")
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad = int(np.argwhere(~np.isfinite(value))[0][0])
            fail(f"{path} is not finite at step {bad}")

    check("", specs, ep.steps)
    steps = ep.steps
    first, last, terminal = (steps[f] for f in RLDS_FLAGS)
    if not first[0] or first[1:].any():
        fail("is_first must be True at step 0 only")
    if not last[-1] or last[:-1].any():
        fail("is_last must be True at the final step only")
    if terminal[:-1].any():
        fail("is_terminal set before the final step")
    keys = steps["ot_key_for_finger"]
    if ((keys < -1) | (keys >= N_KEYS)).any():
        fail(f"ot_key_for_finger outside [-1, {N_KEYS - 1}]")
    term_sum = sum(steps[t].astype(np.float64) for t in REWARD_TERMS)
    if not np.allclose(steps["reward"], term_sum, rtol=1e-5, atol=1e-5):
        bad = int(np.argmax(np.abs(steps["reward"] - term_sum)))
        fail(f"reward {steps['reward'][bad]} != sum of reward terms {term_sum[bad]} at step {bad}")

    md = ep.metadata
    missing = sorted(set(_EPISODE_METADATA_TYPES) - set(md))
    extra = sorted(set(md) - set(_EPISODE_METADATA_TYPES))
    if missing or extra:
        fail(f"metadata: missing {missing}, unexpected {extra}")
    for key, kind in _EPISODE_METADATA_TYPES.items():
        value = md[key]
        ok = (
            isinstance(value, str)
            if kind is str
            else isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if kind is int
            else isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, bool)
        )
        if not ok:
            fail(f"metadata {key}={value!r} is not {kind.__name__}")
    if not md["song_id"]:
        fail("metadata song_id is empty")
    if int(md["n_steps"]) != n_steps:
        fail(f"metadata n_steps={md['n_steps']} but the episode has {n_steps} steps")
    for key in ("precision", "recall", "f1"):
        if not 0.0 <= float(md[key]) <= 1.0:
            fail(f"metadata {key}={md[key]} outside [0, 1]")
    if check_metrics:
        goal_keys = steps["observation"]["piano_goal"][:, :N_KEYS]
        recomputed = key_press_metrics(goal=goal_keys, pressed=steps["pressed_keys"]).as_dict()
        for key, value in recomputed.items():
            if abs(float(md[key]) - value) > METRIC_ATOL:
                fail(
                    f"metadata {key}={md[key]} but {value:.6f} recomputed from piano_goal[:, :88] and "
                    "pressed_keys (step t: goal of o_t vs activation after a_t)"
                )


