"""Fingertip references: a demonstration's fingertip trajectories, carried by its song and chunks.

A song loaded from a video demonstration (``video:<folder>``, written by
`pianoset video`) carries the per-control-step fingertips of both hands in the
piano frame (`FingertipReference`, song time, unstretched). `make_chunks`
cuts it like the notes: chunk step j plays stretched, trimmed time
(start_step + j) * dt, which is song time ((start_step + j) * dt + offset) /
stretch (RP1M's 1.25 stretch slows the performance down; the reference is
resampled, linearly, onto the chunk's steps). A chunk's `ChunkReference` is
what the residual specialist's nominal follows (PianoMime 3.2: IK of the video
fingertips) and what its fingertip-mimic reward compares against.

Fingertip order is robopianist's: right thumb..little, then left (as
`envs.piano.spec`); positions are metres, NaN where the video lost the hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.piano.spec import N_FINGERTIPS

POSITION_DECIMALS = 4  # 0.1 mm in the chunk JSON


class ReferenceError(ValueError):
    """A fingertip reference that does not fit its song or chunk; the message names it."""


@dataclass(frozen=True, eq=False)
class FingertipReference:
    """Fingertips over a whole song, sampled every `timestep` seconds of song time from 0."""

    timestep: float
    positions: np.ndarray  # (S, 10, 3) metres, NaN where not tracked
    pressing: np.ndarray  # (S, 10) bool: the demonstration's finger is pressing a key

    def __post_init__(self) -> None:
        shape = np.shape(self.positions)
        if len(shape) != 3 or shape[1:] != (N_FINGERTIPS, 3) or np.shape(self.pressing) != shape[:2]:
            raise ReferenceError(f"fingertip reference: positions {shape} and pressing {np.shape(self.pressing)} "
                                 f"must be (S, {N_FINGERTIPS}, 3) and (S, {N_FINGERTIPS})")
        if self.timestep <= 0:
            raise ReferenceError(f"fingertip reference: timestep {self.timestep} must be positive")

    def at(self, song_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions (T, 10, 3), pressing (T, 10)) at song times: linear between two tracked
        samples, NaN where either neighbour is untracked or outside the reference."""
        u = np.asarray(song_times, dtype=np.float64) / self.timestep
        lo = np.floor(u).astype(int)
        frac = (u - lo)[:, None, None]
        n = len(self.positions)
        inside = (lo >= 0) & (lo + 1 < n) | (lo == n - 1) & (frac[:, 0, 0] < 1e-9)
        a = self.positions[np.clip(lo, 0, n - 1)]
        b = self.positions[np.clip(lo + 1, 0, n - 1)]
        out = np.where(inside[:, None, None], a + frac * (b - a), np.nan)  # NaN in a or b stays NaN
        nearest = np.clip(np.rint(u).astype(int), 0, n - 1)
        pressing = self.pressing[nearest] & inside[:, None] & ~np.isnan(out[..., 0])
        return out, pressing


@dataclass(frozen=True, eq=False)
class ChunkReference:
    """The reference on one chunk's control steps."""

    positions: np.ndarray  # (n_steps, 10, 3)
    pressing: np.ndarray  # (n_steps, 10)

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.positions[..., 0])

    def to_json(self) -> dict:
        pos = np.round(self.positions, POSITION_DECIMALS)
        return {"positions": [[[None if np.isnan(v) else float(v) for v in tip] for tip in step] for step in pos],
                "pressing": self.pressing.astype(int).tolist()}

    @classmethod
    def from_json(cls, payload: dict, n_steps: int) -> "ChunkReference":
        positions = np.array([[[np.nan if v is None else v for v in tip] for tip in step]
                              for step in payload["positions"]], dtype=np.float64)
        pressing = np.array(payload["pressing"], dtype=bool)
        if positions.shape != (n_steps, N_FINGERTIPS, 3) or pressing.shape != (n_steps, N_FINGERTIPS):
            raise ReferenceError(f"chunk reference of shape {positions.shape} / {pressing.shape}, the chunk has "
                                 f"{n_steps} steps")
        return cls(positions, pressing)


def chunk_reference(reference: FingertipReference, start_step: int, n_steps: int, control_timestep: float,
                    stretch: float, offset: float) -> ChunkReference:
    """The reference on steps start_step .. start_step + n_steps of the stretched, trimmed song
    (`offset`: the trimmed silence, in stretched time)."""
    steps = start_step + np.arange(n_steps)
    positions, pressing = reference.at((steps * control_timestep + offset) / stretch)
    return ChunkReference(positions, pressing)


def reference_from_demonstration(folder: str | Path) -> FingertipReference:
    """The per-step fingertips of a `pianoset video` demonstration (song time, control rate)."""
    from envs.music.video.demo import read_demonstration

    demo = read_demonstration(Path(folder))
    times = demo.arrays["step_time"]
    timestep = float(demo.meta["time"]["control_timestep_s"])
    if len(times) and abs(times[0]) > 1e-9 or len(times) > 1 and not np.allclose(np.diff(times), timestep):
        raise ReferenceError(f"{folder}: step_time does not run from 0 every {timestep} s")
    positions = np.where(demo.arrays["step_valid"][..., None], demo.arrays["step_fingertips"], np.nan)
    return FingertipReference(timestep, positions, demo.arrays["step_pressing"].astype(bool))
