"""Keyboard pieces the corpora lack, written out note by note for the quality benchmark.

`written:<name>` refs in the `quality:` section of params.yaml name one of
`PIECES`; `write_piece(name, folder)` writes it as a standard MIDI file (with
note_seq, the reader `envs.music.songs.load_midi_file` uses) and returns the path,
so the benchmark loads it like any MIDI file. Nothing is downloaded and no
MIDI file is committed: the notes are in this file.

- ``hanon_no1``: C. L. Hanon, *Le pianiste virtuose* (1873, public domain),
  exercise No. 1 in C: the 8-note figure rising through two octaves and
  falling back, sixteenths, both hands in unison an octave apart (right hand
  from middle C), at M.M. 96 (Hanon marks 60-108). Fast, even, parallel
  scale-wise motion with the hands shifting every group.
- ``crossing_study``: a constructed hand-crossing study (ours, in the manner
  of a Czerny crossing exercise): the right hand plays a broken chord in
  eighths around middle C while the left hand alternates a bass note (beat 1)
  with a melody note an octave or more above the right hand (beat 3), so it
  must cross over the right hand every two beats. Quarter = 60.
"""

from __future__ import annotations

import os
from pathlib import Path

_C_MAJOR = (0, 2, 4, 5, 7, 9, 11)


def _degree(d: int, base: int) -> int:
    """MIDI pitch of diatonic degree `d` of C major above `base` (a C)."""
    return base + _C_MAJOR[d % 7] + 12 * (d // 7)


def hanon_no1(qpm: float = 96.0) -> list[tuple[float, float, int]]:
    """(start s, end s, pitch) of Hanon No. 1, both hands."""
    sixteenth = 60.0 / qpm / 4
    figures = [[d, d + 2, d + 3, d + 4, d + 5, d + 4, d + 3, d + 2] for d in range(14)]
    figures += [[u, u - 2, u - 3, u - 4, u - 5, u - 4, u - 3, u - 2] for u in range(18, 4, -1)]
    degrees = [d for figure in figures for d in figure]
    notes = []
    for i, d in enumerate(degrees):
        for base in (60, 48):  # right hand from middle C, left hand an octave lower
            notes.append((i * sixteenth, (i + 1) * sixteenth, _degree(d, base)))
    end = len(degrees) * sixteenth
    for base in (60, 48):  # the closing whole note
        notes.append((end, end + 16 * sixteenth, base))
    return notes


# (right-hand close-position chord, left-hand bass, left-hand melody note above the right hand)
_CROSSING_BARS = (
    ((60, 64, 67), 48, 76),  # C: E5 over the right hand
    ((60, 64, 69), 45, 76),  # Am
    ((60, 65, 69), 41, 77),  # F
    ((62, 67, 71), 43, 74),  # G
    ((60, 64, 67), 48, 79),  # C
    ((62, 65, 69), 50, 77),  # Dm
    ((62, 65, 71), 43, 77),  # G7
    ((60, 64, 67), 48, 72),  # C
)


def crossing_study(qpm: float = 60.0) -> list[tuple[float, float, int]]:
    """(start s, end s, pitch) of the constructed hand-crossing study."""
    beat = 60.0 / qpm
    notes = []
    for bar, (chord, bass, melody) in enumerate(_CROSSING_BARS):
        t0 = 4 * bar * beat
        for i, voice in enumerate((0, 1, 2, 1, 0, 1, 2, 1)):  # broken chord in eighths
            notes.append((t0 + i * beat / 2, t0 + (i + 1) * beat / 2, chord[voice]))
        notes.append((t0, t0 + beat, bass))  # beat 1: bass
        notes.append((t0 + 2 * beat, t0 + 3 * beat, melody))  # beat 3: crossed over the right hand
    return notes


PIECES = {
    "hanon_no1": ("Hanon, The Virtuoso Pianist No. 1", hanon_no1),
    "crossing_study": ("Hand-crossing study (constructed)", crossing_study),
}
PREFIX = "written:"


def write_piece(name: str, folder: str | Path) -> Path:
    """Write piece `name` as `<folder>/<name>.mid` (rewritten only when its content changed)."""
    from note_seq import midi_io, music_pb2

    if name not in PIECES:
        raise ValueError(f"{PREFIX}{name}: no such written piece (known: {', '.join(sorted(PIECES))})")
    title, notes_fn = PIECES[name]
    seq = music_pb2.NoteSequence()
    seq.ticks_per_quarter = 220
    seq.tempos.add(qpm=60.0)  # times are in seconds already
    seq.sequence_metadata.title = title
    for start, end, pitch in notes_fn():
        seq.notes.add(start_time=start, end_time=end, pitch=pitch, velocity=80)
    seq.total_time = max(n.end_time for n in seq.notes)
    path = Path(folder) / f"{name}.mid"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    midi_io.note_sequence_to_midi_file(seq, str(tmp))
    if not path.exists() or path.read_bytes() != tmp.read_bytes():
        tmp.replace(path)
    else:
        tmp.unlink()
    return path
