"""Notes of a demonstration: reading and writing them, and their time offset against the video.

Time bases: *song time* is the notes' own (the MIDI file's); *video time* is
the video's. video time = song time + offset. With notes transcribed from the
video's own audio the offset is the audio stream's start (0 for ordinary
files); with a given MIDI file it is estimated by matching the file's onsets
with the transcription's (`estimate_offset`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MIN_PITCH, MAX_PITCH = 21, 108  # A0..C8, the 88 keys
N_FINGERS = 10  # robopianist order: right thumb..little = 0..4, left thumb..little = 5..9


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float
    pitch: int
    velocity: int = 80

    @property
    def key(self) -> int:
        return self.pitch - MIN_PITCH


def sort_notes(notes: list[Note]) -> list[Note]:
    return sorted(notes, key=lambda n: (n.start, n.pitch, n.end))


def load_notes(path: Path) -> list[Note]:
    """A MIDI file (or any file `envs.music.songs.load_song` reads) as notes on the 88 keys, sorted."""
    from envs.music.songs import SongError, load_song

    try:
        song = load_song(str(path), validate=False)
    except SongError as exc:
        raise ValueError(str(exc)) from None
    notes = [Note(float(n.start_time), float(n.end_time), int(n.pitch), int(n.velocity)) for n in song.midi.seq.notes]
    outside = [n for n in notes if not MIN_PITCH <= n.pitch <= MAX_PITCH]
    if outside:
        raise ValueError(f"{path}: {len(outside)} notes off the 88-key piano (first: pitch {outside[0].pitch} "
                         f"at {outside[0].start:.2f} s)")
    if not notes:
        raise ValueError(f"{path}: no notes")
    return sort_notes(notes)


def write_midi(notes: list[Note], path: Path) -> None:
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(resolution=960)
    piano = pretty_midi.Instrument(program=0, name="piano")
    for n in notes:
        piano.notes.append(pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch), start=float(n.start),
                                            end=float(n.end)))
    midi.instruments.append(piano)
    midi.write(str(path))


def write_note_sequence(notes: list[Note], fingers: list[int], path: Path) -> None:
    """A serialized note_seq NoteSequence whose `part` is each note's finger (robopianist's "human"
    fingering: right hand 0-4, left 5-9, thumb first; what `envs.music.songs.load_song` reads from .proto).
    A note without a label (-1: no hand tracked at its onset) is written as part 0; demonstration.json
    keeps the -1."""
    from note_seq.protobuf import music_pb2

    seq = music_pb2.NoteSequence()
    seq.ticks_per_quarter = 220
    seq.tempos.add(qpm=120.0)
    for n, finger in zip(notes, fingers):
        seq.notes.add(start_time=n.start, end_time=n.end, pitch=n.pitch, velocity=int(n.velocity),
                      part=int(max(finger, 0)), instrument=0, program=0)
    seq.total_time = max((n.end for n in notes), default=0.0)
    path.write_bytes(seq.SerializeToString(deterministic=True))


@dataclass(frozen=True)
class OffsetEstimate:
    offset_s: float  # observed time = reference time + offset
    matched_fraction: float  # reference notes with an observed onset of the same pitch within the tolerance
    spread_s: float  # median absolute deviation of the matched onset differences
    runner_up_votes: float  # votes of the best other offset, relative to the winner's (1 = ambiguous)
    method: str

    def as_dict(self) -> dict:
        return {"offset_s": self.offset_s, "matched_fraction": round(self.matched_fraction, 4),
                "spread_s": round(self.spread_s, 4), "runner_up_votes": round(self.runner_up_votes, 4),
                "method": self.method}


def estimate_offset(reference: list[Note], observed: list[Note], max_offset_s: float = 30.0,
                    tolerance_s: float = 0.05) -> OffsetEstimate:
    """The shift that lines up most onsets of the same pitch: a vote over all same-pitch onset
    differences (10 ms bins, summed over +-tolerance), refined by the median matched difference."""
    if not reference or not observed:
        raise ValueError(f"offset: need notes on both sides (reference {len(reference)}, observed {len(observed)})")
    diffs = []
    obs_by_pitch: dict[int, np.ndarray] = {}
    for n in observed:
        obs_by_pitch.setdefault(n.pitch, []).append(n.start)
    obs_by_pitch = {p: np.array(v) for p, v in obs_by_pitch.items()}
    for n in reference:
        times = obs_by_pitch.get(n.pitch)
        if times is not None:
            d = times - n.start
            diffs.append(d[np.abs(d) <= max_offset_s])
    diffs = np.concatenate(diffs) if diffs else np.array([])
    if diffs.size == 0:
        raise ValueError("offset: no pitch in common between the notes and the transcription within "
                         f"+-{max_offset_s:.0f} s")
    bin_s = 0.01
    edges = np.arange(-max_offset_s, max_offset_s + bin_s, bin_s)
    votes, _ = np.histogram(diffs, bins=edges)
    width = int(round(tolerance_s / bin_s))
    smoothed = np.convolve(votes, np.ones(2 * width + 1), mode="same")
    best = int(np.argmax(smoothed))
    peak = 0.5 * (edges[best] + edges[best + 1])
    far = np.abs(np.arange(len(smoothed)) - best) > 2 * width
    runner_up = float(smoothed[far].max() / smoothed[best]) if far.any() else 0.0
    near = diffs[np.abs(diffs - peak) <= tolerance_s]
    offset = float(np.median(near))
    # one match per reference note: its nearest same-pitch onset at that offset
    matched = []
    for n in reference:
        times = obs_by_pitch.get(n.pitch)
        if times is not None:
            d = times - n.start - offset
            k = int(np.argmin(np.abs(d)))
            if abs(d[k]) <= tolerance_s:
                matched.append(d[k] + offset)
    matched = np.array(matched)
    if matched.size:
        offset = float(np.median(matched))
    spread = float(np.median(np.abs(matched - offset))) if matched.size else float("nan")
    logger.info("offset %.4f s: %d of %d notes matched", offset, matched.size, len(reference))
    return OffsetEstimate(offset_s=offset, matched_fraction=matched.size / len(reference), spread_s=spread,
                          runner_up_votes=runner_up, method="onsets matched against the transcription")


def _mir_eval_arrays(notes: list[Note]) -> tuple[np.ndarray, np.ndarray]:
    intervals = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in notes]).reshape(-1, 2)
    return intervals, np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes])


def onset_f1(reference: list[Note], estimated: list[Note], onset_tolerance_s: float = 0.05) -> dict:
    """mir_eval note-onset precision / recall / F1 (offsets ignored), same time base."""
    import mir_eval

    if not reference or not estimated:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        *_mir_eval_arrays(reference), *_mir_eval_arrays(estimated), onset_tolerance=onset_tolerance_s,
        offset_ratio=None)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def match_notes(reference: list[Note], estimated: list[Note], onset_tolerance_s: float = 0.05) -> list[tuple[int, int]]:
    """mir_eval's onset-only one-to-one note matching: pairs (reference index, estimated index)."""
    import mir_eval

    if not reference or not estimated:
        return []
    pairs = mir_eval.transcription.match_notes(*_mir_eval_arrays(reference), *_mir_eval_arrays(estimated),
                                               onset_tolerance=onset_tolerance_s, offset_ratio=None)
    return [(int(i), int(j)) for i, j in pairs]
