"""Dataset statistics of a shard collection, like RP1M Figure 4 (section 4.3).

`compute_stats(shards_dir)` streams every episode of the complete song folders
once and keeps only counters (88 per-key counts, per-song and per-specialist
sums, a fixed F1 histogram), so memory does not grow with the collection.
`write_reports(stats, out_dir)` writes three figures, `stats.json` and
`stats.md`, each atomically.

What is counted (step t: `observation/piano_goal[t, :88]` are the keys that
should be down after action a_t, `pressed_keys[t]` those that are):

- Pressed keys (Fig. 4 top, the plotted histogram): *key-steps*, i.e. for each
  key the number of steps, over every episode, at which `pressed_keys` is
  true; a key held for 5 steps counts 5. Press onsets (key down at t and up
  at t-1, or down at t = 0: every episode starts with the keys up) are counted
  too and reported in stats.json, with their own white-key share.
- Active keys per piece (Fig. 4 bottom left): per song, the sum over time
  steps of the goal's 88 entries, taken from ONE rollout per chunk (the goal
  does not depend on the rollout) and summed over the song's chunks. Later
  rollouts of a chunk whose goal total differs are counted as
  `goal_mismatches` and logged (it would mean the rollouts of a chunk did not
  follow the same score).
- F1 (Fig. 4 bottom right): the stored per-episode F1 (mean of per-step F1,
  `envs.piano.metrics`), histogrammed in bins of 0.01; a specialist's ("agent's")
  F1 is the mean F1 of its rollouts, grouped by `specialist_id`. Fractions
  above a threshold are strict (F1 > 0.75).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from envs import atomic
from envs.piano.spec import N_KEYS
from tasks.rlds import SPLIT, builder_dir, complete_songs

logger = logging.getLogger(__name__)

STATS_FORMAT = "pianoset-stats/1"
DEFAULT_REPORTS_DIR = Path("datasets/reports/stats")  # params.yaml stats.reports_dir
REPORT_FILES = ("pressed_keys.png", "active_keys_per_piece.png", "f1_histogram.png", "stats.json", "stats.md")

LOWEST_MIDI_PITCH = 21  # A0, key index 0; C8 = MIDI 108 is key index 87
_PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEY_NAMES: tuple[str, ...] = tuple(
    f"{_PITCH_CLASSES[p % 12]}{p // 12 - 1}" for p in range(LOWEST_MIDI_PITCH, LOWEST_MIDI_PITCH + N_KEYS)
)
IS_BLACK_KEY: np.ndarray = np.array(["#" in name for name in KEY_NAMES])  # 36 black, 52 white
IS_BLACK_KEY.setflags(write=False)

F1_THRESHOLDS = (0.75, 0.5)  # RP1M reports the share of agents above each
F1_BINS = 100  # episode F1 histogram: bin k holds [k/100, (k+1)/100), the last one also 1.0
ACTIVE_KEYS_RANGE = (1000, 4000)  # RP1M: 90.70% of pieces have 1000-4000 active keys (inclusive here)
RP1M_REFERENCE = {  # RP1M section 4.3, Figure 4
    "white_share": 0.657,
    "pieces_in_active_keys_range": 0.9070,
    "specialists_f1_above": {"0.75": 0.7900, "0.5": 0.9989},
}
_F1_BIN_EPSILON = 1e-9  # float32 F1 such as 0.29 must not fall one bin low (0.29 * 100 = 28.999...)


class StatsError(ValueError):
    """The shards directory or the song selection has nothing to compute statistics of."""


@dataclasses.dataclass(frozen=True)
class SongStats:
    song_id: str
    n_chunks: int
    n_episodes: int
    n_steps: int
    active_keys: int  # goal key-steps, one rollout per chunk, summed over chunks
    mean_f1: float  # over the song's episodes


@dataclasses.dataclass(frozen=True)
class SpecialistStats:
    specialist_id: str
    song_id: str
    chunk_id: str
    n_episodes: int
    mean_f1: float  # over its rollouts: the "agent's F1" of RP1M Fig. 4


@dataclasses.dataclass(frozen=True)
class DatasetStats:
    """Counters over a collection (see the module docstring for what each counts).

    Per-key tuples have 88 entries, key 0 = A0 ... key 87 = C8 (`KEY_NAMES`).
    """

    shards_dir: str
    songs: tuple[SongStats, ...]
    specialists: tuple[SpecialistStats, ...]
    pressed_key_steps: tuple[int, ...]  # steps with the key down, all episodes (the plotted histogram)
    press_onsets: tuple[int, ...]  # key-down transitions, all episodes
    goal_key_steps: tuple[int, ...]  # goal key-steps, one rollout per chunk (per-key active keys)
    episode_f1_counts: tuple[int, ...]  # F1_BINS bins over [0, 1]
    episode_f1_sum: float
    episode_f1_sum_sq: float
    episode_f1_min: float
    episode_f1_max: float
    episodes_f1_above: tuple[int, ...]  # episodes with F1 > F1_THRESHOLDS[i]
    goal_mismatches: int = 0

    # ------------------------------------------------------------------ derived numbers

    @property
    def n_songs(self) -> int:
        return len(self.songs)

    @property
    def n_chunks(self) -> int:
        return sum(s.n_chunks for s in self.songs)

    @property
    def n_episodes(self) -> int:
        return sum(s.n_episodes for s in self.songs)

    @property
    def n_steps(self) -> int:
        return sum(s.n_steps for s in self.songs)

    @property
    def white_share(self) -> float | None:
        """Share of pressed key-steps on white keys (RP1M: 65.7%); None if no key was pressed."""
        return _white_share(self.pressed_key_steps)

    @property
    def onset_white_share(self) -> float | None:
        return _white_share(self.press_onsets)

    @property
    def goal_white_share(self) -> float | None:
        return _white_share(self.goal_key_steps)

    @property
    def active_keys_per_song(self) -> dict[str, int]:
        return {s.song_id: s.active_keys for s in self.songs}

    @property
    def pieces_in_active_keys_range(self) -> float:
        low, high = ACTIVE_KEYS_RANGE
        return sum(low <= s.active_keys <= high for s in self.songs) / self.n_songs

    @property
    def specialist_mean_f1(self) -> dict[str, float]:
        return {s.specialist_id: s.mean_f1 for s in self.specialists}

    def specialists_f1_above(self, threshold: float) -> float:
        """Fraction of specialists whose mean F1 is > threshold."""
        return sum(s.mean_f1 > threshold for s in self.specialists) / len(self.specialists)

    def episodes_f1_above_fraction(self, threshold: float) -> float:
        """Fraction of episodes with F1 > threshold (only for `F1_THRESHOLDS`)."""
        if threshold not in F1_THRESHOLDS:
            raise ValueError(f"episodes_f1_above_fraction: threshold {threshold} is not one of {F1_THRESHOLDS}")
        return self.episodes_f1_above[F1_THRESHOLDS.index(threshold)] / self.n_episodes

    @property
    def episode_f1_mean(self) -> float:
        return self.episode_f1_sum / self.n_episodes

    @property
    def episode_f1_std(self) -> float:
        variance = self.episode_f1_sum_sq / self.n_episodes - self.episode_f1_mean**2
        return math.sqrt(max(variance, 0.0))

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON types: the raw counters (which `from_json`
        reads back exactly) and the derived headline numbers next to them."""
        thresholds = [str(t) for t in F1_THRESHOLDS]
        return {
            "format": STATS_FORMAT,
            "shards_dir": self.shards_dir,
            "n_songs": self.n_songs,
            "n_chunks": self.n_chunks,
            "n_specialists": len(self.specialists),
            "n_episodes": self.n_episodes,
            "n_steps": self.n_steps,
            "white_share": self.white_share,
            "onset_white_share": self.onset_white_share,
            "goal_white_share": self.goal_white_share,
            "pieces_in_active_keys_range": self.pieces_in_active_keys_range,
            "active_keys_range": list(ACTIVE_KEYS_RANGE),
            "specialists_f1_above": {t: self.specialists_f1_above(float(t)) for t in thresholds},
            "episodes_f1_above": {t: self.episodes_f1_above_fraction(float(t)) for t in thresholds},
            "goal_mismatches": self.goal_mismatches,
            "keys": {
                "names": list(KEY_NAMES),
                "is_black": IS_BLACK_KEY.tolist(),
                "pressed_key_steps": list(self.pressed_key_steps),
                "press_onsets": list(self.press_onsets),
                "goal_key_steps": list(self.goal_key_steps),
                "counting": {
                    "pressed_key_steps": "steps with pressed_keys true, every episode",
                    "press_onsets": "key down at t and up at t-1 (or down at t=0), every episode",
                    "goal_key_steps": "steps with piano_goal[:88] true, one rollout per chunk",
                },
            },
            "active_keys_per_song": self.active_keys_per_song,
            "episode_f1": {
                "mean": self.episode_f1_mean,
                "std": self.episode_f1_std,
                "min": self.episode_f1_min,
                "max": self.episode_f1_max,
                "sum": self.episode_f1_sum,
                "sum_sq": self.episode_f1_sum_sq,
                "above_counts": dict(zip(thresholds, self.episodes_f1_above)),
                "bin_edges": [k / F1_BINS for k in range(F1_BINS + 1)],
                "counts": list(self.episode_f1_counts),
            },
            "specialist_mean_f1": self.specialist_mean_f1,
            "songs": [dataclasses.asdict(s) for s in self.songs],
            "specialists": [dataclasses.asdict(s) for s in self.specialists],
            "rp1m_reference": RP1M_REFERENCE,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DatasetStats":
        if data.get("format") != STATS_FORMAT:
            raise ValueError(f"stats JSON: format {data.get('format')!r}, expected {STATS_FORMAT!r}")
        keys, f1 = data["keys"], data["episode_f1"]
        return cls(
            shards_dir=data["shards_dir"],
            songs=tuple(SongStats(**s) for s in data["songs"]),
            specialists=tuple(SpecialistStats(**s) for s in data["specialists"]),
            pressed_key_steps=tuple(keys["pressed_key_steps"]),
            press_onsets=tuple(keys["press_onsets"]),
            goal_key_steps=tuple(keys["goal_key_steps"]),
            episode_f1_counts=tuple(f1["counts"]),
            episode_f1_sum=f1["sum"],
            episode_f1_sum_sq=f1["sum_sq"],
            episode_f1_min=f1["min"],
            episode_f1_max=f1["max"],
            episodes_f1_above=tuple(f1["above_counts"][str(t)] for t in F1_THRESHOLDS),
            goal_mismatches=data["goal_mismatches"],
        )


def _white_share(per_key: Sequence[int]) -> float | None:
    counts = np.asarray(per_key, dtype=np.int64)
    total = int(counts.sum())
    return int(counts[~IS_BLACK_KEY].sum()) / total if total else None


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


def _song_episodes(song_dir: Path) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(metadata, goal (T, 88), pressed (T, 88)) per episode of one song, one at a
    time; only the two key arrays of the steps are passed on to numpy."""
    dataset = tfds.builder_from_directory(builder_dir(song_dir)).as_dataset(split=SPLIT, shuffle_files=False)

    def select(episode: Mapping[str, Any]) -> dict[str, Any]:
        # Batch the raw steps first: batching after a map over the steps is pathologically slow.
        steps = episode["steps"].batch(2**31 - 1).get_single_element()
        return {
            "goal": steps["observation"]["piano_goal"][:, :N_KEYS],
            "pressed": steps["pressed_keys"],
            **{key: episode[key] for key in ("song_id", "chunk_id", "specialist_id", "f1")},
        }

    for episode in tfds.as_numpy(dataset.map(select)):
        goal, pressed = episode.pop("goal"), episode.pop("pressed")
        metadata = {k: v.decode() if isinstance(v, bytes) else float(v) for k, v in episode.items()}
        yield metadata, goal, pressed


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


def _f1_bin(f1: float) -> int:
    return min(int(math.floor(f1 * F1_BINS + _F1_BIN_EPSILON)), F1_BINS - 1)


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
        for metadata, goal, pressed in _song_episodes(song_dir):
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
            f1_counts[_f1_bin(f1)] += 1
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


# ----------------------------------------------------------------------------- figures


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pressed_keys_figure(stats: DatasetStats):
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(16, 4.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("#e5e5ea")  # white bars must stand out from the background
    ax.bar(
        np.arange(N_KEYS),
        stats.pressed_key_steps,
        width=0.8,
        color=np.where(IS_BLACK_KEY, "black", "white"),
        edgecolor="0.35",
        linewidth=0.5,
        zorder=2,
    )
    ax.grid(axis="y", color="white", zorder=1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(np.arange(N_KEYS), KEY_NAMES, rotation=90, fontsize=7)
    ax.set_xlim(-0.7, N_KEYS - 0.3)
    ax.set_xlabel("Key")
    ax.set_ylabel("Pressed key-steps\n(steps with the key down)")
    ax.set_title(
        f"Histogram of pressed keys: {stats.n_episodes:,} episodes, {stats.n_steps:,} steps; "
        f"white keys {_percent(stats.white_share)} of key-steps (RP1M: 65.7%)"
    )
    ax.legend(
        handles=[
            Patch(facecolor="white", edgecolor="0.35", label="white"),
            Patch(facecolor="black", edgecolor="0.35", label="black"),
        ],
        title="Key color",
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),  # outside: bars may be tall anywhere, the end keys included
    )
    return fig


def _active_keys_figure(stats: DatasetStats):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    values = np.array([s.active_keys for s in stats.songs], dtype=np.float64)
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    n_bins = int(min(40, max(1, len(np.histogram_bin_edges(values, bins="auto")) - 1)))
    ax.hist(values, bins=n_bins, color="#4c72b0", edgecolor="white")
    ax.set_xlabel("Active keys summed over all time steps\n(goal, one rollout per chunk, all chunks)")
    ax.set_ylabel("Pieces")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ACTIVE_KEYS_RANGE
    ax.set_title(
        f"Num of active keys over all time steps ({stats.n_songs:,} pieces)\n"
        f"{low}-{high} keys: {_percent(stats.pieces_in_active_keys_range)} of pieces (RP1M: 90.70%)",
        fontsize=10,
    )
    return fig


def _f1_figure(stats: DatasetStats):
    from matplotlib.figure import Figure

    edges = np.linspace(0.0, 1.0, F1_BINS + 1)
    episode_share = np.asarray(stats.episode_f1_counts) / stats.n_episodes
    specialist_f1 = np.array([s.mean_f1 for s in stats.specialists])
    specialist_counts = np.bincount([_f1_bin(f) for f in specialist_f1], minlength=F1_BINS)
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(
        edges[:-1],
        episode_share,
        width=1.0 / F1_BINS,
        align="edge",
        color="#4c72b0",
        alpha=0.8,
        label=f"episodes ({stats.n_episodes:,})",
    )
    ax.stairs(
        specialist_counts / len(specialist_f1),
        edges,
        color="#dd8452",
        linewidth=1.8,
        label=f"specialists, mean F1 ({len(specialist_f1):,})",
    )
    for threshold in F1_THRESHOLDS:
        ax.axvline(threshold, color="0.4", linestyle="--", linewidth=1)
    left = min(0.5, math.floor(10 * min(stats.episode_f1_min, specialist_f1.min())) / 10)
    ax.set_xlim(left, 1.0)
    ax.set_xlabel(f"F1 score (bins of {1 / F1_BINS:g})")
    ax.set_ylabel("Fraction")
    ax.legend(loc="upper left")
    reference = RP1M_REFERENCE["specialists_f1_above"]
    above = ", ".join(
        f"> {t:g}: {_percent(stats.specialists_f1_above(t))} (RP1M {100 * reference[str(t)]:.2f}%)"
        for t in F1_THRESHOLDS
    )
    ax.set_title(f"Histogram of F1 scores\nspecialists with mean F1 {above}", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- reports


def _markdown(stats: DatasetStats) -> str:
    reference = RP1M_REFERENCE["specialists_f1_above"]
    low, high = ACTIVE_KEYS_RANGE
    rows = [
        ("songs / chunks / specialists", f"{stats.n_songs:,} / {stats.n_chunks:,} / {len(stats.specialists):,}", ""),
        ("episodes / steps", f"{stats.n_episodes:,} / {stats.n_steps:,}", "~1M episodes"),
        ("white-key share of pressed key-steps", _percent(stats.white_share), "65.7%"),
        ("white-key share of press onsets", _percent(stats.onset_white_share), ""),
        (f"pieces with {low}-{high} active keys", _percent(stats.pieces_in_active_keys_range), "90.70%"),
        *(
            (
                f"specialists with mean F1 > {t:g}",
                _percent(stats.specialists_f1_above(t)),
                f"{100 * reference[str(t)]:.2f}%",
            )
            for t in F1_THRESHOLDS
        ),
        *(
            (f"episodes with F1 > {t:g}", _percent(stats.episodes_f1_above_fraction(t)), "")
            for t in F1_THRESHOLDS
        ),
        ("episode F1 mean ± std", f"{stats.episode_f1_mean:.3f} ± {stats.episode_f1_std:.3f}", ""),
    ]
    lines = [
        "# Dataset statistics (RP1M Figure 4)",
        "",
        f"Shards: `{stats.shards_dir}`. Pressed keys count key-steps (steps with the key down, every episode); "
        "active keys sum the goal over time steps, one rollout per chunk; a specialist's F1 is the mean over its "
        "rollouts.",
        "",
        "| | this collection | RP1M |",
        "|---|---|---|",
        *(f"| {name} | {value} | {ref} |" for name, value, ref in rows),
        "",
    ]
    if stats.goal_mismatches:
        lines += [f"Warning: {stats.goal_mismatches} rollouts had a different goal than their chunk's first.", ""]
    lines += [
        "![pressed keys](pressed_keys.png)",
        "",
        "![active keys per piece](active_keys_per_piece.png) ![F1 histogram](f1_histogram.png)",
        "",
    ]
    return "\n".join(lines)


def write_reports(stats: DatasetStats, out_dir: str | Path = DEFAULT_REPORTS_DIR) -> list[Path]:
    """Writes `REPORT_FILES` into `out_dir` (each via a temp file and
    `os.replace`, so a reader never sees a partial file) and returns their paths."""
    if stats.n_episodes == 0:
        raise StatsError(f"write_reports: the statistics of {stats.shards_dir} hold no episodes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "pressed_keys.png": _pressed_keys_figure,
        "active_keys_per_piece.png": _active_keys_figure,
        "f1_histogram.png": _f1_figure,
    }
    written = []
    for name, make_figure in figures.items():
        figure = make_figure(stats)
        atomic.write_with(out_dir / name, lambda tmp, figure=figure: figure.savefig(tmp, format="png"))
        written.append(out_dir / name)
    texts = {
        "stats.json": json.dumps(stats.to_json(), indent=1) + "\n",
        "stats.md": _markdown(stats),
    }
    for name, text in texts.items():
        atomic.write_with(out_dir / name, lambda tmp, text=text: tmp.write_text(text))
        written.append(out_dir / name)
    logger.info("stats reports written to %s", out_dir)
    return written
