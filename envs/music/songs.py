"""Songs: loading, content ids and playability checks.

A `Song` is a robopianist `MidiFile` (a note_seq `NoteSequence` underneath)
plus where it came from. Three sources, each named by a `ref` string that
`load_song` accepts again:

- ``robopianist:<Name>``: robopianist's built-in library (`robopianist.music.
  DEBUG_MIDIS`: scales, chords, Twinkle Twinkle, and the two Rousseau pieces
  with human fingering). The PIG songs are not shipped with robopianist
  (`PIG_MIDIS` is empty unless the user ran its preprocessing), so they are not
  listed here; the PIG files themselves load as MIDI-like files (below).
- ``music21:<corpus path>[#<number>]``: a score of the corpus that ships inside
  the `music21` package, e.g. ``music21:bach/bwv66.6.mxl`` (the extension may be
  left out when it is unambiguous: ``music21:bach/bwv66.6``). ABC files that
  hold a collection of tunes (folk song books) name one tune by its ``X:``
  number: ``music21:essenFolksong/altdeu10.abc#4``. ABC files whose tunes carry
  the same title and then each a voice name (T:Cantus, T:Altus, ...) are the
  voices of one piece (the Josquin files) and are merged into one score.
- ``video:<folder>``: a demonstration written by `pianoset video`: its notes
  with the video's fingering (`notes.proto`, usable with ``fingering: human``)
  and its fingertip trajectories (`Song.reference`, `envs.music.reference`).
- a file path (optionally prefixed ``midi:``): a standard MIDI file (``.mid``,
  ``.midi``), a serialized `NoteSequence` (``.proto``, as robopianist's PIG
  preprocessing writes), or a PIG fingering file (``*_fingering.txt`` from the
  PIG dataset's FingeringFiles/, fingers mapped as robopianist does: right hand
  0-4, left hand 5-9, thumb first).

Decisions:

- Scores are turned into notes by music21's own MIDI writer (then read back by
  note_seq, the same reader as MIDI files). It is the reference rendering of a
  score as performed: ties merged, repeats expanded, tempo marks and dynamics
  applied (default 120 quarter notes per minute when a score has no tempo).
  It costs about twice as much as walking `score.flatten().stripTies()`
  ourselves, which would miss repeats and tempo changes. Grace notes are
  dropped: written with zero length, they would come back from the MIDI
  reader as notes held until the next release of that key (a Beethoven
  quartet then "needs" 32 keys at once). Chord symbols and roman numerals (`music21.harmony.Harmony`) are
  analysis, not notated notes: they are removed first, and roman-numeral
  analysis files (``.rntxt``) are refused as "not a score". Two music21
  failures are worked around rather than rejected: repeats it cannot expand
  ("badly formed repeats", common in the folk ABC books) or that it expands
  into more than `envs.music.scores.MAX_REPEAT_EXPANSION` times the notated notes are removed and
  the tune is played once through; a time signature object shared by two measures
  (its ABC reader does this) is copied so its MIDI writer accepts it.
- The title of a score is "title: movement" from its metadata, or the file
  name when it has neither.
- Drum notes (MIDI channel 10) are dropped when loading: they are not pitches.
  Every other instrument is merged onto the one piano.
- Notes are sorted by (start, pitch); everything else is kept as read (times
  unstretched: the stretch happens when chunking, `envs.music.chunks`).
- `song_id` is a hash of the content, not of the name: the first 12 hex digits
  of the sha256 of the sorted (start ms, end ms, pitch, velocity) list. The same
  notes under another file name get the same id; fingering and pedal do not
  enter the id.
- Playability (`validate_song`): at least one note; every pitch on the 88-key
  piano (MIDI 21-108, A0-C8); at most 10 distinct keys down at once (two hands,
  ten fingers). Unisons (the same pitch in two voices) are one key. A note
  still sounding less than `POLYPHONY_OVERLAP_TOLERANCE_S` after another key
  goes down is a legato overlap, not a simultaneous press: performed MIDI
  (GiantMIDI-Piano) overlaps consecutive notes by a few tens of milliseconds,
  and counting those would reject most legato chord playing.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from note_seq import midi_io, music_pb2
from robopianist.music import constants as rp_consts
from robopianist.music.midi_file import MidiFile

if TYPE_CHECKING:
    from envs.music.reference import FingertipReference

logger = logging.getLogger(__name__)

SOURCES = ("robopianist", "music21", "midi", "video")

MIN_PIANO_PITCH = rp_consts.MIN_MIDI_PITCH_PIANO  # A0 = MIDI 21
MAX_PIANO_PITCH = rp_consts.MAX_MIDI_PITCH_PIANO  # C8 = MIDI 108
MAX_SIMULTANEOUS_NOTES = 10  # two hands, five fingers each
# Overlaps shorter than this are legato, not chords: half a 20 Hz control step
# (RP1M Table 4: control timestep 0.05 s), i.e. below what the env can resolve.
POLYPHONY_OVERLAP_TOLERANCE_S = 0.025
SONG_ID_LENGTH = 12  # hex digits of sha256 = 48 bits: ~0.2% odds of any collision among 10^6 songs

MIDI_SUFFIXES = (".mid", ".midi")
PROTO_SUFFIX = ".proto"
PIG_SUFFIX = "_fingering.txt"  # PIG dataset FingeringFiles/<nnn>-<k>_fingering.txt

MUSIC21_PREFIX = "music21:"
_ROBOPIANIST_PREFIX = "robopianist:"
_MIDI_PREFIX = "midi:"
VIDEO_PREFIX = "video:"


class SongError(ValueError):
    """A song that cannot be read or cannot be played; the message names it."""


@dataclass(frozen=True)
class Song:
    song_id: str
    source: str  # "robopianist" | "music21" | "midi" | "video"
    title: str
    ref: str  # what `load_song` takes to load it again
    midi: MidiFile  # robopianist MidiFile, unstretched, as read (drums dropped, notes sorted)
    # A video demonstration's fingertips (song time); None for every other source.
    reference: "FingertipReference | None" = field(default=None, compare=False)

    @property
    def n_notes(self) -> int:
        return len(self.midi.seq.notes)

    def has_fingering(self) -> bool:
        return self.midi.has_fingering()


@dataclass(frozen=True)
class SongStats:
    """Numbers the catalog shows, on the unstretched song."""

    n_notes: int
    first_onset_s: float
    last_offset_s: float
    max_polyphony: int  # distinct keys down at once (see module docstring)
    max_polyphony_time_s: float
    n_off_keyboard: int

    @property
    def duration_s(self) -> float:
        """Length with leading and trailing silence trimmed."""
        return max(0.0, self.last_offset_s - self.first_onset_s)


# ----------------------------------------------------------------------------------
# Content id and statistics


def song_id_of(seq: music_pb2.NoteSequence) -> str:
    """Content hash of a note sequence (see module docstring)."""
    canonical = sorted(
        (round(n.start_time * 1000), round(n.end_time * 1000), int(n.pitch), int(n.velocity))
        for n in seq.notes
    )
    digest = hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()
    return digest[:SONG_ID_LENGTH]


def _polyphony(
    seq: music_pb2.NoteSequence, limit: int = MAX_SIMULTANEOUS_NOTES
) -> tuple[int, float, tuple[int, float] | None]:
    """(max distinct keys down, when first reached, (count, time) of the first excess).

    Evaluated at every onset: a note counts from its start until
    `end - POLYPHONY_OVERLAP_TOLERANCE_S` (and always at its own onset).
    """
    notes = sorted((n.start_time, n.end_time, n.pitch) for n in seq.notes)
    active: list[tuple[float, int]] = []  # heap of (effective end, pitch)
    count_by_pitch: dict[int, int] = {}
    best, best_time = 0, 0.0
    first_excess: tuple[int, float] | None = None
    i = 0
    while i < len(notes):
        onset = notes[i][0]
        while active and active[0][0] <= onset + 1e-9:
            _, pitch = heapq.heappop(active)
            count_by_pitch[pitch] -= 1
            if count_by_pitch[pitch] == 0:
                del count_by_pitch[pitch]
        while i < len(notes) and notes[i][0] <= onset + 1e-9:
            start, end, pitch = notes[i]
            effective_end = max(end - POLYPHONY_OVERLAP_TOLERANCE_S, start + 1e-6)
            heapq.heappush(active, (effective_end, pitch))
            count_by_pitch[pitch] = count_by_pitch.get(pitch, 0) + 1
            i += 1
        n_keys = len(count_by_pitch)
        if n_keys > best:
            best, best_time = n_keys, onset
        if first_excess is None and n_keys > limit:
            first_excess = (n_keys, onset)
    return best, best_time, first_excess


def song_stats(song: Song) -> SongStats:
    seq = song.midi.seq
    notes = seq.notes
    n_off = sum(1 for n in notes if not MIN_PIANO_PITCH <= n.pitch <= MAX_PIANO_PITCH)
    max_poly, max_poly_time, _ = _polyphony(seq)
    return SongStats(
        n_notes=len(notes),
        first_onset_s=min((n.start_time for n in notes), default=0.0),
        last_offset_s=max((n.end_time for n in notes), default=0.0),
        max_polyphony=max_poly,
        max_polyphony_time_s=max_poly_time,
        n_off_keyboard=n_off,
    )


def validate_song(song: Song) -> None:
    """Raise `SongError` if the song cannot be played by two ten-fingered hands on 88 keys."""
    name = song.ref
    notes = song.midi.seq.notes
    if len(notes) == 0:
        raise SongError(f"{name}: no notes")
    off = [n for n in notes if not MIN_PIANO_PITCH <= n.pitch <= MAX_PIANO_PITCH]
    if off:
        first = min(off, key=lambda n: n.start_time)
        what = "all" if len(off) == len(notes) else f"{len(off)} of {len(notes)}"
        raise SongError(
            f"{name}: {what} notes are off the 88-key piano (MIDI {MIN_PIANO_PITCH}-"
            f"{MAX_PIANO_PITCH}), first pitch {first.pitch} at {first.start_time:.2f} s"
        )
    best, best_time, first_excess = _polyphony(song.midi.seq)
    if first_excess is not None:
        count, when = first_excess
        more = f" (up to {best} at {best_time:.2f} s)" if best > count else ""
        raise SongError(
            f"{name}: {count} simultaneous notes at {when:.2f} s{more}, "
            f"the hands have {MAX_SIMULTANEOUS_NOTES} fingers"
        )


# ----------------------------------------------------------------------------------
# Loading


def clean_sequence(seq: music_pb2.NoteSequence) -> music_pb2.NoteSequence:
    """Drop drum notes, sort notes by (start, pitch), fix total_time."""
    out = music_pb2.NoteSequence()
    out.CopyFrom(seq)
    notes = sorted((n for n in seq.notes if not n.is_drum), key=lambda n: (n.start_time, n.pitch))
    n_drums = len(seq.notes) - len(notes)
    if n_drums:
        logger.debug("dropped %d drum notes", n_drums)
    del out.notes[:]
    out.notes.extend(notes)
    out.total_time = max((n.end_time for n in notes), default=0.0)
    return out


def make_song(seq: music_pb2.NoteSequence, *, source: str, title: str, ref: str) -> Song:
    seq = clean_sequence(seq)
    if title and not seq.sequence_metadata.title:
        seq.sequence_metadata.title = title
    return Song(song_id=song_id_of(seq), source=source, title=title, ref=ref, midi=MidiFile(seq=seq))


def load_song(ref: str, *, validate: bool = True) -> Song:
    """Load a song from its ref (see module docstring); `SongError` names the ref and problem.

    With `validate` (the default) an unplayable song raises too (`validate_song`);
    the catalog passes `validate=False` to describe unplayable songs as well.
    """
    ref = str(ref)
    if ref.startswith(_ROBOPIANIST_PREFIX):
        song = _load_robopianist(ref)
    elif ref.startswith(MUSIC21_PREFIX):
        from envs.music.scores import load_music21_file

        songs = load_music21_file(ref[len(MUSIC21_PREFIX) :], _single=True)
        result = songs[0][1]
        if isinstance(result, SongError):
            raise result
        song = result
    elif ref.startswith(VIDEO_PREFIX):
        song = load_video_demonstration(ref)
    else:
        song = load_midi_file(ref[len(_MIDI_PREFIX) :] if ref.startswith(_MIDI_PREFIX) else ref)
    if validate:
        validate_song(song)
    return song


def load_video_demonstration(ref: str) -> Song:
    """``video:<folder>``: the demonstration's notes, fingering and fingertip reference."""
    from dataclasses import replace

    from envs.music.reference import ReferenceError, reference_from_demonstration
    from envs.music.video.demo import DemoError

    folder = Path(ref[len(VIDEO_PREFIX) :])
    try:
        reference = reference_from_demonstration(folder)
    except (DemoError, ReferenceError) as exc:
        raise SongError(f"{ref}: not a usable video demonstration ({exc})") from exc
    song = load_midi_file(folder / "notes.proto")
    title = song.title if song.title != "notes" else folder.resolve().name
    return replace(song, source="video", title=title, ref=ref, reference=reference)


def _load_robopianist(ref: str) -> Song:
    from robopianist import music

    name = ref[len(_ROBOPIANIST_PREFIX) :]
    if name not in music.DEBUG_MIDIS and name not in music.PIG_MIDIS:
        known = ", ".join(music.DEBUG_MIDIS + music.PIG_MIDIS)
        raise SongError(f"{ref}: no such song in robopianist's library (known: {known})")
    try:
        midi = music.load(name)
    except Exception as exc:  # a broken robopianist install, a missing data file
        raise SongError(f"{ref}: robopianist could not load it ({type(exc).__name__}: {exc})") from exc
    title = midi.title or name
    return make_song(midi.seq, source="robopianist", title=title, ref=ref)


def is_song_file(path: Path) -> bool:
    """Whether a file found in a directory is one `load_midi_file` reads."""
    name = path.name.lower()
    return path.suffix.lower() in MIDI_SUFFIXES + (PROTO_SUFFIX,) or name.endswith(PIG_SUFFIX)


def load_midi_file(path: str | Path) -> Song:
    """A MIDI file, a NoteSequence .proto or a PIG fingering file; the ref is the path as given."""
    ref = str(path)
    path = Path(path)
    if not path.exists():
        raise SongError(f"{ref}: no such file")
    if path.is_dir():
        raise SongError(f"{ref}: is a directory, not a song file (the catalog takes directories)")
    suffix = path.suffix.lower()
    try:
        if suffix in MIDI_SUFFIXES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pretty_midi: "tempo changes on non-zero tracks"
                seq = midi_io.midi_file_to_note_sequence(str(path))
        elif suffix == PROTO_SUFFIX:
            seq = music_pb2.NoteSequence()
            seq.ParseFromString(path.read_bytes())
        elif path.name.lower().endswith(PIG_SUFFIX):
            seq = _read_pig(path)
        else:
            raise SongError(
                f"{ref}: unsupported file type {suffix or '(none)'} "
                f"(expected {', '.join(MIDI_SUFFIXES)}, {PROTO_SUFFIX} or *{PIG_SUFFIX})"
            )
    except SongError:
        raise
    except Exception as exc:  # mido/pretty_midi/protobuf raise many kinds on bad bytes
        kind = "MIDI" if suffix in MIDI_SUFFIXES else suffix.lstrip(".")
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, midi_io.MIDIConversionError) and exc.__cause__ is not None:
            reason = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
        raise SongError(f"{ref}: not a readable {kind} file, it is truncated or corrupt ({reason})") from exc
    title = seq.sequence_metadata.title or _title_from_filename(path)
    return make_song(seq, source="midi", title=title, ref=ref)


def _title_from_filename(path: Path) -> str:
    stem = path.name
    for suffix in (PIG_SUFFIX, *MIDI_SUFFIXES, PROTO_SUFFIX):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem.replace("_", " ").strip()


def _read_pig(path: Path) -> music_pb2.NoteSequence:
    """PIG fingering file: tab-separated id, onset, offset, pitch name, velocities,
    channel, finger (1..5 right, -1..-5 left, "3_1" = substitution, first kept)."""
    import pretty_midi

    seq = music_pb2.NoteSequence()
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("//"):
            continue
        parts = line.split()
        if len(parts) < 8:
            raise SongError(f"{path}: line {line_number}: expected 8 PIG fields, got {len(parts)}")
        try:
            finger = int(parts[7].split("_")[0])
            finger = (abs(finger) + 5 if finger < 0 else finger) - 1  # robopianist convention
            seq.notes.add(
                start_time=float(parts[1]),
                end_time=float(parts[2]),
                pitch=pretty_midi.note_name_to_number(parts[3]),
                velocity=max(1, min(127, int(parts[4]) or 64)),
                part=finger,
            )
        except ValueError as exc:
            raise SongError(f"{path}: line {line_number}: {exc}") from exc
    seq.total_time = max((n.end_time for n in seq.notes), default=0.0)
    return seq
