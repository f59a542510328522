"""Dataset statistics of a shard collection, like RP1M Figure 4 (section 4.3): `compute_stats` streams
the episodes once into counters, `write_reports` writes figures, stats.json and stats.md.
What is counted: tasks/stats/README.md. Imports: envs and tasks.rlds."""

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
