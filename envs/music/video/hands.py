"""Both hands' landmarks in every frame: MediaPipe on crops, identity by position and tracking.

MediaPipe 0.10.21's hand landmarker runs from the two models inside the wheel
(`palm_detection_full.tflite`, `hand_landmark_full.tflite`), bundled in memory
into the Tasks format; nothing is downloaded. Every call is a still image
(IMAGE mode), so a result depends only on the pixels it is given: reruns are
identical and the tracking is ours.

- Crops: a whole keyboard in a wide frame leaves a hand a few dozen pixels in
  the palm detector's 192x192 input, too small to be found. A lost hand is
  searched in square tiles along the keyboard's front edge (`tile_size_m` of
  keyboard each, half overlapping); a tracked hand is looked for in a square
  crop around where it was.
- Identity: MediaPipe's handedness label flips on mirrored and back-of-hand
  views, so it is not used. A hand keeps the identity of the track it
  continues (nearest palm); when both tracks are free, two hands are left and
  right by their order along the keys, a single hand by which side its thumb is
  on (seen from above, a right hand's index knuckle is nearer A0 than its
  little finger's knuckle).
- Short gaps (up to `max_gap_s`) are filled by linear interpolation.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.music.video.keyboard import KeyboardFrame

logger = logging.getLogger(__name__)

LEFT, RIGHT = 0, 1
HAND_NAMES = ("left", "right")
N_LANDMARKS = 21
TIP_LANDMARKS = (4, 8, 12, 16, 20)  # thumb, index, middle, ring, little
_PALM_LANDMARKS = (0, 5, 9, 13, 17)


@dataclass(frozen=True)
class HandsConfig:
    min_detection_confidence: float = 0.3
    min_presence_confidence: float = 0.3
    tile_size_m: float = 0.36  # search tile side, in metres of keyboard
    tile_centre_x_m: float = 0.12  # tiles centred this far in front of the keys' centre line (the palms)
    track_crop_scale: float = 2.4  # tracked crop side / the hand's landmark box side
    max_lost_s: float = 0.5  # a track not seen for longer starts afresh
    search_every_s: float = 0.2  # while a hand stays lost, search the tiles this often
    max_gap_s: float = 0.3  # longest gap filled by interpolation

    def __post_init__(self) -> None:
        for name in ("tile_size_m", "track_crop_scale", "max_lost_s", "search_every_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HandsConfig.{name}={getattr(self, name)}: must be > 0")


def _model_bundle() -> bytes:
    """The Tasks `hand_landmarker.task` layout, built from the wheel's two models."""
    import mediapipe

    root = Path(mediapipe.__file__).parent / "modules"
    parts = {"hand_detector.tflite": root / "palm_detection" / "palm_detection_full.tflite",
             "hand_landmarks_detector.tflite": root / "hand_landmark" / "hand_landmark_full.tflite"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, path in parts.items():
            if not path.is_file():
                raise FileNotFoundError(f"MediaPipe model {path} missing from the installed wheel")
            bundle.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), path.read_bytes())
    return buffer.getvalue()


class Landmarker:
    """MediaPipe's hand landmarker on still images; returns landmarks in the image's pixels."""

    def __init__(self, config: HandsConfig) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=_model_bundle()),
            running_mode=vision.RunningMode.IMAGE,
            num_hands=2,
            min_hand_detection_confidence=config.min_detection_confidence,
            min_hand_presence_confidence=config.min_presence_confidence,
        )
        self._landmarker = vision.HandLandmarker.create_from_options(options)
        self.calls = 0

    def detect(self, image_bgr: np.ndarray, box: tuple[int, int, int, int]) -> list["Candidate"]:
        """Hands inside `box` = (x0, y0, x1, y1) of the image, landmarks in image pixels."""
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(image_bgr[y0:y1, x0:x1, ::-1])
        if crop.shape[0] < 32 or crop.shape[1] < 32:
            return []
        self.calls += 1
        result = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=crop))
        found = []
        height, width = image_bgr.shape[:2]
        for landmarks, handedness in zip(result.hand_landmarks, result.handedness):
            pts = np.array([[p.x * crop.shape[1] + x0, p.y * crop.shape[0] + y0] for p in landmarks])
            # How far the hand stays from the crop's cut edges (the image's own border is no cut).
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            gaps = [lo[0] - x0 if x0 > 0 else np.inf, lo[1] - y0 if y0 > 0 else np.inf,
                    x1 - hi[0] if x1 < width else np.inf, y1 - hi[1] if y1 < height else np.inf]
            found.append(Candidate(pts, float(handedness[0].score), float(min(gaps)) / max(_size(pts), 1.0)))
        return found

    def close(self) -> None:
        self._landmarker.close()


@dataclass(frozen=True)
class Candidate:
    landmarks: np.ndarray  # (21, 2) image pixels
    score: float  # MediaPipe's handedness score (its label is not used)
    clearance: float  # distance to the nearest cut edge of its crop, in hand sizes

    def rank(self) -> tuple[float, float]:
        """Whole hands first: a hand cut by its crop's edge gets squeezed landmarks, however sure MediaPipe is."""
        return (min(self.clearance, 0.3), self.score)


def _palm(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[list(_PALM_LANDMARKS)].mean(axis=0)


def _size(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[9] - landmarks[0]))


def _square(centre: np.ndarray, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    half = side / 2
    x0, y0 = int(max(0, np.floor(centre[0] - half))), int(max(0, np.floor(centre[1] - half)))
    x1, y1 = int(min(width, np.ceil(centre[0] + half))), int(min(height, np.ceil(centre[1] + half)))
    return x0, y0, x1, y1


@dataclass
class _Track:
    landmarks: np.ndarray | None = None
    velocity: np.ndarray | None = None
    last_frame: int = -(10 ** 9)


class HandTracker:
    """Feeds frames in order; `update` gives both hands' landmarks (2, 21, 2) (NaN where not found)."""

    def __init__(self, keyboard: KeyboardFrame, fps: float, config: HandsConfig | None = None) -> None:
        self.config = config or HandsConfig()
        self.keyboard = keyboard
        self.fps = fps
        self.landmarker = Landmarker(self.config)
        self.tracks = [_Track(), _Track()]
        self.frame_index = -1
        self._last_search = -(10 ** 9)
        self.tiles = self._tiles()

    def _tiles(self) -> list[tuple[int, int, int, int]]:
        width, height = self.keyboard.image_size
        c = self.config
        step = c.tile_size_m / 2
        ys = np.arange(-0.6, 0.6 + 1e-9, step)
        boxes = []
        for y in ys:
            centre_xy = np.array([c.tile_centre_x_m, y])
            centre = self.keyboard.to_image(centre_xy)
            edge = self.keyboard.to_image(centre_xy + [0.0, c.tile_size_m / 2])
            side = 2 * np.linalg.norm(edge - centre)
            box = _square(centre, side, width, height)
            if box[2] - box[0] >= 32 and box[3] - box[1] >= 32:
                boxes.append(box)
        return boxes

    def _box_around(self, pts: np.ndarray, velocity: np.ndarray | None) -> tuple[int, int, int, int]:
        width, height = self.keyboard.image_size
        centre = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
        if velocity is not None:
            centre = centre + velocity
        side = self.config.track_crop_scale * float(np.max(pts.max(axis=0) - pts.min(axis=0)))
        return _square(centre, side, width, height)

    def _track_box(self, track: _Track) -> tuple[int, int, int, int]:
        return self._box_around(track.landmarks, track.velocity)

    def _live(self, slot: int) -> bool:
        track = self.tracks[slot]
        recent = (self.frame_index - track.last_frame) <= self.config.max_lost_s * self.fps
        return track.landmarks is not None and recent

    @staticmethod
    def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
        kept: list[Candidate] = []
        for c in sorted(candidates, key=lambda c: c.rank(), reverse=True):
            if all(np.linalg.norm(_palm(c.landmarks) - _palm(k.landmarks)) > 0.5 * max(_size(k.landmarks),
                                                                                       _size(c.landmarks))
                   for k in kept):
                kept.append(c)
        return kept

    def _assign(self, candidates: list[Candidate], result: list[Candidate | None]) -> list[Candidate]:
        """Candidates continuing a live track take its slot (nearest palm first); returns the others."""
        pairs = []
        for slot in (LEFT, RIGHT):
            if result[slot] is not None or not self._live(slot):
                continue
            prev = self.tracks[slot].landmarks
            for i, c in enumerate(candidates):
                d = np.linalg.norm(_palm(c.landmarks) - _palm(prev)) / max(_size(prev), 1.0)
                if d < 1.2:
                    pairs.append((d, slot, i))
        used = set()
        for _, slot, i in sorted(pairs):
            if result[slot] is None and i not in used:
                result[slot] = candidates[i]
                used.add(i)
        taken = [r.landmarks for r in result if r is not None]
        return [c for i, c in enumerate(candidates) if i not in used
                and all(np.linalg.norm(_palm(c.landmarks) - _palm(t)) > 0.5 * _size(t) for t in taken)]

    def _y(self, c: Candidate) -> float:
        return float(self.keyboard.to_piano(_palm(c.landmarks))[1])

    def _side(self, c: Candidate) -> int:
        index_y, little_y = self.keyboard.to_piano(c.landmarks[[5, 17]])[:, 1]
        return RIGHT if index_y < little_y else LEFT

    def _fill_free(self, candidates: list[Candidate], result: list[Candidate | None]) -> None:
        """New tracks: two hands by their order along the keys, one by its thumb side or the other hand."""
        free = [s for s in (LEFT, RIGHT) if result[s] is None and not self._live(s)]
        if not free or not candidates:
            return
        candidates = sorted(candidates, key=lambda c: c.rank(), reverse=True)[:2]
        if len(free) == 2 and len(candidates) == 2:
            for slot, c in zip((LEFT, RIGHT), sorted(candidates, key=self._y)):
                result[slot] = c
        elif len(free) == 2:
            result[self._side(candidates[0])] = candidates[0]
        else:
            slot = free[0]
            other = result[1 - slot].landmarks if result[1 - slot] is not None else self.tracks[1 - slot].landmarks
            y_other = float(self.keyboard.to_piano(_palm(other))[1])
            on_side = [c for c in candidates if (self._y(c) < y_other) == (slot == LEFT)]
            if on_side:
                result[slot] = on_side[0]

    def update(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (2, 21, 2) of [left, right] in image pixels, NaN where not found; scores (2,)."""
        self.frame_index += 1
        result: list[Candidate | None] = [None, None]
        candidates: list[Candidate] = []
        for slot in (LEFT, RIGHT):
            if self._live(slot):
                candidates += self.landmarker.detect(frame_bgr, self._track_box(self.tracks[slot]))
        rest = self._assign(self._dedupe(candidates), result)
        lost_live = any(self._live(s) and result[s] is None for s in (LEFT, RIGHT))
        search_due = (self.frame_index - self._last_search) >= self.config.search_every_s * self.fps
        if any(r is None for r in result) and (search_due or lost_live):
            self._last_search = self.frame_index
            found = list(rest)
            for box in self.tiles:
                found += self.landmarker.detect(frame_bgr, box)
            rest = self._assign(self._dedupe(found), result)
        self._fill_free(rest, result)
        for slot in (LEFT, RIGHT):  # a hand cut by its crop's edge: look again, centred on it
            if result[slot] is not None and result[slot].clearance < 0.15:
                box = self._box_around(result[slot].landmarks, None)
                again = [c for c in self.landmarker.detect(frame_bgr, box)
                         if np.linalg.norm(_palm(c.landmarks) - _palm(result[slot].landmarks))
                         < 0.5 * _size(result[slot].landmarks)]
                if again and max(again, key=Candidate.rank).rank() > result[slot].rank():
                    result[slot] = max(again, key=Candidate.rank)
        out = np.full((2, N_LANDMARKS, 2), np.nan)
        scores = np.zeros(2)
        for slot in (LEFT, RIGHT):
            if result[slot] is None:
                continue
            track, pts = self.tracks[slot], result[slot].landmarks
            continuing = track.landmarks is not None and self.frame_index - track.last_frame == 1
            track.velocity = _palm(pts) - _palm(track.landmarks) if continuing else None
            track.landmarks, track.last_frame = pts, self.frame_index
            out[slot], scores[slot] = pts, result[slot].score
        return out, scores

    def close(self) -> None:
        self.landmarker.close()


def fill_gaps(landmarks: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over runs of at most `max_gap` missing frames between two detections.

    landmarks: (T, 2, 21, 2) with NaN where a hand was not found. Returns the
    filled copy and a (T, 2) mask of the frames that were filled.
    """
    filled = landmarks.copy()
    interpolated = np.zeros(landmarks.shape[:2], bool)
    found = ~np.isnan(landmarks[..., 0, 0])
    for hand in range(landmarks.shape[1]):
        idx = np.flatnonzero(found[:, hand])
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= max_gap + 1:
                w = ((np.arange(a + 1, b) - a) / (b - a))[:, None, None]
                filled[a + 1:b, hand] = (1 - w) * landmarks[a, hand] + w * landmarks[b, hand]
                interpolated[a + 1:b, hand] = True
    return filled, interpolated
