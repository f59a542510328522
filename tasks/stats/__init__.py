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

from tasks.stats.compute import EpisodeCounts, compute_stats, episode_counts
from tasks.stats.model import (
    ACTIVE_KEYS_RANGE,
    DEFAULT_REPORTS_DIR,
    IS_BLACK_KEY,
    KEY_NAMES,
    REPORT_FILES,
    RP1M_REFERENCE,
    STATS_FORMAT,
    DatasetStats,
    SongStats,
    SpecialistStats,
    StatsError,
)
from tasks.stats.report import write_reports

__all__ = [
    "ACTIVE_KEYS_RANGE", "DEFAULT_REPORTS_DIR", "IS_BLACK_KEY", "KEY_NAMES", "REPORT_FILES", "RP1M_REFERENCE",
    "STATS_FORMAT", "DatasetStats", "EpisodeCounts", "SongStats", "SpecialistStats", "StatsError", "compute_stats",
    "episode_counts", "write_reports",
]
