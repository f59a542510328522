"""Which finger plays each note, from fingertip tracks; PianoMime's adjustment of the tracks.

Two labelling rules, run on the same data so they can be compared:

- `label_at_onset` (ours): the fingertip on, or nearest to, the key's top-view
  rectangle just after the onset (`window_s`), ties broken by the distance to
  the key's centre line;
- `label_by_mean_distance` (video-hand-priors 3.3): the fingertip whose
  distance to the key's centre, averaged over all frames of the note, is
  smallest. The paper measures it in image pixels; here it is in the piano
  frame (a homography of the image).

Fingers are robopianist's: 0-4 right thumb..little, 5-9 left; -1 none.

`adjust` is PianoMime Appendix A steps 3-4, per time step: a fingertip on a
key to be pressed moves to that key's centre line (y); failing one, the
nearest fingertip over the key or its two neighbours does, unless another key
already took it; pressing fingertips get z = 0, the others z = 2 h_key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.music.video.keyboard import KeyGeometry
from envs.music.video.notes import N_FINGERS, Note

CENTRE_LINE_WEIGHT = 0.25  # tie-break: metres of footprint distance per metre off the centre line
ONSET_TEMPERATURE_M = 0.004  # softmax temperature of the onset rule's confidence
PRIORS_TEMPERATURE_M = 0.01


@dataclass(frozen=True)
class Label:
    finger: int  # 0-9, -1 when no fingertip was tracked
    confidence: float  # softmax weight of the chosen finger over all ten
    distance_m: float  # the rule's distance for the chosen finger
    on_key: bool  # the chosen fingertip was on the key's rectangle

    def as_dict(self) -> dict:
        return {"finger": self.finger, "hand": hand_name(self.finger), "finger_number": finger_number(self.finger),
                "confidence": round(self.confidence, 4),
                "distance_mm": round(1000 * self.distance_m, 2) if np.isfinite(self.distance_m) else None,
                "on_key": self.on_key}


def hand_name(finger: int) -> str | None:
    return None if finger < 0 else ("right" if finger < 5 else "left")


def finger_number(finger: int) -> int | None:
    """1 = thumb .. 5 = little (the pianist's numbering)."""
    return None if finger < 0 else finger % 5 + 1


def _softmax_label(cost: np.ndarray, temperature: float, on_key: np.ndarray) -> Label:
    if not np.isfinite(cost).any():
        return Label(-1, 0.0, float("nan"), False)
    best = int(np.nanargmin(np.where(np.isfinite(cost), cost, np.inf)))
    finite = np.isfinite(cost)
    weights = np.zeros_like(cost)
    weights[finite] = np.exp(-(cost[finite] - cost[best]) / temperature)
    return Label(best, float(weights[best] / weights.sum()), float(cost[best]), bool(on_key[best]))


def _mean_over_valid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per finger mean over the frames where it was tracked; inf for a finger never tracked."""
    tracked = valid.any(axis=0)
    mean = np.full(values.shape[1], np.inf)
    mean[tracked] = (np.where(valid, values, 0.0).sum(axis=0)[tracked] / valid.sum(axis=0)[tracked])
    return mean


def _frames(times: np.ndarray, start: float, end: float) -> np.ndarray:
    idx = np.flatnonzero((times >= start) & (times <= end))
    if idx.size == 0:  # slower frame rate than the window: the first frame after the start
        after = np.flatnonzero(times >= start)
        idx = after[:1]
    return idx


def label_at_onset(notes: list[Note], xy: np.ndarray, valid: np.ndarray, times: np.ndarray, offset_s: float,
                   geometry: KeyGeometry, window_s: float = 0.1) -> list[Label]:
    """xy: (T, 10, 2) fingertips in the piano frame; valid: (T, 10); times: (T,) video time."""
    labels = []
    for n in notes:
        start = n.start + offset_s
        idx = _frames(times, start, start + min(window_s, max(n.end - n.start, 0.0)))
        if idx.size == 0:
            labels.append(Label(-1, 0.0, float("nan"), False))
            continue
        pts = xy[idx]
        footprint = geometry.footprint_distance(pts, n.key)
        off_centre = np.abs(pts[..., 1] - geometry.centers[n.key, 1])
        mean_cost = _mean_over_valid(footprint + CENTRE_LINE_WEIGHT * off_centre, valid[idx])
        on_key = (np.where(valid[idx], footprint, np.inf) == 0).mean(axis=0) >= 0.5
        labels.append(_softmax_label(mean_cost, ONSET_TEMPERATURE_M, on_key))
    return labels


def label_by_mean_distance(notes: list[Note], xy: np.ndarray, valid: np.ndarray, times: np.ndarray,
                           offset_s: float, geometry: KeyGeometry) -> list[Label]:
    """Video-hand-priors 3.3: smallest distance to the key centre, averaged over the note."""
    labels = []
    for n in notes:
        idx = _frames(times, n.start + offset_s, n.end + offset_s)
        if idx.size == 0:
            labels.append(Label(-1, 0.0, float("nan"), False))
            continue
        d = np.linalg.norm(xy[idx] - geometry.centers[n.key], axis=-1)
        on_key = (np.where(valid[idx], geometry.footprint_distance(xy[idx], n.key), np.inf) == 0).mean(axis=0) >= 0.5
        labels.append(_softmax_label(_mean_over_valid(d, valid[idx]), PRIORS_TEMPERATURE_M, on_key))
    return labels


def adjust(xy: np.ndarray, valid: np.ndarray, song_times: np.ndarray, notes: list[Note], fingers: list[int],
           geometry: KeyGeometry) -> tuple[np.ndarray, np.ndarray]:
    """PianoMime Appendix A steps 3-4 at each time: returns xyz (T, 10, 3) and pressing (T, 10).

    A note's labelled finger is preferred among the candidates (it is the one
    the demonstration says pressed the key). Invalid fingertips stay NaN.
    """
    n_t = len(song_times)
    xyz = np.full((n_t, N_FINGERS, 3), np.nan)
    xyz[..., :2] = np.where(valid[..., None], xy, np.nan)
    pressing = np.zeros((n_t, N_FINGERS), bool)
    for t, active in enumerate(active_notes(notes, song_times)):
        for i in active:
            key = notes[i].key
            free = valid[t] & ~pressing[t]
            chosen = _pick(xyz[t, :, :2], free, key, fingers[i], geometry)
            if chosen >= 0:
                xyz[t, chosen, 1] = geometry.centers[key, 1]
                pressing[t, chosen] = True
    # PianoMime Appendix A step 4: pressing fingertips at z = 0, the others at twice the key height.
    xyz[..., 2] = np.where(pressing, 0.0, 2 * geometry.white_height)
    xyz[~valid] = np.nan
    return xyz, pressing


def active_notes(notes: list[Note], times: np.ndarray) -> list[list[int]]:
    """For each (sorted) time, the indices of the notes sounding then (start <= t < end), by onset."""
    active: list[list[int]] = [[] for _ in range(len(times))]
    for i in sorted(range(len(notes)), key=lambda j: (notes[j].start, j)):
        a, b = np.searchsorted(times, [notes[i].start, notes[i].end], side="left")
        for t in range(a, b):
            active[t].append(i)
    return active


def _pick(points: np.ndarray, free: np.ndarray, key: int, preferred: int, geometry: KeyGeometry) -> int:
    off_centre = np.abs(points[:, 1] - geometry.centers[key, 1])
    for keys in ((key,), tuple(k for k in (key - 1, key, key + 1) if 0 <= k < len(geometry.centers))):
        inside = free & np.any([geometry.footprint_distance(points, k) == 0 for k in keys], axis=0)
        if inside.any():
            if preferred >= 0 and inside[preferred]:
                return preferred
            return int(np.argmin(np.where(inside, off_centre, np.inf)))
    return -1
