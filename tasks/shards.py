"""RLDS shards: one TFDS folder per song, written atomically, with a manifest.

Layout on disk (one song)::

    <out_dir>/<song_id>/
        manifest.json                          # written last: present and valid == complete
        1.0.0/                                 # the TFDS builder dir (`tfds.builder_from_directory`)
            dataset_info.json
            features.json
            pianoset-train.tfrecord-00000      # <= max_episodes_per_shard episodes each
            pianoset-train.tfrecord-00001
            ...

Every song folder has the same dataset name (`DATASET_NAME`), version and
features, so a collection of songs reads as one dataset with
`tfds.builder_from_directories([<song>/1.0.0, ...])` (see `tasks/reader.py`).

A song is written into a hidden sibling `<out_dir>/.<song_id>.staging-<uuid>/`
and renamed into place once complete, so nothing half-written is ever visible
under `<out_dir>/<song_id>`. Replacing an existing song swaps the two folders
with one `renameat2(RENAME_EXCHANGE)` (Linux); where the file system does not
support it, the old folder is renamed aside first, which leaves a short window
in which the song is absent (never partial).

Step convention (produced by the env): step t holds observation o_t, action
a_t, the reward r_t obtained after a_t, and step metadata describing a_t's
outcome: `pressed_keys` is the key activation after a_t and
`observation/piano_goal[:88]` the keys that should be down after a_t, so the
episode precision/recall/F1 can be recomputed from the stored steps
(`envs.piano.metrics.key_press_metrics`). Fingertip positions are stored once, in
the observation (`observation/fingertip_positions`), not again as step metadata.

Storage: binary fields are stored as bool; the large sparse ones
(`piano_goal`, `pressed_keys`) are zlib-compressed per step and the int8
finger assignment as raw bytes (tf.train.Example would otherwise widen them to
int64 varints, 10 bytes for each -1).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.rlds import rlds_base

from envs import atomic
from envs.piano.metrics import key_press_metrics
from envs.piano.spec import N_KEYS, OBSERVATION_KEYS
from tasks.names import SONG_MANIFEST as MANIFEST_NAME

logger = logging.getLogger(__name__)

DATASET_NAME = "pianoset"  # identical in every song folder: builder_from_directories needs one name
DATASET_VERSION = "1.0.0"
SPLIT = "train"
MANIFEST_FORMAT = "pianoset-song-shards/1"

# Already weighted: reward == sum of these (RP1M Eq. 3).
REWARD_TERMS = ("reward_ot", "reward_press", "reward_sustain", "reward_collision", "reward_energy")
RLDS_FLAGS = ("is_first", "is_last", "is_terminal")
_SONG_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_METRIC_ATOL = 1e-5  # stored metrics vs. recomputed from steps (float32 storage)


class ShardError(ValueError):
    """An episode or a song folder does not match the shard format."""


def _tensor(shape: tuple[int, ...], dtype: Any, encoding: str = "none", doc: str | None = None):
    return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding, doc=doc)


def episode_features(
    lookahead_steps: int = 10,
    n_fingers: int = 10,
    action_dim: int = 39,
    *,
    hand_state_dim: int = 46,
) -> rlds_base.DatasetConfig:
    """The RLDS step/episode spec (RP1M Table 3 sizes for the defaults).

    `lookahead_steps` future goals plus the current one make L goal steps
    (piano_goal is L*88, sustain_goal L). `n_fingers` is 10 for two hands (8
    with the little fingers disabled).
    """
    for name, value in (
        ("lookahead_steps", lookahead_steps),
        ("n_fingers", n_fingers),
        ("action_dim", action_dim),
        ("hand_state_dim", hand_state_dim),
    ):
        if not isinstance(value, int) or value < (0 if name == "lookahead_steps" else 1):
            raise ValueError(f"episode_features: {name}={value!r} is not a valid size")
    goal_steps = lookahead_steps + 1
    f32 = np.float32
    observation = tfds.features.FeaturesDict(
        {
            "piano_goal": _tensor(
                (goal_steps * N_KEYS,), np.bool_, "zlib", f"keys to be down, {goal_steps} steps x 88 keys"
            ),
            "sustain_goal": _tensor((goal_steps,), np.bool_, doc="sustain pedal goal, current + lookahead"),
            "piano_state": _tensor((N_KEYS,), f32, doc="normalised key joint positions"),
            "sustain_state": _tensor((1,), f32, doc="normalised sustain pedal state"),
            "fingertip_positions": _tensor((n_fingers * 3,), f32, doc="xyz per fingertip, m"),
            "hand_state": _tensor((hand_state_dim,), f32, doc="hand joint positions"),
        }
    )
    step_metadata = {
        "ot_key_for_finger": _tensor(
            (n_fingers,),
            np.int8,
            "bytes",
            "key (0-87) assigned to each fingertip by OT, -1 idle; right then left hand, thumb..little",
        ),
        "pressed_keys": _tensor((N_KEYS,), np.bool_, "zlib", "key activation after the action"),
        "sustain_pressed": _tensor((), np.bool_, doc="sustain pedal down after the action"),
        **{term: _tensor((), f32, doc="weighted reward term") for term in REWARD_TERMS},
    }
    episode_metadata = {
        "song_id": tfds.features.Text(),
        "chunk_id": tfds.features.Text(),
        "chunk_index": _tensor((), np.int32),
        "rollout_seed": _tensor((), np.int64),
        "specialist_id": tfds.features.Text(doc="specialist checkpoint id"),
        "precision": _tensor((), f32),
        "recall": _tensor((), f32),
        "f1": _tensor((), f32),
        "n_steps": _tensor((), np.int32),
    }
    return rlds_base.DatasetConfig(
        name=f"rp1m_la{lookahead_steps}_f{n_fingers}_a{action_dim}_h{hand_state_dim}",
        description="RP1M-style rollouts of a piano specialist, one episode per rollout of a chunk",
        overall_description="Two Shadow hands playing piano (RP1M reproduction); one folder per song.",
        observation_info=observation,
        action_info=_tensor((action_dim,), f32),
        reward_info=_tensor((), f32, doc="sum of the weighted reward terms"),
        discount_info=_tensor((), f32),
        step_metadata_info=step_metadata,
        episode_metadata_info=episode_metadata,
    )


def _build_info(config: rlds_base.DatasetConfig, data_dir: Path) -> tfds.core.DatasetInfo:
    identity = tfds.core.dataset_info.DatasetIdentity(
        name=DATASET_NAME,
        version=tfds.core.Version(DATASET_VERSION),
        data_dir=os.fspath(data_dir),
        module_name="",
        config_name=config.name,
        config_description=config.description,
    )
    return rlds_base.build_info(config, identity)


def _without_docs(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _without_docs(v) for k, v in tree.items() if k not in ("description", "doc")}
    if isinstance(tree, list):
        return [_without_docs(v) for v in tree]
    return tree


def config_hash(config: rlds_base.DatasetConfig) -> str:
    """sha256 of everything that decides how a stored episode decodes (feature
    docs excluded, so rewording one does not split a collection)."""
    features = _without_docs(_build_info(config, Path(".")).features.to_json())
    blob = json.dumps({"name": DATASET_NAME, "version": DATASET_VERSION, "features": features}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    shape: tuple[int, ...]  # per step
    dtype: np.dtype


def step_field_specs(config: rlds_base.DatasetConfig | None = None) -> dict[str, Any]:
    """Per-step shape/dtype of every step field, nested like the step ({'observation': {...}, ...})."""
    config = config or episode_features()

    def spec(feature) -> FieldSpec:
        return FieldSpec(tuple(feature.shape), np.dtype(feature.np_dtype))

    specs: dict[str, Any] = {
        "observation": {key: spec(config.observation_info[key]) for key in OBSERVATION_KEYS},
        "action": spec(config.action_info),
        "reward": spec(config.reward_info),
        "discount": spec(config.discount_info),
        **{flag: FieldSpec((), np.dtype(np.bool_)) for flag in RLDS_FLAGS},
        **{key: spec(feature) for key, feature in config.step_metadata_info.items()},
    }
    return specs


def observation_dims(config: rlds_base.DatasetConfig | None = None) -> dict[str, int]:
    """Length of each observation key in the flat vector, in `OBSERVATION_KEYS` order."""
    obs = step_field_specs(config)["observation"]
    return {key: math.prod(obs[key].shape) for key in OBSERVATION_KEYS}


def naive_float32_bytes_per_step(config: rlds_base.DatasetConfig | None = None) -> int:
    """Bytes per step if every step field (observation, action, reward, discount,
    RLDS flags, step metadata) were stored as raw float32. Episode metadata excluded."""

    def count(specs: Mapping[str, Any]) -> int:
        return sum(count(s) if isinstance(s, Mapping) else math.prod(s.shape) for s in specs.values())

    return 4 * count(step_field_specs(config))


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
            if abs(float(md[key]) - value) > _METRIC_ATOL:
                fail(
                    f"metadata {key}={md[key]} but {value:.6f} recomputed from piano_goal[:, :88] and "
                    "pressed_keys (step t: goal of o_t vs activation after a_t)"
                )


# ----------------------------------------------------------------------------- manifest


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    chunk_id: str
    chunk_index: int
    rollout_seed: int
    n_steps: int
    f1: float


@dataclasses.dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the song folder, '/'-separated
    size: int  # bytes
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a complete song folder holds; episodes in the order they are stored."""

    song_id: str
    n_episodes: int
    n_steps: int
    episodes: tuple[EpisodeRecord, ...]
    files: tuple[FileRecord, ...]
    builder_dir: str  # relative to the song folder
    dataset_name: str
    version: str
    config_name: str
    config_hash: str
    created: str  # ISO 8601, UTC
    format: str = MANIFEST_FORMAT

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Manifest":
        data = dict(data)
        data["episodes"] = tuple(EpisodeRecord(**e) for e in data["episodes"])
        data["files"] = tuple(FileRecord(**f) for f in data["files"])
        return cls(**data)

    @property
    def tfrecord_bytes(self) -> int:
        return sum(f.size for f in self.files if ".tfrecord-" in f.path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(song_dir: Path, *, verify: bool = False) -> Manifest:
    """The manifest of a complete song folder, checked against the files
    (existence and size; sha256 too with `verify`). Raises `ShardError`."""
    song_dir = Path(song_dir)
    path = song_dir / MANIFEST_NAME
    if not path.is_file():
        raise ShardError(f"{song_dir}: no {MANIFEST_NAME}, the song folder is missing or incomplete")
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ShardError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.format != MANIFEST_FORMAT:
        raise ShardError(f"{path}: format {manifest.format!r}, expected {MANIFEST_FORMAT!r}")
    n_steps = sum(e.n_steps for e in manifest.episodes)
    if manifest.n_episodes != len(manifest.episodes) or manifest.n_steps != n_steps:
        raise ShardError(f"{path}: n_episodes/n_steps disagree with the episode list")
    for record in manifest.files:
        file_path = song_dir / record.path
        if not file_path.is_file():
            raise ShardError(f"{song_dir}: {record.path} is listed in the manifest but missing")
        size = file_path.stat().st_size
        if size != record.size:
            raise ShardError(f"{song_dir}: {record.path} has {size} bytes, the manifest says {record.size}")
        if verify and _sha256(file_path) != record.sha256:
            raise ShardError(f"{song_dir}: {record.path} does not match its sha256 in the manifest")
    return manifest


def is_complete(song_dir: Path, *, verify: bool = False) -> bool:
    """True when `song_dir` has a manifest that matches its files."""
    try:
        read_manifest(song_dir, verify=verify)
    except ShardError as exc:
        logger.debug("incomplete song folder: %s", exc)
        return False
    return True


def builder_dir(song_dir: Path) -> Path:
    """The TFDS builder dir of a complete song folder (for `tfds.builder_from_directory`)."""
    song_dir = Path(song_dir)
    return song_dir / read_manifest(song_dir).builder_dir


def bytes_per_step(song_dir: Path) -> float:
    """Total TFRecord bytes on disk / number of steps of a song folder."""
    manifest = read_manifest(song_dir)
    return manifest.tfrecord_bytes / manifest.n_steps


def complete_songs(out_dir: Path) -> list[Path]:
    """The complete song folders under `out_dir`, sorted (staging folders are hidden and skipped)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and is_complete(p))


# ----------------------------------------------------------------------------- writing


def write_song_dataset(
    out_dir: Path,
    song_id: str,
    episodes: Iterable[Episode],
    *,
    max_episodes_per_shard: int = 256,
    config: rlds_base.DatasetConfig | None = None,
    check_metrics: bool = True,
) -> Manifest:
    """Writes all episodes of one song as the TFDS folder `<out_dir>/<song_id>`.

    Episodes are validated (`validate_episode`) as they stream in; their
    metadata song_id must equal `song_id`. The folder appears (or replaces
    the previous one) only once every shard, the TFDS metadata and the
    manifest are written and synced; on any error nothing changes under
    `<out_dir>/<song_id>` and the staging folder is removed.
    """
    if not _SONG_ID_PATTERN.match(song_id):
        raise ShardError(f"song_id {song_id!r}: use letters, digits, '.', '_', '-' (it names a folder)")
    if max_episodes_per_shard < 1:
        raise ValueError(f"max_episodes_per_shard={max_episodes_per_shard}: must be >= 1")
    config = config or episode_features()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / song_id
    staging = out_dir / f".{song_id}.staging-{uuid.uuid4().hex}"
    data_dir = staging / DATASET_VERSION
    data_dir.mkdir(parents=True)
    try:
        info = _build_info(config, data_dir)
        writer = tfds.core.SequentialWriter(info, max_examples_per_shard=max_episodes_per_shard)
        writer.initialize_splits([SPLIT])
        records = []
        for index, ep in enumerate(episodes):
            validate_episode(ep, config, index=index, check_metrics=check_metrics)
            if ep.metadata["song_id"] != song_id:
                raise ShardError(
                    f"episode {index} ({ep.describe()}): song_id differs from the folder's song {song_id!r}"
                )
            writer.add_examples({SPLIT: [{"steps": ep.steps, **ep.metadata}]})
            md = ep.metadata
            records.append(
                EpisodeRecord(
                    chunk_id=md["chunk_id"],
                    chunk_index=int(md["chunk_index"]),
                    rollout_seed=int(md["rollout_seed"]),
                    n_steps=ep.n_steps,
                    f1=float(np.float32(md["f1"])),
                )
            )
        if not records:
            raise ShardError(f"song {song_id!r}: no episodes to write")
        writer.close_all()

        files = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            atomic.fsync_file(path)
            files.append(
                FileRecord(path=path.relative_to(staging).as_posix(), size=path.stat().st_size, sha256=_sha256(path))
            )
        manifest = Manifest(
            song_id=song_id,
            n_episodes=len(records),
            n_steps=sum(r.n_steps for r in records),
            episodes=tuple(records),
            files=tuple(files),
            builder_dir=DATASET_VERSION,
            dataset_name=DATASET_NAME,
            version=DATASET_VERSION,
            config_name=config.name,
            config_hash=config_hash(config),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        atomic.write_json(staging / MANIFEST_NAME, manifest.to_json())
        atomic.fsync_dir(data_dir)
        atomic.swap_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "wrote song %s: %d episodes, %d steps, %.0f bytes/step",
        song_id,
        manifest.n_episodes,
        manifest.n_steps,
        manifest.tfrecord_bytes / manifest.n_steps,
    )
    return manifest
