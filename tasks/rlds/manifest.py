"""The manifest of a song folder (written last: present and valid == complete), and finding complete songs."""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envs.atomic import sha256_file
from tasks.names import SONG_MANIFEST as MANIFEST_NAME
from tasks.rlds.spec import MANIFEST_FORMAT, ShardError

logger = logging.getLogger(__name__)


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
        if verify and sha256_file(file_path) != record.sha256:
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


