"""Counting pressed and active keys and F1 over the stored episodes of a collection."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.piano.spec import N_KEYS
from tasks.rlds import complete_songs
from tasks.rlds.reader import iterate_key_presses
from tasks.stats.model import (
    F1_BIN_EPSILON,
    F1_BINS,
    F1_THRESHOLDS,
    DatasetStats,
    SongStats,
    SpecialistStats,
    StatsError,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- counting


@dataclasses.dataclass(frozen=True)
class EpisodeCounts:
    pressed_key_steps: np.ndarray  # (88,) int64
    press_onsets: np.ndarray  # (88,) int64
    goal_key_steps: np.ndarray  # (88,) int64


def episode_counts(goal: np.ndarray, pressed: np.ndarray) -> EpisodeCounts:
    """Per-key counts of one episode from (T, 88) goal and pressed-key arrays."""
    goal = np.asarray(goal, dtype=bool)
    pressed = np.asarray(pressed, dtype=bool)
    if goal.shape != pressed.shape or goal.ndim != 2 or goal.shape[1] != N_KEYS:
        raise ValueError(f"episode_counts: goal {goal.shape} and pressed {pressed.shape} must both be (T, {N_KEYS})")
    onsets = pressed.copy()
    onsets[1:] &= ~pressed[:-1]
    return EpisodeCounts(
        pressed_key_steps=pressed.sum(0, dtype=np.int64),
        press_onsets=onsets.sum(0, dtype=np.int64),
        goal_key_steps=goal.sum(0, dtype=np.int64),
    )




def _select_song_dirs(shards_dir: Path, songs: Sequence[str] | None) -> list[Path]:
    if not shards_dir.is_dir():
        raise StatsError(f"{shards_dir}: no such shards directory")
    complete = complete_songs(shards_dir)
    incomplete = sorted(
        p.name for p in shards_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p not in complete
    )
    if songs is None:
        if incomplete:
            logger.warning("%s: skipping %d incomplete song folders: %s", shards_dir, len(incomplete), incomplete)
        if not complete:
            raise StatsError(
                f"{shards_dir}: no complete song folders (a complete song folder has a valid manifest.json)"
            )
        return complete
    by_name = {p.name: p for p in complete}
    wanted = list(dict.fromkeys(songs))
    if not wanted:
        raise StatsError(f"{shards_dir}: the song selection is empty")
    missing = [s for s in wanted if s not in by_name]
    if missing:
        raise StatsError(
            f"{shards_dir}: songs {missing} are not complete song folders there "
            f"({len(complete)} complete: {sorted(by_name)[:10]}{' ...' if len(complete) > 10 else ''})"
        )
    return [by_name[s] for s in wanted]


def f1_bin(f1: float) -> int:
    return min(int(math.floor(f1 * F1_BINS + F1_BIN_EPSILON)), F1_BINS - 1)


def compute_stats(
    shards_dir: str | Path,
    songs: Sequence[str] | None = None,
    *,
    on_song: Callable[[SongStats], None] | None = None,
) -> DatasetStats:
    """Statistics of the complete song folders under `shards_dir` (all of them,
    or the song ids in `songs`), streaming one episode at a time.

    `on_song` is called after each song (for a progress bar). Raises
    `StatsError` naming `shards_dir` when it is missing, holds no complete
    song, or lacks a selected song.
    """
    shards_dir = Path(shards_dir)
    song_dirs = _select_song_dirs(shards_dir, songs)

    pressed_key_steps = np.zeros(N_KEYS, np.int64)
    press_onsets = np.zeros(N_KEYS, np.int64)
    goal_key_steps = np.zeros(N_KEYS, np.int64)
    f1_counts = np.zeros(F1_BINS, np.int64)
    f1_above = np.zeros(len(F1_THRESHOLDS), np.int64)
    f1_sum = f1_sum_sq = 0.0
    f1_min, f1_max = math.inf, -math.inf
    goal_mismatches = 0
    specialists: dict[str, dict[str, Any]] = {}
    song_stats: list[SongStats] = []

    for song_dir in song_dirs:
        chunk_goal_totals: dict[str, int] = {}
        n_episodes = n_steps = active_keys = 0
        song_f1_sum = 0.0
        for metadata, goal, pressed in iterate_key_presses(song_dir):
            counts = episode_counts(goal, pressed)
            pressed_key_steps += counts.pressed_key_steps
            press_onsets += counts.press_onsets
            goal_total = int(counts.goal_key_steps.sum())
            chunk_id = metadata["chunk_id"]
            if chunk_id not in chunk_goal_totals:
                chunk_goal_totals[chunk_id] = goal_total
                goal_key_steps += counts.goal_key_steps
                active_keys += goal_total
            elif chunk_goal_totals[chunk_id] != goal_total:
                goal_mismatches += 1
                logger.warning(
                    "%s: a rollout of chunk %s has %d goal key-steps, its first rollout %d; "
                    "active keys use the first",
                    song_dir,
                    chunk_id,
                    goal_total,
                    chunk_goal_totals[chunk_id],
                )

            f1 = metadata["f1"]
            f1_counts[f1_bin(f1)] += 1
            f1_above += np.array([f1 > t for t in F1_THRESHOLDS])
            f1_sum += f1
            f1_sum_sq += f1 * f1
            f1_min, f1_max = min(f1_min, f1), max(f1_max, f1)
            song_f1_sum += f1
            specialist = specialists.setdefault(
                metadata["specialist_id"],
                {"song_id": song_dir.name, "chunk_id": chunk_id, "n_episodes": 0, "f1_sum": 0.0},
            )
            specialist["n_episodes"] += 1
            specialist["f1_sum"] += f1
            n_episodes += 1
            n_steps += len(goal)
        song = SongStats(
            song_id=song_dir.name,
            n_chunks=len(chunk_goal_totals),
            n_episodes=n_episodes,
            n_steps=n_steps,
            active_keys=active_keys,
            mean_f1=song_f1_sum / n_episodes,
        )
        song_stats.append(song)
        logger.info(
            "stats: song %s, %d chunks, %d episodes, %d active keys",
            song.song_id,
            song.n_chunks,
            song.n_episodes,
            song.active_keys,
        )
        if on_song is not None:
            on_song(song)

    return DatasetStats(
        shards_dir=str(shards_dir),
        songs=tuple(song_stats),
        specialists=tuple(
            SpecialistStats(
                specialist_id=sid,
                song_id=s["song_id"],
                chunk_id=s["chunk_id"],
                n_episodes=s["n_episodes"],
                mean_f1=s["f1_sum"] / s["n_episodes"],
            )
            for sid, s in specialists.items()
        ),
        pressed_key_steps=tuple(int(c) for c in pressed_key_steps),
        press_onsets=tuple(int(c) for c in press_onsets),
        goal_key_steps=tuple(int(c) for c in goal_key_steps),
        episode_f1_counts=tuple(int(c) for c in f1_counts),
        episode_f1_sum=f1_sum,
        episode_f1_sum_sq=f1_sum_sq,
        episode_f1_min=f1_min,
        episode_f1_max=f1_max,
        episodes_f1_above=tuple(int(c) for c in f1_above),
        goal_mismatches=goal_mismatches,
    )
