"""The figures of RP1M Fig. 4: pressed keys per key, active keys per piece, the F1 histogram."""

from __future__ import annotations

import logging
import math

import numpy as np

from envs.piano.spec import N_KEYS
from tasks.stats.compute import f1_bin
from tasks.stats.model import (
    ACTIVE_KEYS_RANGE,
    F1_BINS,
    F1_THRESHOLDS,
    IS_BLACK_KEY,
    KEY_NAMES,
    RP1M_REFERENCE,
    DatasetStats,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- figures


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def pressed_keys_figure(stats: DatasetStats):
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
        f"white keys {percent(stats.white_share)} of key-steps (RP1M: 65.7%)"
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


def active_keys_figure(stats: DatasetStats):
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
        f"{low}-{high} keys: {percent(stats.pieces_in_active_keys_range)} of pieces (RP1M: 90.70%)",
        fontsize=10,
    )
    return fig


def f1_figure(stats: DatasetStats):
    from matplotlib.figure import Figure

    edges = np.linspace(0.0, 1.0, F1_BINS + 1)
    episode_share = np.asarray(stats.episode_f1_counts) / stats.n_episodes
    specialist_f1 = np.array([s.mean_f1 for s in stats.specialists])
    specialist_counts = np.bincount([f1_bin(f) for f in specialist_f1], minlength=F1_BINS)
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
        f"> {t:g}: {percent(stats.specialists_f1_above(t))} (RP1M {100 * reference[str(t)]:.2f}%)"
        for t in F1_THRESHOLDS
    )
    ax.set_title(f"Histogram of F1 scores\nspecialists with mean F1 {above}", fontsize=10)
    return fig
