"""Planning: the training sets, the evaluation groups' songs and chunks, and the cells of the table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tasks.benchmark.config import BenchmarkConfig, BenchmarkError, read_json
from tasks.policy_eval import (
    EvalConfig,
    EvalItem,
)

log = logging.getLogger(__name__)


def select_training_sets(config: BenchmarkConfig) -> list[list[Path]]:
    """The training sets, smallest first: the first N song folders of the collection."""
    from tasks.rlds import complete_songs, is_complete

    shards_dir = Path(config.shards_dir)
    if config.train_songs is not None:
        dirs = []
        for song_id in config.train_songs:
            song_dir = shards_dir / song_id
            if not is_complete(song_dir):
                raise BenchmarkError(f"benchmark.train_songs: {song_id} has no complete song folder in {shards_dir}")
            dirs.append(song_dir)
    else:
        dirs = complete_songs(shards_dir)
    if not dirs:
        raise BenchmarkError(f"benchmark: {shards_dir} holds no complete song folder to train on (run `pianoset collect`)")
    if config.train_sizes is None:
        return [dirs]
    sets = []
    for size in sorted(set(config.train_sizes)):
        if size > len(dirs):
            raise BenchmarkError(
                f"benchmark.train_sizes: {size} songs asked, but {shards_dir} has only {len(dirs)} to train on"
            )
        sets.append(dirs[:size])
    return sets


def _chunk_items(group: str, song_ref: str, song_id: str, chunk_files: Sequence[Path], config: EvalConfig) -> list[EvalItem]:
    from envs.music.chunks import load_chunk

    items = []
    for chunk_file in list(chunk_files)[: config.max_chunks_per_song]:
        chunk = load_chunk(chunk_file)
        n_steps = min(chunk.n_steps, config.max_steps or chunk.n_steps)
        for episode in range(config.episodes_per_chunk):
            items.append(EvalItem(group, song_ref, song_id, chunk.chunk_id, chunk.index, str(chunk_file), n_steps,
                                  config.seed + episode))
    return items


def _collection_chunk_files(song_dir: Path, config: BenchmarkConfig) -> list[Path]:
    """The chunk files a song of the collection was played on, by chunk index."""
    from envs.music.chunks import chunk_path, load_chunk
    from tasks.rlds import read_manifest

    manifest = read_manifest(song_dir)
    chunks = sorted({(e.chunk_index, e.chunk_id) for e in manifest.episodes})
    files = []
    for index, chunk_id in chunks:
        candidates = [Path(config.specialists_dir) / chunk_id / "chunk.json",
                      chunk_path(config.work_dir, song_dir.name, index)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise BenchmarkError(
                f"in_distribution song {song_dir.name}: no chunk file for chunk {chunk_id} "
                f"(looked for {', '.join(map(str, candidates))}); in-distribution evaluation plays the chunks "
                "the collection was made of, so it needs the collection's specialists or work folder"
            )
        if load_chunk(found).chunk_id != chunk_id:
            raise BenchmarkError(f"in_distribution song {song_dir.name}: {found} holds chunk "
                                 f"{load_chunk(found).chunk_id}, the shards were collected on {chunk_id}")
        files.append(found)
    return files


def _song_ref_of(song_id: str, config: BenchmarkConfig) -> str:
    record = read_json(Path(config.work_dir) / "status" / f"{song_id}.json")
    return (record or {}).get("ref") or f"shards:{song_id}"


def plan_benchmark(config: BenchmarkConfig) -> dict:
    """Training sets and evaluation items (JSON-able); writes the OOD chunk files.

    Raises `BenchmarkError` naming the song when an out-of-distribution song
    is in a training set, or an in-distribution song is missing from one.
    """
    from envs.music.chunks import write_song_chunks
    from envs.music.songs import SongError, load_song

    train_sets = select_training_sets(config)
    trained = {d.name: d for train_set in train_sets for d in train_set}
    smallest = {d.name for d in train_sets[0]}
    groups: dict[str, list[dict]] = {}
    group_songs: dict[str, list[str]] = {}

    spec = config.in_distribution
    if spec.songs or spec.limit:
        if spec.songs:
            song_ids = []
            for entry in spec.songs:
                if entry in trained:
                    song_ids.append(entry)
                    continue
                try:
                    song_ids.append(load_song(entry).song_id)
                except SongError as exc:
                    raise BenchmarkError(f"benchmark.groups.in_distribution: {entry}: {exc}") from None
        else:
            song_ids = [d.name for d in train_sets[0]][: spec.limit]
        items = []
        for entry, song_id in zip(spec.songs or song_ids, song_ids):
            if song_id not in smallest:
                raise BenchmarkError(
                    f"benchmark.groups.in_distribution: {entry} (song {song_id}) is not in the training set of "
                    f"{len(train_sets[0])} songs; in-distribution songs must be in every training set"
                )
            items += _chunk_items("in_distribution", _song_ref_of(song_id, config), song_id,
                                  _collection_chunk_files(trained[song_id], config), config.eval)
        groups["in_distribution"] = [i.as_dict() for i in items]
        group_songs["in_distribution"] = song_ids

    chunk_root = Path(config.work_dir) / "benchmark" / "chunks"
    for name in ("easy_ood", "hard_ood"):
        refs = config.group(name).songs
        if not refs:
            continue
        items, song_ids = [], []
        for ref in refs:
            try:
                song = load_song(ref)
            except SongError as exc:
                raise BenchmarkError(f"benchmark.groups.{name}: {ref}: {exc}") from None
            if song.song_id in trained:
                raise BenchmarkError(
                    f"benchmark.groups.{name}: {ref} (song {song.song_id}) is in the training set "
                    f"({trained[song.song_id]}); out-of-distribution songs must not be trained on"
                )
            try:
                files = write_song_chunks(song, chunk_root)
            except SongError as exc:
                raise BenchmarkError(f"benchmark.groups.{name}: {ref}: {exc}") from None
            items += _chunk_items(name, ref, song.song_id, files, config.eval)
            song_ids.append(song.song_id)
        groups[name] = [i.as_dict() for i in items]
        group_songs[name] = song_ids
    if not groups:
        raise BenchmarkError("benchmark: every evaluation group is empty")
    return {
        "train_sets": [[str(d) for d in train_set] for train_set in train_sets],
        "groups": groups,
        "group_songs": group_songs,
    }


# ----------------------------------------------------------------------------- evaluation
