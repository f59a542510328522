"""Scoring an imitation policy in the real piano env over many songs (RP1M section 5)
(over 400 lines: the batched episode loop and its per-episode resume files share one state machine).

`evaluate_episodes(policy, items, env_config, config)` plays every `EvalItem`
(one chunk of one song, one seed) with a policy that follows the contract of
`agents.common.policy` and returns each episode's key-press precision, recall
and F1 (`envs.piano.metrics.key_press_metrics`, the per-step figures averaged over
the steps, as robopianist's `MidiEvaluationWrapper`) with the per-step goal and
pressed keys they come from.

The control loop mirrors training (`tasks.rlds.reader.WindowDataset`):

- the policy sees the last `To = spec.obs_horizon` flat observations, oldest
  first; at an episode start the first observation is repeated;
- every `Ta = spec.action_horizon` steps it is asked for a chunk of `Ta`
  actions, which are executed one per control step (an action queue);
- actions are clipped to the env's action bounds (a policy may overshoot).

Batching: up to `config.lanes` episodes run in lockstep, one env each, with one
batched `predict_chunk` call per decision step for all of them. Episodes of a
batch start together (`policy.reset(lanes)`) and may end at different steps
(chunks differ in length): a finished lane stops stepping its env while the
others go on. Items are sorted longest first so the episodes of a batch have
similar lengths, and every call is padded to `lanes` rows so a jitted policy
compiles once. Results are reproducible for the same items, config and policy,
but depend on `lanes`: the policy's sampling key depends on the batch an
episode lands in, and even a deterministic policy's actions can differ in the
last float bits between a batch of 8 and of 1 (the matrix products round
differently), which the contact-rich physics can amplify into different key
presses. `lanes` is therefore part of the evaluation key.

Episodes run on the lean path (`envs.piano.lean_env.make_lean_env`: the env's
steps on raw MuJoCo, tested equal to `make_env`'s). Envs are kept in a small
process-wide pool keyed by chunk and env config and reused across policies;
`reset()` restores the initial state.

Records (`save_records` / `load_records`): `<stem>.json` lists every episode
(policy, group, song, chunk, seed, steps, P/R/F1) and `<stem>.npz` holds the
per-step goal and pressed keys (bit-packed, all episodes concatenated with an
offsets array), so any figure can be recomputed from the raw key arrays. The
npz is written first and the json last: a json whose key matches is a complete
record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs import atomic
from envs.piano.config import EnvConfig
from envs.piano.metrics import key_press_metrics
from envs.piano.spec import N_KEYS

log = logging.getLogger(__name__)

EVAL_VERSION = "policy-eval-1"  # bump when a change alters evaluation results
RECORDS_FORMAT = "pianoset-policy-episodes/1"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How much of each group is played, and how.

    Attributes:
      max_chunks_per_song: evaluate only the first N chunks of each song (None:
        every chunk, the whole song as RP1M does).
      episodes_per_chunk: episodes per chunk, with seeds `seed, seed + 1, ...`
        (they differ only through the policy's sampling: the task itself has
        no randomness, so deterministic policies repeat the same episode).
      max_steps: cut every episode to its chunk's first N control steps (None:
        the whole chunk, up to 569 steps = 28.45 s). For quick, cheap runs.
      lanes: episodes stepped in lockstep, one batched policy call per step.
      seed: first episode seed and the policy's sampling key.
    """

    max_chunks_per_song: int | None = None
    episodes_per_chunk: int = 1
    max_steps: int | None = None
    lanes: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_chunks_per_song", "max_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"EvalConfig.{name}={value!r}: expected None or an integer >= 1")
        for name in ("episodes_per_chunk", "lanes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EvalConfig.{name}={value!r}: expected an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"EvalConfig.seed={self.seed!r}: expected an integer >= 0")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvalItem:
    """One evaluation episode: a chunk file of a song, played for `n_steps` with `seed`."""

    group: str
    song_ref: str
    song_id: str
    chunk_id: str
    chunk_index: int
    chunk_file: str
    n_steps: int
    seed: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EvalItem":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass
class EpisodeResult:
    item: EvalItem
    precision: float
    recall: float
    f1: float
    goal_keys: np.ndarray  # (T, 88) bool: keys that should be down after each action
    pressed_keys: np.ndarray  # (T, 88) bool: keys down after each action

    @property
    def n_steps(self) -> int:
        return int(self.goal_keys.shape[0])


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evaluation_key(policy_key: str, items: Sequence[EvalItem], env_config: EnvConfig, config: EvalConfig) -> str:
    """Run-independent identity of one evaluation: the policy, the exact chunks
    (file contents), lengths and seeds, the task, lanes/seed, and the code."""
    payload = {
        "policy": policy_key,
        "items": [(i.group, i.song_id, i.chunk_id, file_digest(i.chunk_file), i.n_steps, i.seed) for i in items],
        "env": env_config.digest(),
        "lanes": config.lanes,
        "seed": config.seed,
        "version": EVAL_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- env pool


class _EnvPool:
    """Idle envs by (chunk content, env config), at most `capacity` kept (oldest closed)."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._idle: OrderedDict[tuple[str, str], list] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, chunk, env_config: EnvConfig):
        from envs.music.chunks import chunk_to_json
        from envs.piano.lean_env import make_lean_env

        key = (hashlib.sha256(chunk_to_json(chunk).encode()).hexdigest(), env_config.digest())
        with self._lock:
            envs = self._idle.get(key)
            if envs:
                env = envs.pop()
                if not envs:
                    del self._idle[key]
                return key, env
        return key, make_lean_env(chunk, env_config)

    def release(self, key: tuple[str, str], env) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(env)
            self._idle.move_to_end(key)
            while sum(len(v) for v in self._idle.values()) > self.capacity:
                oldest_key = next(iter(self._idle))
                oldest = self._idle[oldest_key].pop(0)
                if not self._idle[oldest_key]:
                    del self._idle[oldest_key]
                oldest.close()

    def clear(self) -> None:
        with self._lock:
            for envs in self._idle.values():
                for env in envs:
                    env.close()
            self._idle.clear()


ENV_POOL = _EnvPool()


# ----------------------------------------------------------------------------- the loop


def _load_item_chunk(item: EvalItem):
    from envs.music.chunks import load_chunk

    chunk = load_chunk(item.chunk_file)
    if not 1 <= item.n_steps <= chunk.n_steps:
        raise ValueError(f"{item.chunk_file}: n_steps={item.n_steps} outside [1, {chunk.n_steps}] (the chunk's length)")
    if item.n_steps != chunk.n_steps:
        chunk = dataclasses.replace(chunk, n_steps=item.n_steps)
    return chunk


def _policy_label(policy) -> str:
    return f"policy {getattr(policy, 'name', type(policy).__name__)!r}"


def evaluate_episodes(
    policy,
    items: Sequence[EvalItem],
    env_config: EnvConfig | None = None,
    config: EvalConfig | None = None,
    *,
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> list[EpisodeResult]:
    """Play every item with `policy`; results in the order of `items`."""
    env_config = env_config or EnvConfig()
    config = config or EvalConfig()
    if not items:
        return []
    order = sorted(range(len(items)), key=lambda i: (-items[i].n_steps, i))  # longest first
    results: list[EpisodeResult | None] = [None] * len(items)
    for batch_index, begin in enumerate(range(0, len(order), config.lanes)):
        batch = [items[i] for i in order[begin : begin + config.lanes]]
        for i, result in zip(order[begin : begin + config.lanes], _run_batch(policy, batch, env_config, config, batch_index)):
            results[i] = result
            if on_episode is not None:
                on_episode(result)
    return results  # type: ignore[return-value]


def _run_batch(policy, batch: Sequence[EvalItem], env_config: EnvConfig, config: EvalConfig,
               batch_index: int) -> list[EpisodeResult]:
    import jax

    from envs.piano.env import flatten_observation

    spec = policy.spec
    lanes, n_active = config.lanes, len(batch)
    to, ta = spec.obs_horizon, spec.action_horizon
    acquired = [ENV_POOL.acquire(_load_item_chunk(item), env_config) for item in batch]
    try:
        envs = [env for _, env in acquired]
        action_spec = envs[0].action_spec()
        low, high = action_spec.minimum, action_spec.maximum
        if action_spec.shape != (spec.action_dim,):
            raise ValueError(f"{_policy_label(policy)} gives {spec.action_dim}-dim actions, the env of "
                             f"{batch[0].chunk_id} takes {action_spec.shape[0]}")
        windows = np.zeros((lanes, to, spec.obs_dim), np.float32)
        for lane, (env, item) in enumerate(zip(envs, batch)):
            env.random_state_seed(item.seed)
            obs = flatten_observation(env.reset().observation)
            if obs.shape != (spec.obs_dim,):
                raise ValueError(
                    f"{_policy_label(policy)} expects {spec.obs_dim}-dim observations, the env of "
                    f"{item.chunk_id} gives {obs.shape[0]}"
                )
            windows[lane] = obs  # the first observation repeated To times, as in training
        windows[n_active:] = windows[0]  # padding rows: never executed
        policy.reset(lanes)
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), batch_index)
        goal = [[] for _ in batch]
        pressed = [[] for _ in batch]
        horizon = max(item.n_steps for item in batch)
        chunk_actions = None
        for t in range(horizon):
            if t % ta == 0:
                chunk_actions = np.asarray(policy.predict_chunk(windows, jax.random.fold_in(key, t)))
                if chunk_actions.shape != (lanes, ta, spec.action_dim):
                    raise ValueError(
                        f"{_policy_label(policy)}: predict_chunk returned shape {chunk_actions.shape}, "
                        f"expected {(lanes, ta, spec.action_dim)}"
                    )
                if not np.isfinite(chunk_actions[:n_active]).all():
                    raise ValueError(f"{_policy_label(policy)}: predict_chunk returned non-finite actions at step {t}")
            for lane, (env, item) in enumerate(zip(envs, batch)):
                if t >= item.n_steps:
                    continue  # this episode is over; the others go on
                action = np.clip(chunk_actions[lane, t % ta].astype(np.float64), low, high)
                timestep = env.step(action)
                info = env.step_info()
                goal[lane].append(info["goal_keys"])
                pressed[lane].append(info["pressed_keys"])
                windows[lane, :-1] = windows[lane, 1:]
                windows[lane, -1] = flatten_observation(timestep.observation)
        results = []
        for lane, item in enumerate(batch):
            goal_arr = np.asarray(goal[lane], dtype=bool)
            pressed_arr = np.asarray(pressed[lane], dtype=bool)
            metrics = key_press_metrics(goal_arr, pressed_arr)
            results.append(EpisodeResult(item, metrics.precision, metrics.recall, metrics.f1, goal_arr, pressed_arr))
        return results
    finally:
        for env_key, env in acquired:
            ENV_POOL.release(env_key, env)


# ----------------------------------------------------------------------------- records


def episode_row(result: EpisodeResult, policy_key: str) -> dict:
    return {
        "policy_key": policy_key,
        **result.item.as_dict(),
        "steps": result.n_steps,
        "precision": result.precision,
        "recall": result.recall,
        "f1": result.f1,
    }


def save_records(stem: Path, results: Sequence[EpisodeResult], *, key: str, policy_key: str,
                 extra: dict | None = None) -> Path:
    """Writes `<stem>.npz` (per-step keys) then `<stem>.json` (episode rows); returns the json path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    lengths = [r.n_steps for r in results]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    empty = np.zeros((0, N_KEYS), bool)
    goal = np.concatenate([r.goal_keys for r in results]) if results else empty
    pressed = np.concatenate([r.pressed_keys for r in results]) if results else empty
    arrays = {
        "offsets": offsets,
        "goal_keys": np.packbits(goal, axis=-1),
        "pressed_keys": np.packbits(pressed, axis=-1),
    }
    npz_path = stem.with_suffix(".npz")
    atomic.write_with(npz_path, lambda tmp: _savez(tmp, arrays))
    doc = {
        "format": RECORDS_FORMAT,
        "key": key,
        "policy_key": policy_key,
        **(extra or {}),
        "keys_file": npz_path.name,
        "episodes": [episode_row(r, policy_key) for r in results],
    }
    json_path = stem.with_suffix(".json")
    atomic.write_text(json_path, json.dumps(doc, indent=1) + "\n")
    return json_path


def _savez(path: Path, arrays: dict) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_records(json_path: Path) -> dict | None:
    """The record document of a complete evaluation, or None if absent/unreadable."""
    try:
        doc = json.loads(Path(json_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if doc.get("format") != RECORDS_FORMAT or not (Path(json_path).parent / doc.get("keys_file", "")).is_file():
        return None
    return doc


def load_key_arrays(json_path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(goal_keys, pressed_keys) (T, 88) bool arrays of each episode of a record, in order."""
    doc = read_records(json_path)
    if doc is None:
        raise FileNotFoundError(f"{json_path}: no complete evaluation record")
    with np.load(Path(json_path).parent / doc["keys_file"]) as data:
        offsets = data["offsets"]
        goal = np.unpackbits(data["goal_keys"], axis=-1, count=N_KEYS).astype(bool)
        pressed = np.unpackbits(data["pressed_keys"], axis=-1, count=N_KEYS).astype(bool)
    if len(offsets) != len(doc["episodes"]) + 1:
        raise ValueError(f"{json_path}: {len(doc['episodes'])} episodes but {len(offsets) - 1} key arrays")
    return [(goal[a:b], pressed[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def recompute_episodes(json_path: Path, *, atol: float = 1e-9) -> list[dict]:
    """The record's episode rows with P/R/F1 recomputed from the stored per-step
    keys; raises if a stored figure disagrees (a damaged or edited record)."""
    doc = read_records(json_path)
    if doc is None:
        raise FileNotFoundError(f"{json_path}: no complete evaluation record")
    rows = []
    for index, (row, (goal, pressed)) in enumerate(zip(doc["episodes"], load_key_arrays(json_path))):
        if len(goal) != row["steps"]:
            raise ValueError(f"{json_path}: episode {index} has {row['steps']} steps but {len(goal)} stored key rows")
        metrics = key_press_metrics(goal, pressed).as_dict()
        for name, value in metrics.items():
            if abs(value - row[name]) > atol:
                raise ValueError(
                    f"{json_path}: episode {index} ({row['chunk_id']}, seed {row['seed']}) stores {name}="
                    f"{row[name]} but its key arrays give {value}"
                )
        rows.append({**row, **metrics})
    return rows


def summarize(rows: Sequence[dict]) -> dict[str, Any]:
    """Mean precision/recall/F1 over episodes (RP1M reports a group's mean), and counts."""
    if not rows:
        return {"episodes": 0, "songs": 0, "precision": None, "recall": None, "f1": None}
    return {
        "episodes": len(rows),
        "songs": len({r["song_id"] for r in rows}),
        **{name: float(np.mean([r[name] for r in rows])) for name in ("precision", "recall", "f1")},
    }
