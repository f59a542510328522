"""RLDS shards: one TFDS folder per song, written atomically, with a manifest: `spec`, `episode`,
`manifest`, `writer`, `reader`. On-disk layout and field meanings: tasks/rlds/README.md.
Imports: envs and tasks.names."""

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
