"""The RLDS episode format of a song folder: dataset name, features, step field specs, sizes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.rlds import rlds_base

from envs.piano.spec import N_KEYS, OBSERVATION_KEYS

logger = logging.getLogger(__name__)


DATASET_NAME = "pianoset"  # identical in every song folder: builder_from_directories needs one name
DATASET_VERSION = "1.1.0"  # 1.1.0: reward_fingering (was reward_ot) + reward_mimic, fingering_mode
SPLIT = "train"
MANIFEST_FORMAT = "pianoset-song-shards/1"

# Already weighted: reward == sum of these (RP1M Eq. 3).
# The fingering term is the configured mode's (OT, RP1M Eq. 1-2; robopianist's human
# labels; 0 with none), named in the episode's `fingering_mode`; `reward_mimic` is
# PianoMime's fingertip-mimic term of residual specialists (0 when off).
REWARD_TERMS = ("reward_fingering", "reward_press", "reward_sustain", "reward_collision", "reward_energy",
                "reward_mimic")
FINGERING_MODES = ("ot", "human", "none")
RLDS_FLAGS = ("is_first", "is_last", "is_terminal")
SONG_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
METRIC_ATOL = 1e-5  # stored metrics vs. recomputed from steps (float32 storage)


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
        "fingering_mode": tfds.features.Text(doc="what reward_fingering rewards: ot | human | none"),
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


def build_info(config: rlds_base.DatasetConfig, data_dir: Path) -> tfds.core.DatasetInfo:
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
    features = _without_docs(build_info(config, Path(".")).features.to_json())
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


