"""Seeded test videos: real hand photos playing a drawn 88-key keyboard, with the sound of the notes.

Everything the video pipeline should recover comes out of the generator's own
geometry, never from a detector:

- the keyboard: robopianist's key rectangles drawn through a known homography
  G (piano frame -> video pixels), so the corners are G of the model's corners;
- the hands: two photos (tests/envs/video/fixtures, OpenCV's documentation
  photos) cut out by their masks, one of them mirrored for the left hand,
  placed flat on the key plane by a similarity per note (the chosen finger's
  annotated fingertip on the key), so each fingertip's piano position is that
  similarity applied to its annotation; the hands glide between notes;
- the notes: single notes per hand, the finger of each note known, rendered to
  audio by FluidSynth with robopianist's soundfont, starting `offset_s` into
  the video (video time = MIDI time + offset_s); the MIDI file given to the
  pipeline has the MIDI times.

The photos are palm views; a palm view of a left hand has the outline of the
back of a right hand seen from above, so the unmirrored photo plays the right
hand (thumb towards A0) and its mirror image the left hand.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from envs.music.video.keyboard import apply_homography, key_geometry

FIXTURES = Path(__file__).parent / "fixtures"
ARM_PAD_PX = 420  # the forearm: the photo's wrist column repeated beyond its left border
FINGER_WIDTH_M = 0.0172  # an adult's middle fingertip; sets the photo's scale
LEFT, RIGHT = 0, 1


@dataclass(frozen=True)
class VideoSpec:
    seed: int = 0
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    duration_s: float = 6.0
    offset_s: float | None = None  # None: drawn in [0.25, 0.6]
    photos: tuple[str, str] = ("handDst", "handSrc")  # (left hand, right hand)
    crf: int = 20


@dataclass
class GroundTruth:
    corners_px: np.ndarray  # (4, 2), A0 back, C8 back, C8 front, A0 front
    offset_s: float
    notes: list[dict]  # start, end (MIDI time), pitch, hand (0 left, 1 right), finger (1 thumb .. 5)
    fingertips_xy: np.ndarray  # (T, 2, 5, 2) piano frame, hand 0 = left
    fingertips_px: np.ndarray  # (T, 2, 5, 2) video pixels
    frame_times: np.ndarray  # (T,)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"corners_px": self.corners_px.tolist(), "offset_s": self.offset_s, "notes": self.notes,
                "n_frames": len(self.frame_times)}


@dataclass(frozen=True)
class Photo:
    rgba: np.ndarray  # padded with the forearm
    tips: np.ndarray  # (5, 2) fingertip annotation in padded pixels
    scale: float  # metres per photo pixel


def load_photo(name: str) -> Photo:
    meta = json.loads((FIXTURES / "hands.json").read_text())[name]
    bgr = cv2.imread(str(FIXTURES / meta["image"]))
    alpha = cv2.imread(str(FIXTURES / meta["alpha"]), cv2.IMREAD_GRAYSCALE)
    if bgr is None or alpha is None:
        raise FileNotFoundError(f"fixture {name}: {meta['image']} / {meta['alpha']} missing under {FIXTURES}")
    rgba = np.dstack([bgr, alpha])
    rgba = cv2.copyMakeBorder(rgba, 0, 0, ARM_PAD_PX, 0, cv2.BORDER_REPLICATE)
    tips = np.array(meta["fingertips_px"], float) + [ARM_PAD_PX, 0]
    return Photo(rgba=rgba, tips=tips, scale=FINGER_WIDTH_M / meta["finger_widths_px"][2])


def _linear(photo: Photo, hand: int, theta: float, scale: float) -> np.ndarray:
    """Photo pixels -> piano (x, y): fingers (photo +u) point to -x; thumb side (photo -v) to -y for the right hand."""
    flip = np.array([[-1.0, 0.0], [0.0, 1.0 if hand == RIGHT else -1.0]])
    c, s = np.cos(theta), np.sin(theta)
    return scale * np.array([[c, -s], [s, c]]) @ flip


def _similarity(photo: Photo, hand: int, theta: float, scale: float, finger: int, target: np.ndarray) -> np.ndarray:
    lin = _linear(photo, hand, theta, scale)
    t = target - lin @ photo.tips[finger - 1]
    return np.array([[lin[0, 0], lin[0, 1], t[0]], [lin[1, 0], lin[1, 1], t[1]], [0, 0, 1]])


def _piano_to_video(spec: VideoSpec, rng: np.random.Generator) -> np.ndarray:
    w, h = spec.width, spec.height
    front_v, back_v = 0.44 * h, 0.23 * h
    inset = 0.03 * w
    target = np.array([[0.02 * w + inset, back_v], [0.98 * w - inset, back_v],
                       [0.98 * w, front_v], [0.02 * w, front_v]])
    target += rng.uniform(-0.012 * w, 0.012 * w, size=(4, 2))
    g, _ = cv2.findHomography(key_geometry().corners, target, 0)
    return g / g[2, 2]


def _plan_notes(spec: VideoSpec, rng: np.random.Generator, offset: float) -> list[dict]:
    geometry = key_geometry()
    notes = []
    ranges = {LEFT: (40, 57), RIGHT: (62, 79)}
    for hand in (LEFT, RIGHT):
        t = 0.25 + rng.uniform(0.0, 0.2)
        pitch = int(rng.integers(*ranges[hand]))
        while t + 0.3 < spec.duration_s - offset - 0.3:
            key = pitch - 21
            black = bool(geometry.is_black[key])
            notes.append({
                "start": round(t, 4), "end": round(t + rng.uniform(0.12, 0.2), 4), "pitch": pitch,
                "hand": hand, "finger": int(rng.integers(1, 6)), "velocity": int(rng.integers(70, 100)),
                "land_x": float(rng.uniform(-0.040, -0.012) if black else rng.uniform(0.030, 0.058)),
                "theta": float(np.deg2rad(rng.uniform(-6, 6))),
            })
            t += rng.uniform(0.32, 0.48)
            pitch = int(np.clip(pitch + rng.integers(-4, 5), *ranges[hand]))
    return sorted(notes, key=lambda n: (n["start"], n["pitch"]))


def _smooth(a: float) -> float:
    return a * a * (3 - 2 * a)


def _hand_poses(notes: list[dict], photo: Photo, hand: int, scale: float, times: np.ndarray) -> np.ndarray:
    """(T, 3, 3) photo -> piano similarity per frame: held from just before each onset to its end, glide between."""
    geometry = key_geometry()
    mine = [n for n in notes if n["hand"] == hand]
    keys = []
    for n in mine:
        target = np.array([n["land_x"], geometry.centers[n["pitch"] - 21, 1]])
        pose = _similarity(photo, hand, n["theta"], scale, n["finger"], target)
        keys.append((n["video_start"] - n["lead"], n["video_end"], n["theta"], pose))
    poses = np.empty((len(times), 3, 3))
    for i, t in enumerate(times):
        if t <= keys[0][1]:
            poses[i] = keys[0][3]
            continue
        for (a0, b0, th0, p0), (a1, b1, th1, p1) in zip(keys, keys[1:] + [keys[-1]]):
            if a0 <= t <= b0:
                poses[i] = p0
                break
            if b0 < t < a1:
                w = _smooth((t - b0) / (a1 - b0))
                th = (1 - w) * th0 + w * th1
                lin = _linear(photo, hand, th, scale)
                trans = (1 - w) * p0[:2, 2] + w * p1[:2, 2]
                poses[i] = np.vstack([np.hstack([lin, trans[:, None]]), [0, 0, 1]])
                break
        else:
            poses[i] = keys[-1][3]
    return poses


def _draw_keyboard(g: np.ndarray, spec: VideoSpec) -> np.ndarray:
    geometry = key_geometry()
    frame = np.empty((spec.height, spec.width, 3), np.uint8)
    frame[:] = (52, 60, 72)  # a dark wooden surface
    shift = 4

    def poly(xy_corners: np.ndarray, colour) -> None:
        px = np.rint(apply_homography(g, xy_corners) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(frame, [px], colour, lineType=cv2.LINE_AA, shift=shift)

    def rect(cx, cy, hx, hy) -> np.ndarray:
        return np.array([[cx - hx, cy - hy], [cx - hx, cy + hy], [cx + hx, cy + hy], [cx + hx, cy - hy]])

    c = geometry.corners
    poly(rect(c[0, 0] - 0.052, 0.0, 0.052, c[1, 1] + 0.01), (28, 28, 30))  # the case behind the keys
    poly(rect(0.0, 0.0, c[2, 0], c[1, 1]), (40, 40, 40))  # what shows through the gaps between keys
    for key in np.flatnonzero(~geometry.is_black):
        poly(rect(*geometry.centers[key], *geometry.half_sizes[key]), (236, 238, 240))
    for key in np.flatnonzero(geometry.is_black):
        poly(rect(*geometry.centers[key], *geometry.half_sizes[key]), (22, 22, 26))
    return frame


def _composite(frame: np.ndarray, photo: Photo, m: np.ndarray) -> None:
    """Alpha-blends the photo warped by `m` (photo px -> frame px), inside its bounding box only."""
    h, w = photo.rgba.shape[:2]
    box = apply_homography(m, np.array([[0, 0], [w, 0], [w, h], [0, h]], float))
    x0, y0 = np.maximum(np.floor(box.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(box.max(axis=0)).astype(int) + 1, [frame.shape[1], frame.shape[0]])
    if x1 <= x0 or y1 <= y0:
        return
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], float)
    warped = cv2.warpPerspective(photo.rgba, shift @ m, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = warped[..., 3:4].astype(np.uint16)
    roi = frame[y0:y1, x0:x1]
    roi[:] = ((roi * (255 - alpha) + warped[..., :3] * alpha + 127) // 255).astype(np.uint8)


def _synth_audio(notes: list[dict], duration_s: float, path: Path) -> None:
    import soundfile
    from robopianist.music import midi_message, synthesizer
    from robopianist.music.constants import SAMPLING_RATE

    events = []
    for n in notes:
        events.append(midi_message.NoteOn(note=n["pitch"], velocity=n["velocity"], time=n["video_start"]))
        events.append(midi_message.NoteOff(note=n["pitch"], time=n["video_end"]))
    events.sort(key=lambda e: (e.time, isinstance(e, midi_message.NoteOn)))
    synth = synthesizer.Synthesizer()
    try:
        samples = synth.get_samples(events)
    finally:
        synth.stop()
    n_samples = int(round(duration_s * SAMPLING_RATE))
    samples = np.pad(samples, (0, max(0, n_samples - len(samples))))[:n_samples]
    soundfile.write(str(path), samples, SAMPLING_RATE, subtype="PCM_16")


def write_midi(notes: list[dict], path: Path) -> None:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for n in notes:
        piano.notes.append(pretty_midi.Note(velocity=n["velocity"], pitch=n["pitch"], start=n["start"], end=n["end"]))
    pm.instruments.append(piano)
    pm.write(str(path))


def _check_unambiguous(notes: list[dict], tips: np.ndarray, times: np.ndarray) -> list[str]:
    """Each note's finger on its key right after the onset, every other fingertip clear of it."""
    geometry = key_geometry()
    problems = []
    for i, n in enumerate(notes):
        frames = np.flatnonzero((times >= n["video_start"]) & (times <= n["video_end"]))
        key = n["pitch"] - 21
        for f in frames:
            d = geometry.footprint_distance(tips[f].reshape(10, 2), key).reshape(2, 5)
            own = d[n["hand"], n["finger"] - 1]
            d[n["hand"], n["finger"] - 1] = np.inf
            if own > 1e-9 or d.min() < 0.006:
                problems.append(f"note {i}: own {own:.4f}, nearest other {d.min():.4f}")
                break
    return problems


def generate(spec: VideoSpec, out_dir: Path) -> tuple[Path, Path, GroundTruth]:
    """Writes `<out_dir>/video.mp4` and `<out_dir>/notes.mid`; returns them and the ground truth."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = [load_photo(name) for name in spec.photos]
    times = np.arange(int(round(spec.duration_s * spec.fps))) / spec.fps
    for attempt in range(50):
        rng = np.random.default_rng([spec.seed, attempt])
        offset = spec.offset_s if spec.offset_s is not None else float(np.round(rng.uniform(0.25, 0.6), 4))
        g = _piano_to_video(spec, rng)
        scales = [p.scale * rng.uniform(0.96, 1.04) for p in photos]
        notes = _plan_notes(spec, rng, offset)
        for n in notes:
            n["video_start"], n["video_end"] = n["start"] + offset, n["end"] + offset
            n["lead"] = float(rng.uniform(0.04, 0.07))
        poses = np.stack([_hand_poses(notes, photos[h], h, scales[h], times) for h in (LEFT, RIGHT)], axis=1)
        tips = np.einsum("thij,hfj->thfi", poses[..., :2, :2], np.stack([p.tips for p in photos]))
        tips += poses[:, :, None, :2, 2]
        # Keep the hands apart (palms at least 0.2 m) and the notes unambiguous.
        palms = tips.mean(axis=2)
        apart = np.linalg.norm(palms[:, LEFT] - palms[:, RIGHT], axis=-1).min() > 0.2
        if apart and not _check_unambiguous(notes, tips, times):
            break
    else:
        raise RuntimeError(f"seed {spec.seed}: no valid plan in 50 attempts")
    background = _draw_keyboard(g, spec)
    noise_rng = np.random.default_rng([spec.seed, 1000])
    noise_bank = np.rint(noise_rng.normal(0, 2.0, (4, spec.height, spec.width, 3))).astype(np.int16)  # sensor noise
    video = out_dir / "video.mp4"
    wav = out_dir / "audio.wav"
    _synth_audio(notes, spec.duration_s, wav)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{spec.width}x{spec.height}",
           "-r", str(spec.fps), "-i", "-", "-i", str(wav), "-c:v", "libx264", "-preset", "veryfast",
           "-crf", str(spec.crf),
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k", "-map_metadata", "-1", str(video)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for t in range(len(times)):
        frame = background.copy()
        for h in (LEFT, RIGHT):
            _composite(frame, photos[h], g @ poses[t, h])
        proc.stdin.write(np.clip(frame + noise_bank[t % len(noise_bank)], 0, 255).astype(np.uint8).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {video}")
    wav.unlink()
    midi = out_dir / "notes.mid"
    write_midi(notes, midi)
    truth = GroundTruth(
        corners_px=apply_homography(g, key_geometry().corners),
        offset_s=offset,
        notes=[{k: n[k] for k in ("start", "end", "pitch", "hand", "finger")} for n in notes],
        fingertips_xy=tips,
        fingertips_px=apply_homography(g, tips),
        frame_times=times,
        extra={"piano_to_video": g},
    )
    return video, midi, truth
