"""Audio to notes with basic-pitch (Spotify, ICASSP 2022), from the model inside its wheel.

The wheel ships the same network as TensorFlow SavedModel, TFLite, ONNX and
CoreML files. We load the TFLite one through TensorFlow's own interpreter:
the SavedModel costs ~20 s to load on a 2-core machine, the TFLite file
milliseconds, and the two gave identical notes on our test audio. Anything ffmpeg decodes (audio
files, videos) is first decoded to mono 22.05 kHz WAV, basic-pitch's rate.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from envs.music.video.media import extract_audio
from envs.music.video.notes import MAX_PITCH, MIN_PITCH, Note, sort_notes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscribeConfig:
    """basic-pitch's note-creation settings.

    Its defaults (onset 0.5, frame 0.3) also report the octave harmonics and
    second onsets of low piano notes: on our FluidSynth test videos (5 seeds)
    onset precision was 0.59-0.80 with them and 0.76-0.96 with 0.6 / 0.4, at
    the same recall (0.96-1.0). Tuned on synthesized piano, not on recordings.
    """

    onset_threshold: float = 0.6
    frame_threshold: float = 0.4
    minimum_note_length_ms: float = 58.0  # basic-pitch's default 127.7 ms drops shorter (staccato) notes
    melodia_trick: bool = True

    def __post_init__(self) -> None:
        for name in ("onset_threshold", "frame_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"TranscribeConfig.{name}={getattr(self, name)}: must be in (0, 1)")
        if self.minimum_note_length_ms <= 0:
            raise ValueError(f"TranscribeConfig.minimum_note_length_ms={self.minimum_note_length_ms}: must be > 0")


def model_path() -> Path:
    import basic_pitch

    path = Path(basic_pitch.__file__).parent / "saved_models" / "icassp_2022" / "nmp.tflite"
    if not path.is_file():
        raise FileNotFoundError(f"basic-pitch model {path} missing from the installed wheel")
    return path


def transcribe(audio: Path, config: TranscribeConfig | None = None) -> list[Note]:
    """The notes heard in an audio or video file (its first audio stream), on the 88 keys, sorted."""
    config = config or TranscribeConfig()
    audio = Path(audio)
    if not audio.is_file():
        raise FileNotFoundError(f"{audio}: no such file")
    with contextlib.redirect_stdout(io.StringIO()):  # basic-pitch prints progress on stdout
        from basic_pitch.inference import Model, predict

        model = Model(str(model_path()))
        with tempfile.TemporaryDirectory(prefix="pianoset-transcribe-") as tmp:
            wav = extract_audio(audio, Path(tmp) / "audio.wav")
            _, _, events = predict(
                str(wav), model,
                onset_threshold=config.onset_threshold,
                frame_threshold=config.frame_threshold,
                minimum_note_length=config.minimum_note_length_ms,
                melodia_trick=config.melodia_trick,
            )
    notes = [Note(float(start), float(end), int(pitch), int(max(1, min(127, round(127 * float(amplitude))))))
             for start, end, pitch, amplitude, _ in events if MIN_PITCH <= int(pitch) <= MAX_PITCH]
    logger.info("transcribed %s: %d notes", audio, len(notes))
    return sort_notes(notes)

