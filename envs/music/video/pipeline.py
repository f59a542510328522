"""A piano video to a demonstration folder (PianoMime 3.1 and Appendix A), streamed frame by frame.

keyboard (corners found on a median of a few frames, or given) -> notes (the
given MIDI, aligned by matching its onsets with the transcription of the
video's audio; or the transcription itself) -> hand landmarks per frame
(MediaPipe on crops, tracked) -> fingertips in the piano frame (homography)
-> fingering per note (onset rule, and the video-priors rule beside it) ->
PianoMime's adjustment per frame and per 20 Hz control step -> the folder
(`envs.music.video.demo`), with the overlay video from a second pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from envs import atomic
from envs.music.video import demo
from envs.music.video.fingering import active_notes, adjust, label_at_onset, label_by_mean_distance
from envs.music.video.hands import LEFT, RIGHT, TIP_LANDMARKS, HandsConfig, HandTracker, fill_gaps
from envs.music.video.keyboard import background_plate, detect_keyboard, key_geometry, keyboard_from_corners
from envs.music.video.media import VideoWriter, frames, probe, sample_frames
from envs.music.video.notes import Note, estimate_offset, load_notes, onset_f1, write_midi, write_note_sequence
from envs.music.video.overlay import OverlayPainter
from envs.music.video.transcribe import TranscribeConfig, transcribe

logger = logging.getLogger(__name__)

CONTROL_TIMESTEP_S = 0.05  # 20 Hz: the env's control rate (robopianist; PianoMime App. A samples every 0.05 s)
FINGER_NAMES = tuple(f"{hand}_{finger}" for hand in ("right", "left")
                     for finger in ("thumb", "index", "middle", "ring", "little"))

Progress = Callable[[str, int, "int | None"], None]


class VideoDemoError(ValueError):
    """Inputs that cannot make a demonstration; the message names the input and the problem."""


@dataclass(frozen=True)
class VideoDemoConfig:
    hands: HandsConfig = field(default_factory=HandsConfig)
    transcription: TranscribeConfig = field(default_factory=TranscribeConfig)
    plate_frames: int = 7  # frames whose median shows the keyboard without the hands
    onset_window_s: float = 0.1  # "right after the onset" for the fingering rule
    max_offset_s: float = 30.0  # largest |offset| searched between a MIDI file and the video
    overlay: bool = True

    def __post_init__(self) -> None:
        if self.plate_frames < 1:
            raise ValueError(f"VideoDemoConfig.plate_frames={self.plate_frames}: must be >= 1")
        if self.onset_window_s <= 0 or self.max_offset_s <= 0:
            raise ValueError(f"VideoDemoConfig: onset_window_s={self.onset_window_s} and "
                             f"max_offset_s={self.max_offset_s} must be > 0")


def _resample(xy: np.ndarray, valid: np.ndarray, fps: float, video_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of per-frame fingertips at other times; valid only between two valid frames."""
    n = len(xy)
    u = video_times * fps
    i0 = np.floor(u + 1e-9).astype(int)
    w = np.clip(u - i0, 0.0, 1.0)[:, None, None]
    inside = (i0 >= 0) & (i0 < n)
    a = np.clip(i0, 0, n - 1)
    b = np.clip(i0 + 1, 0, n - 1)
    on_frame = w[:, 0, 0] < 1e-6
    out = (1 - w) * xy[a] + w * xy[b]
    ok = inside[:, None] & valid[a] & (valid[b] | on_frame[:, None])
    out[~ok] = np.nan
    return out, ok


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


@dataclass(frozen=True)
class _Notes:
    notes: list[Note]  # song time
    offset: float  # video time = song time + offset
    offset_info: dict
    source: dict
    transcribed: list[Note] | None  # audio-stream time


def _find_keyboard(video: Path, info, corners, config: VideoDemoConfig):
    if corners is not None:
        return keyboard_from_corners(corners, (info.width, info.height), source="given")
    return detect_keyboard(background_plate(sample_frames(video, info.n_frames, config.plate_frames)))


def _find_notes(video: Path, info, midi: Path | None, transcribe_audio: bool, offset_s: float | None,
                config: VideoDemoConfig, report: Progress) -> _Notes:
    transcribed = None
    if transcribe_audio or offset_s is None:
        report("transcription", 0, 1)
        transcribed = transcribe(video, config.transcription)
        report("transcription", 1, 1)
    if midi is None:
        if not transcribed:
            raise VideoDemoError(f"{video}: the transcription of its audio found no notes")
        return _Notes(transcribed, info.audio_start_s,
                      {"offset_s": info.audio_start_s, "method": "notes transcribed from the video's own audio"},
                      {"kind": "transcription", "path": None, "model": "basic-pitch ICASSP 2022 (nmp.tflite)"},
                      transcribed)
    notes = load_notes(midi)
    source = {"kind": "midi", "path": str(midi)}
    if offset_s is not None:
        return _Notes(notes, float(offset_s), {"offset_s": float(offset_s), "method": "given"}, source, transcribed)
    heard = [Note(n.start + info.audio_start_s, n.end + info.audio_start_s, n.pitch, n.velocity) for n in transcribed]
    estimate = estimate_offset(notes, heard, max_offset_s=config.max_offset_s)
    return _Notes(notes, estimate.offset_s, estimate.as_dict(), source, transcribed)


def _track_hands(video: Path, info, keyboard, config: VideoDemoConfig, report: Progress):
    """Landmarks (T, 2, 21, 2) of [left, right] per frame (NaN where not found), landmarker calls,
    and the seconds of the frame loop (without loading MediaPipe)."""
    tracker = HandTracker(keyboard, info.fps, config.hands)
    per_frame = []
    start = time.perf_counter()
    try:
        for i, frame in enumerate(frames(video)):
            per_frame.append(tracker.update(frame)[0])
            report("hands", i + 1, info.n_frames)
    finally:
        tracker.close()
    if not per_frame:
        raise VideoDemoError(f"{video}: no frame could be decoded")
    return np.array(per_frame), tracker.landmarker.calls, time.perf_counter() - start


def _quality(keyboard, info, found: _Notes, detected, interpolated, labels, priors, pressing, valid, active,
             landmarker_calls: int) -> dict:
    fingers = [label.finger for label in labels]
    active_tracked = sum(1 for t, idx in enumerate(active) for _ in idx if valid[t].any())
    quality = {
        "keyboard": {k: v for k, v in keyboard.as_dict().items()
                     if k in ("source", "pattern_agreement", "key_points", "key_residual_px")}
        | {"mm_per_pixel_front_edge": round(1000 * keyboard.metres_per_pixel(), 4)},
        "hands": {
            name: {"detected": round(float(detected[:, slot].mean()), 4),
                   "interpolated": round(float(interpolated[:, slot].mean()), 4),
                   "missing": round(float(1 - (detected[:, slot] | interpolated[:, slot]).mean()), 4),
                   "longest_gap_s": round(_longest_run(~detected[:, slot]) / info.fps, 4)}
            for slot, name in ((LEFT, "left"), (RIGHT, "right"))
        } | {"landmarker_calls": landmarker_calls},
        "offset": found.offset_info,
        "fingering": {
            "notes": len(labels),
            "labelled": sum(f >= 0 for f in fingers),
            "on_key": round(float(np.mean([label.on_key for label in labels])), 4),
            "mean_confidence": round(float(np.mean([label.confidence for label in labels])), 4),
            "low_confidence": round(float(np.mean([label.confidence < 0.5 for label in labels])), 4),
            "rules_agree": round(float(np.mean([a.finger == b.finger for a, b in zip(labels, priors)])), 4),
        },
        "adjustment": {"active_key_frames_pressed": round(float(pressing.sum() / max(active_tracked, 1)), 4)},
    }
    if found.transcribed is not None:
        quality["transcription"] = {"notes": len(found.transcribed)}
        if found.source["kind"] == "midi":  # the MIDI notes in audio-stream time against what was heard
            shift = found.offset - info.audio_start_s
            expected = [Note(n.start + shift, n.end + shift, n.pitch) for n in found.notes]
            f1 = onset_f1(expected, found.transcribed)
            quality["transcription"]["onsets_vs_midi"] = {k: round(v, 4) for k, v in f1.items()}
    return quality


def make_demonstration(video: Path, out: Path, *, midi: Path | None = None, transcribe_audio: bool = False,
                       corners: np.ndarray | None = None, offset_s: float | None = None,
                       config: VideoDemoConfig | None = None, progress: Progress | None = None) -> dict:
    """Writes the demonstration folder `out` for `video`; returns a summary (quality figures, timings).

    The notes are `midi` (aligned by `offset_s`, or by matching its onsets
    with the transcription of the video's audio) or, with `transcribe_audio`,
    that transcription. `corners` (4, 2) overrides the keyboard detection.
    """
    config = config or VideoDemoConfig()
    report = progress or (lambda stage, done, total: None)
    video, out = Path(video), Path(out)
    if (midi is None) == (not transcribe_audio):
        raise VideoDemoError(f"{video}: give the notes as a MIDI file or ask for the transcription (exactly one)")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    info = probe(video)
    if not info.has_audio and (transcribe_audio or offset_s is None):
        raise VideoDemoError(f"{video}: no audio stream, so nothing to transcribe or to align the MIDI "
                             "file with; give --midi FILE and --offset SECONDS")
    geometry = key_geometry()
    report("keyboard", 0, 1)
    keyboard = _find_keyboard(video, info, corners, config)
    report("keyboard", 1, 1)
    seconds["keyboard"], clock = time.perf_counter() - clock, time.perf_counter()
    found = _find_notes(video, info, midi, transcribe_audio, offset_s, config, report)
    notes, offset = found.notes, found.offset
    seconds["notes"], clock = time.perf_counter() - clock, time.perf_counter()
    landmarks, landmarker_calls, loop_seconds = _track_hands(video, info, keyboard, config, report)
    seconds["hands"] = time.perf_counter() - clock

    n_frames = len(landmarks)
    frame_time = np.arange(n_frames) / info.fps
    frame_song = frame_time - offset
    filled, interpolated = fill_gaps(landmarks, max_gap=int(round(config.hands.max_gap_s * info.fps)))
    detected = ~np.isnan(landmarks[:, :, 0, 0])
    tips_xy = keyboard.to_piano(filled[:, :, list(TIP_LANDMARKS)])
    xy = np.concatenate([tips_xy[:, RIGHT], tips_xy[:, LEFT]], axis=1)  # robopianist order: right hand first
    valid = np.repeat(~np.isnan(filled[:, [RIGHT, LEFT], 0, 0]), 5, axis=1)
    labels = label_at_onset(notes, xy, valid, frame_time, offset, geometry, config.onset_window_s)
    priors = label_by_mean_distance(notes, xy, valid, frame_time, offset, geometry)
    fingers = [label.finger for label in labels]
    fingertips, pressing = adjust(xy, valid, frame_song, notes, fingers, geometry)

    last_song = frame_time[-1] - offset
    n_steps = int(np.floor(last_song / CONTROL_TIMESTEP_S + 1e-9)) + 1 if last_song >= 0 else 0
    step_time = np.arange(n_steps) * CONTROL_TIMESTEP_S
    step_xy, step_valid = _resample(xy, valid, info.fps, step_time + offset)
    step_fingertips, step_pressing = adjust(step_xy, step_valid, step_time, notes, fingers, geometry)

    active = active_notes(notes, frame_song)
    quality = _quality(keyboard, info, found, detected, interpolated, labels, priors, pressing, valid, active,
                       landmarker_calls)
    meta = {
        "format": demo.FORMAT,
        "video": info.as_dict(),
        "time": {"video_time": "song_time + offset_s", "offset_s": offset, "control_timestep_s": CONTROL_TIMESTEP_S,
                 "frames": n_frames, "steps": n_steps},
        "offset": found.offset_info,
        "notes_source": found.source,
        "keyboard": keyboard.as_dict(),
        "fingertip_order": list(FINGER_NAMES),
        "config": dataclasses.asdict(config),
        "quality": quality,
        "notes": [
            {"index": i, "start": n.start, "end": n.end, "pitch": n.pitch, "key": n.key, "velocity": n.velocity,
             **labels[i].as_dict(), "rule": "fingertip on the key just after the onset",
             "priors": priors[i].as_dict()}
            for i, n in enumerate(notes)
        ],
    }
    arrays = {
        "frame_time": frame_time, "frame_song_time": frame_song, "landmarks_px": landmarks.astype(np.float32),
        "detected": detected, "interpolated": interpolated, "fingertips_xy_raw": xy, "fingertips": fingertips,
        "valid": valid, "pressing": pressing, "step_time": step_time, "step_fingertips": step_fingertips,
        "step_valid": step_valid, "step_pressing": step_pressing,
    }
    clock = time.perf_counter()
    with atomic.staged_dir(out) as staging:
        (staging / "demonstration.json").write_text(json.dumps(meta, indent=1) + "\n")
        write_midi(notes, staging / "notes.mid")
        write_note_sequence(notes, fingers, staging / "notes.proto")
        demo.write_npz(staging / "fingertips.npz", arrays)
        if config.overlay:
            _write_overlay(video, staging / demo.OVERLAY, info, keyboard, filled, fingertips, pressing, active,
                           [(n.key, f) for n, f in zip(notes, fingers)], frame_time, offset, report)
        manifest = demo.write_manifest(staging, {"frames": n_frames, "steps": n_steps, "notes": len(notes),
                                                 "offset_s": offset})
    seconds["write"] = time.perf_counter() - clock
    logger.info("wrote %s: %d frames, %d notes, offset %.3f s", out, n_frames, len(notes), offset)
    return {"out": str(out), "frames": n_frames, "steps": n_steps, "notes": len(notes), "offset_s": offset,
            "quality": quality, "files": [f["path"] for f in manifest["files"]],
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "hand_frames_per_second": round(n_frames / max(loop_seconds, 1e-9), 2)}


def _write_overlay(video, path, info, keyboard, landmarks, fingertips, pressing, active, note_labels, frame_time,
                   offset, report) -> None:
    """Second pass over the video: each frame with the keyboard, landmarks, fingertips, sounding keys."""
    painter = OverlayPainter(keyboard)
    writer = VideoWriter(path, info.width, info.height, info.fps, audio_from=video if info.has_audio else None)
    try:
        for i, frame in enumerate(frames(video)):
            if i >= len(frame_time):
                break
            keys = [note_labels[j] for j in active[i]]
            header = f"t {frame_time[i]:6.2f} s   song {frame_time[i] - offset:6.2f} s   offset {offset:+.3f} s"
            writer.write(painter.draw(frame, landmarks[i], fingertips[i], pressing[i], keys, header))
            report("overlay", i + 1, len(frame_time))
    except BaseException:
        writer.abort()
        raise
    writer.close()
