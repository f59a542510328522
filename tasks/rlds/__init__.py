"""RLDS shards: one TFDS folder per song, written atomically, with a manifest.

Layout on disk (one song)::

    <out_dir>/<song_id>/
        manifest.json                          # written last: present and valid == complete
        1.1.0/                                 # the TFDS builder dir (`tfds.builder_from_directory`)
            dataset_info.json
            features.json
            pianoset-train.tfrecord-00000      # <= max_episodes_per_shard episodes each

Every song folder has the same dataset name, version and features, so a
collection reads as one dataset with `tfds.builder_from_directories([...])`.
A song is built under a hidden staging name and swapped into place whole
(`envs.atomic`). Step t holds o_t, a_t, the reward after a_t and what a_t did
(`pressed_keys`, the goal of the step), so P/R/F1 can be recomputed from the
stored steps. Binary fields are bool (the sparse ones zlib-compressed), the
finger assignment int8. Modules: `spec` (features), `episode` (an episode and
its validation), `manifest`, `writer`, `reader` (RLDS datasets and the window
sampler of policy training). Imports: envs only.
"""

from tasks.rlds.episode import Episode, validate_episode
from tasks.rlds.manifest import (
    EpisodeRecord,
    FileRecord,
    Manifest,
    builder_dir,
    bytes_per_step,
    complete_songs,
    is_complete,
    read_manifest,
)
from tasks.rlds.spec import (
    DATASET_NAME,
    DATASET_VERSION,
    MANIFEST_FORMAT,
    REWARD_TERMS,
    RLDS_FLAGS,
    SPLIT,
    FieldSpec,
    ShardError,
    config_hash,
    episode_features,
    naive_float32_bytes_per_step,
    observation_dims,
    step_field_specs,
)
from tasks.rlds.writer import write_song_dataset

__all__ = [
    "DATASET_NAME", "DATASET_VERSION", "MANIFEST_FORMAT", "REWARD_TERMS", "RLDS_FLAGS", "SPLIT", "Episode",
    "EpisodeRecord", "FieldSpec", "FileRecord", "Manifest", "ShardError", "builder_dir", "bytes_per_step",
    "complete_songs", "config_hash", "episode_features", "is_complete", "naive_float32_bytes_per_step",
    "observation_dims", "read_manifest", "step_field_specs", "validate_episode", "write_song_dataset",
]
