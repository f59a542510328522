"""Watch and hear an episode: an MP4 from the top-down camera with the piano's
sound synthesised by robopianist's FluidSynth synthesizer and its soundfont.

Frames are rendered offscreen (MUJOCO_GL=osmesa or egl) once per control step,
so the video plays at the control rate (20 fps) in real time. The key presses
are turned into MIDI messages by robopianist's piano `midi_module` during the
episode and synthesised afterwards; ffmpeg (the binary that ships inside the
imageio-ffmpeg wheel) muxes video and audio.
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from envs import atomic

DEFAULT_CAMERA = "piano/topdown"


@dataclass(frozen=True)
class RenderResult:
    path: Path
    n_frames: int
    fps: float
    n_midi_events: int
    seconds: float


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def synthesize(midi_events, sample_rate: int, n_samples: int) -> np.ndarray:
    """int16 mono waveform of `n_samples` for robopianist MIDI messages (silence if none)."""
    from robopianist.music import midi_message, synthesizer

    notes = [e for e in midi_events if not isinstance(e, (midi_message.SustainOn, midi_message.SustainOff))]
    if not notes:  # sustain-only input makes FluidSynth emit noise (robopianist's note)
        return np.zeros(n_samples, np.int16)
    synth = synthesizer.Synthesizer(sample_rate=sample_rate)
    try:
        # robopianist's synthesizer returns a waveform that starts at t = 0 and
        # rewrites the events' times in place: hand it copies.
        wave_ = synth.get_samples([copy.copy(e) for e in midi_events])
    finally:
        synth.stop()
    padded = np.zeros(n_samples, np.int16)
    padded[: min(n_samples, len(wave_))] = wave_[:n_samples]
    return padded


# Key colours of a rendered frame (RGBA): pressed and should be down, should be down
# but not pressed (a missed note), pressed but should not be (a wrong note).
KEY_COLORS = {"correct": (0.2, 0.8, 0.2, 1.0), "missed": (1.0, 0.6, 0.0, 1.0), "wrong": (0.9, 0.1, 0.1, 1.0)}


class _KeyPainter:
    """Colours each key by what the step just played did with it (the goal of the step and the keys
    down after it), so a viewer sees which notes were missed; other keys keep their own colour."""

    def __init__(self, env) -> None:
        self._physics = env.physics
        self._geoms = [self._physics.bind(key.geom[0]) for key in env.task.piano.keys]
        self._rest = [np.array(g.rgba) for g in self._geoms]

    def paint(self, goal: np.ndarray | None, pressed: np.ndarray | None) -> None:
        for i, geom in enumerate(self._geoms):
            down, due = (bool(pressed[i]), bool(goal[i])) if goal is not None else (False, False)
            state = "correct" if down and due else "missed" if due else "wrong" if down else None
            geom.rgba = KEY_COLORS[state] if state else self._rest[i]


def render_episode(
    env,
    next_action: Callable[[dict, int], np.ndarray],
    out_path: Path,
    *,
    camera: str = DEFAULT_CAMERA,
    width: int = 640,
    height: int = 480,
) -> RenderResult:
    """Run one episode of `env` with `next_action(observation, t)` and write an MP4 with sound; keys
    are coloured by `KEY_COLORS` (correct, missed, wrong) after each step."""
    from robopianist.music import constants as music_consts

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fps = 1.0 / env.config.control_timestep
    timestep = env.reset()
    painter = _KeyPainter(env)
    painter.paint(None, None)
    frames = [env.physics.render(height=height, width=width, camera_id=camera)]
    t = 0
    while not timestep.last():
        timestep = env.step(next_action(timestep.observation, t))
        info = env.step_info()
        painter.paint(info["goal_keys"], info["pressed_keys"])
        frames.append(env.physics.render(height=height, width=width, camera_id=camera))
        t += 1
    events = env.task.piano.midi_module.get_all_midi_messages()
    sample_rate = music_consts.SAMPLING_RATE
    seconds = len(frames) / fps
    audio = synthesize(events, sample_rate, int(round(seconds * sample_rate)))

    with tempfile.TemporaryDirectory(prefix="pianoset_render_") as tmp:
        wav_path = Path(tmp) / "audio.wav"
        with wave.open(str(wav_path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(audio.tobytes())
        def encode(partial: Path) -> None:
            cmd = [
                _ffmpeg(), "-nostdin", "-y", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
                "-i", str(wav_path),
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(partial),
            ]
            proc = subprocess.run(cmd, input=np.stack(frames).astype(np.uint8).tobytes(), capture_output=True)
            if proc.returncode != 0:
                raise RuntimeError(f"ffmpeg failed writing {out_path}: {proc.stderr.decode()[-500:]}")

        atomic.write_with(out_path, encode)
    return RenderResult(out_path, len(frames), fps, len(events), seconds)
