"""Video and audio I/O: probing, streamed frames, audio extraction, an H.264 writer (ffmpeg, OpenCV).

Frames are decoded one at a time (memory: a frame, not the video). Frame i is
taken to show time i / fps (constant frame rate, what screen and phone
recordings and YouTube downloads are).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np


class MediaError(ValueError):
    """A video or audio file that cannot be read (or written) as needed."""


def _ffmpeg(tool: str = "ffmpeg") -> str:
    path = shutil.which(tool)
    if path is None:
        raise MediaError(f"{tool} not found on PATH (Debian: apt-get install ffmpeg)")
    return path


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    n_frames: int
    duration_s: float
    has_audio: bool
    audio_start_s: float  # audio stream start minus video stream start

    def as_dict(self) -> dict:
        return {"path": str(self.path), "width": self.width, "height": self.height, "fps": self.fps,
                "n_frames": self.n_frames, "duration_s": round(self.duration_s, 4), "has_audio": self.has_audio,
                "audio_start_s": round(self.audio_start_s, 4)}


def probe(path: Path) -> VideoInfo:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    cmd = [_ffmpeg("ffprobe"), "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MediaError(f"{path}: ffprobe cannot read it ({done.stderr.strip()[:200]})")
    streams = json.loads(done.stdout).get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None:
        raise MediaError(f"{path}: no video stream")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    num, _, den = video.get("avg_frame_rate", "0/1").partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 0.0
    if fps <= 0:
        raise MediaError(f"{path}: no frame rate in the video stream")
    capture = cv2.VideoCapture(str(path))
    n_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if n_frames <= 0:
        n_frames = int(video.get("nb_frames") or 0)
    start_v = float(video.get("start_time", 0.0) or 0.0)
    start_a = float(audio.get("start_time", 0.0) or 0.0) if audio else 0.0
    return VideoInfo(path=path, width=int(video["width"]), height=int(video["height"]), fps=fps,
                     n_frames=n_frames, duration_s=n_frames / fps, has_audio=audio is not None,
                     audio_start_s=start_a - start_v if audio else 0.0)


def frames(path: Path) -> Iterator[np.ndarray]:
    """BGR frames in order, one at a time."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MediaError(f"{path}: OpenCV cannot open it")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def sample_frames(path: Path, n_frames: int, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over the video (seeking; for a background plate)."""
    capture = cv2.VideoCapture(str(path))
    picked = []
    try:
        for index in np.unique(np.linspace(0, max(n_frames - 1, 0), count).astype(int)):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                picked.append(frame)
    finally:
        capture.release()
    if not picked:
        raise MediaError(f"{path}: no frame could be decoded")
    return picked


def extract_audio(path: Path, out_wav: Path, sample_rate: int = 22050) -> Path:
    """The first audio stream as mono 16-bit WAV (basic-pitch's rate by default)."""
    cmd = [_ffmpeg(), "-v", "error", "-y", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate),
           "-c:a", "pcm_s16le", "-map_metadata", "-1", "-fflags", "+bitexact", str(out_wav)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MediaError(f"{path}: cannot extract its audio ({done.stderr.strip()[:200]})")
    return out_wav


class VideoWriter:
    """H.264 MP4 from BGR frames through an ffmpeg pipe, with another file's audio muxed in if given."""

    def __init__(self, path: Path, width: int, height: int, fps: float, audio_from: Path | None = None,
                 crf: int = 23) -> None:
        cmd = [_ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
               "-r", repr(float(fps)), "-i", "-"]
        if audio_from is not None:
            cmd += ["-i", str(audio_from), "-map", "0:v", "-map", "1:a?", "-c:a", "aac", "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
                "-flags:a", "+bitexact", str(path)]
        self.path = path
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())

    def close(self) -> None:
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace")
        if self._proc.wait() != 0:
            raise MediaError(f"ffmpeg failed writing {self.path}: {err.strip()[:300]}")

    def abort(self) -> None:
        self._proc.kill()
        self._proc.wait()
