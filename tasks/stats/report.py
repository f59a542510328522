"""The stats report folder: stats.json, stats.md and the figures, each written atomically."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from envs import atomic
from tasks.stats.figures import active_keys_figure, f1_figure, percent, pressed_keys_figure
from tasks.stats.model import (
    ACTIVE_KEYS_RANGE,
    DEFAULT_REPORTS_DIR,
    F1_THRESHOLDS,
    RP1M_REFERENCE,
    DatasetStats,
    StatsError,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- reports


def _markdown(stats: DatasetStats) -> str:
    reference = RP1M_REFERENCE["specialists_f1_above"]
    low, high = ACTIVE_KEYS_RANGE
    rows = [
        ("songs / chunks / specialists", f"{stats.n_songs:,} / {stats.n_chunks:,} / {len(stats.specialists):,}", ""),
        ("episodes / steps", f"{stats.n_episodes:,} / {stats.n_steps:,}", "~1M episodes"),
        ("white-key share of pressed key-steps", percent(stats.white_share), "65.7%"),
        ("white-key share of press onsets", percent(stats.onset_white_share), ""),
        (f"pieces with {low}-{high} active keys", percent(stats.pieces_in_active_keys_range), "90.70%"),
        *(
            (
                f"specialists with mean F1 > {t:g}",
                percent(stats.specialists_f1_above(t)),
                f"{100 * reference[str(t)]:.2f}%",
            )
            for t in F1_THRESHOLDS
        ),
        *(
            (f"episodes with F1 > {t:g}", percent(stats.episodes_f1_above_fraction(t)), "")
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
        "pressed_keys.png": pressed_keys_figure,
        "active_keys_per_piece.png": active_keys_figure,
        "f1_histogram.png": f1_figure,
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
