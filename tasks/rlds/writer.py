"""Writing one song folder: stream-validated episodes, TFDS shards, manifest, one atomic swap."""
from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.rlds import rlds_base

from envs import atomic
from envs.atomic import sha256_file
from tasks.names import SONG_MANIFEST as MANIFEST_NAME
from tasks.rlds.episode import Episode, validate_episode
from tasks.rlds.manifest import EpisodeRecord, FileRecord, Manifest
from tasks.rlds.spec import (
    DATASET_NAME,
    DATASET_VERSION,
    SONG_ID_PATTERN,
    SPLIT,
    ShardError,
    build_info,
    config_hash,
    episode_features,
)

logger = logging.getLogger(__name__)


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
    if not SONG_ID_PATTERN.match(song_id):
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
        info = build_info(config, data_dir)
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
                FileRecord(path=path.relative_to(staging).as_posix(), size=path.stat().st_size, sha256=sha256_file(path))
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
