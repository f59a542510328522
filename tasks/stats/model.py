"""What the dataset statistics hold (RP1M Fig. 4): per song, per specialist, for the whole dataset."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.piano.spec import N_KEYS

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
F1_BIN_EPSILON = 1e-9  # float32 F1 such as 0.29 must not fall one bin low (0.29 * 100 = 28.999...)


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
