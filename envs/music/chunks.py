"""Chunks: a song cut into RP1M episodes.

RP1M (section 4.3, Table 4) slows every song down by 1.25, trims the silence
before the first note and after the last one, and cuts it every 550 control
steps (27.5 s at 20 Hz), so that every specialist trains on episodes of the
same length. `make_chunks` does this for one `envs.music.songs.Song`:

- Time: the song is stretched (`MidiFile.stretch`, notes and pedal), then
  shifted so the first onset is t = 0 and ends at the last offset (we trim on
  the earliest onset and latest offset ourselves: robopianist's
  `MidiFile.trim_silence` takes the end of the *last listed* note, which cuts
  a longer note still sounding). The song lasts `ceil(duration / 0.05)` steps.
- Boundaries: chunk k starts at step k * 550. The last partial chunk keeps its
  true length (a shorter episode) unless it is shorter than `min_chunk_steps`
  (20 steps = 1 s): then it is merged into the previous chunk, which becomes up
  to 569 steps long. A song of at most 550 steps is one chunk, however short.
- Notes: a note belongs to the chunk in which it starts (its start step,
  floor(t / 0.05)); times become relative to the chunk start. A note still
  sounding at the chunk end is cut there as far as the episode goes (the env
  stops after `n_steps`), but it is not ended early: it keeps sounding into the
  lookahead context, up to the end of the context window. Ending it at the
  chunk end would show the agent a release (and a re-press in the next steps)
  that the music does not have.
- Lookahead context: the goal observation at step t shows steps t..t+10, so
  the last ten steps of an episode look past its end. Each chunk therefore also
  carries the notes *starting* in the `lookahead_steps` steps after its end
  (they belong to the next chunk), cut at the end of that window, and its MIDI
  lasts n_steps + lookahead_steps steps. The last chunk of a song has nothing
  after it: its context is silence. Notes that started in an earlier chunk and
  are still sounding at a chunk's start are not part of it (the episode starts
  from rest).
- Empty chunks are dropped: a chunk in which no note starts (the end of a
  long final note, a rest longer than 27.5 s) would be an episode of silence.
  The remaining chunks are numbered 0, 1, ... in order; `start_step` keeps
  their place in the song.
- Fingertip reference: a song from a video demonstration (`Song.reference`)
  gives each chunk its fingertips on the chunk's steps (`envs.music.
  reference.chunk_reference`, same stretch and trim), saved in the chunk file
  as ``reference``; other chunks have none and their files are unchanged.
- Sustain pedal (control change 64) events are kept and shifted like notes; a
  chunk starts with the pedal state in force at its start (an event at t = 0).
- Fingering: robopianist keeps human fingering in each note's `part` field
  (0-4 right thumb..little, 5-9 left); it is copied, so chunks of songs with
  fingering (robopianist's Rousseau pieces, PIG files) still have it.
- Float noise: robopianist turns times into steps with int(start * 20) and
  ceil(end * 20), and 1.15 * 20 = 22.999999999999996. Chunk times are rounded
  to 0.1 us and starts moved 1 us later, ends 1 us earlier, so every note lands
  on the step its time says.

Chunks are saved as small JSON files (`save_chunk`, `load_chunk`,
`write_song_chunks`: <dir>/<song_id>/chunk-000.json, ...), written to a
temporary file and renamed: the chunk's fields, ``total_time_s``, ``notes`` as
[start_s, end_s, pitch, velocity, part] lists (relative, nudged times as in
`Chunk.midi`) and ``sustain`` as [time_s, value] lists; a ``format`` name and
``version`` guard against reading something else. A 550-step chunk of dense
piano music is a few tens of kB.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from note_seq import music_pb2
from robopianist.music import constants as rp_consts
from robopianist.music.midi_file import MidiFile

from envs import atomic
from envs.music.reference import ChunkReference, ReferenceError, chunk_reference
from envs.music.songs import Song, SongError, validate_song

CONTROL_TIMESTEP = 0.05  # s, 20 Hz (RP1M Table 4)
CHUNK_STEPS = 550  # RP1M section 4.3: 27.5 s episodes
STRETCH = 1.25  # RP1M Table 4
LOOKAHEAD_STEPS = 10  # RP1M Table 4 (L = 11 with the current step)
MIN_CHUNK_STEPS = 20  # 1 s: a shorter tail is merged into the previous chunk (ours)

SUSTAIN_CC = rp_consts.SUSTAIN_PEDAL_CC_NUMBER  # 64
_TIME_DECIMALS = 7  # 0.1 us
_FRAME_NUDGE_S = 1e-6  # see "Float noise" above
_STEP_EPS = 1e-6  # in steps, when assigning a note to a step

CHUNK_FORMAT = "pianoset.chunk"
CHUNK_FORMAT_VERSION = 1
_NOTE_FIELDS = ["start_s", "end_s", "pitch", "velocity", "part"]


@dataclass(frozen=True)
class Chunk:
    song_id: str
    index: int  # 0-based position in the song
    n_steps: int  # episode length in control steps
    lookahead_steps: int
    title: str
    # Notes relative to the chunk start (t = 0 is the first step), already
    # stretched and trimmed; lasts n_steps + lookahead_steps steps. Do not trim again.
    midi: MidiFile
    start_step: int = 0  # where the chunk starts in the stretched, trimmed song
    control_timestep: float = CONTROL_TIMESTEP
    reference: ChunkReference | None = field(default=None, compare=False)  # a video's fingertips, per step

    @property
    def chunk_id(self) -> str:
        return f"{self.song_id}-{self.index:03d}"

    @property
    def duration_s(self) -> float:
        """Episode length in seconds (without the lookahead context)."""
        return self.n_steps * self.control_timestep


def song_steps(duration_s: float, control_timestep: float = CONTROL_TIMESTEP) -> int:
    """Control steps that cover a (stretched, trimmed) song of this length, at least 1."""
    return max(1, math.ceil(duration_s / control_timestep - _STEP_EPS))


def chunk_lengths(
    total_steps: int, chunk_steps: int = CHUNK_STEPS, min_chunk_steps: int = MIN_CHUNK_STEPS
) -> list[int]:
    """Episode lengths of the chunks of a song of `total_steps` steps (see module docstring)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    n_full, tail = divmod(total_steps, chunk_steps)
    if n_full == 0:
        return [tail]
    lengths = [chunk_steps] * n_full
    if tail >= min_chunk_steps:
        lengths.append(tail)
    elif tail > 0:
        lengths[-1] += tail
    return lengths


def _t(seconds: float) -> float:
    return round(seconds, _TIME_DECIMALS)


def make_chunks(
    song: Song,
    *,
    stretch: float = STRETCH,
    trim_silence: bool = True,
    chunk_steps: int = CHUNK_STEPS,
    lookahead_steps: int = LOOKAHEAD_STEPS,
    min_chunk_steps: int = MIN_CHUNK_STEPS,
    control_timestep: float = CONTROL_TIMESTEP,
) -> list[Chunk]:
    """Cut a song into RP1M episodes (see module docstring). Unplayable songs raise `SongError`."""
    for name, value in (("chunk_steps", chunk_steps), ("stretch", stretch), ("control_timestep", control_timestep)):
        if value <= 0:
            raise ValueError(f"{song.ref}: {name} must be positive, got {value}")
    if lookahead_steps < 0 or min_chunk_steps < 0:
        raise ValueError(
            f"{song.ref}: lookahead_steps and min_chunk_steps must be >= 0, got {lookahead_steps}, {min_chunk_steps}"
        )
    validate_song(song)
    dt = control_timestep
    seq = song.midi.stretch(stretch).seq
    offset = min(n.start_time for n in seq.notes) if trim_silence else 0.0
    notes = sorted(
        ((n.start_time - offset, n.end_time - offset, n.pitch, n.velocity, n.part) for n in seq.notes),
        key=lambda note: (note[0], note[2]),  # the song's order: (start, pitch)
    )
    pedal = sorted(
        ((cc.time - offset, cc.control_value) for cc in seq.control_changes if cc.control_number == SUSTAIN_CC),
        key=lambda event: event[0],
    )
    pedal_times = [time for time, _ in pedal]
    end_time = max(end for _, end, *_ in notes)
    lengths = chunk_lengths(song_steps(end_time, dt), chunk_steps, min_chunk_steps)
    starts = [0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length)

    note_steps = [max(0, math.floor(start / dt + _STEP_EPS)) for start, *_ in notes]
    chunk_of_note = [min(bisect.bisect_right(starts, step) - 1, len(lengths) - 1) for step in note_steps]

    with_onsets = set(chunk_of_note)
    chunks: list[Chunk] = []
    first_note = 0
    for k, (start_step, n_steps) in enumerate(zip(starts, lengths)):
        if k not in with_onsets:  # only the tail of an earlier note, or a long rest
            continue
        t0 = start_step * dt
        window_steps = n_steps + lookahead_steps
        window_end = window_steps * dt  # relative to t0
        out = music_pb2.NoteSequence()
        out.ticks_per_quarter = 220  # note_seq's standard PPQ, for saving as .mid
        out.tempos.add(qpm=60.0)
        out.sequence_metadata.title = song.title
        i = first_note
        while i < len(notes) and chunk_of_note[i] < k:
            i += 1
        first_note = i
        # Own notes, then the context: later notes starting inside the lookahead window.
        while i < len(notes) and (chunk_of_note[i] == k or note_steps[i] < start_step + window_steps):
            start, end, pitch, velocity, part = notes[i]
            rel_start = _t(max(0.0, start - t0) + _FRAME_NUDGE_S)
            rel_end = _t(max(min(end - t0, window_end) - _FRAME_NUDGE_S, rel_start))
            out.notes.add(
                start_time=rel_start, end_time=rel_end, pitch=pitch, velocity=velocity, part=part
            )
            i += 1
        # Pedal: the state in force at t0, then the events inside the window.
        j = bisect.bisect_left(pedal_times, t0 - 1e-9)
        if j > 0:
            out.control_changes.add(time=0.0, control_number=SUSTAIN_CC, control_value=pedal[j - 1][1])
        while j < len(pedal) and pedal[j][0] < t0 + window_end - 1e-9:
            out.control_changes.add(
                time=_t(max(0.0, pedal[j][0] - t0) + _FRAME_NUDGE_S),
                control_number=SUSTAIN_CC,
                control_value=pedal[j][1],
            )
            j += 1
        out.total_time = _t(window_end)
        chunks.append(
            Chunk(
                song_id=song.song_id,
                index=len(chunks),
                n_steps=n_steps,
                lookahead_steps=lookahead_steps,
                title=song.title,
                midi=MidiFile(seq=out),
                start_step=start_step,
                control_timestep=dt,
                reference=None if song.reference is None else chunk_reference(
                    song.reference, start_step, n_steps, dt, stretch, offset),
            )
        )
    return chunks


# ----------------------------------------------------------------------------------
# Files




def chunk_to_json(chunk: Chunk) -> str:
    """The JSON text `save_chunk` writes (deterministic: same chunk, same bytes)."""
    seq = chunk.midi.seq
    payload = {
        "format": CHUNK_FORMAT,
        "version": CHUNK_FORMAT_VERSION,
        "song_id": chunk.song_id,
        "index": chunk.index,
        "n_steps": chunk.n_steps,
        "lookahead_steps": chunk.lookahead_steps,
        "start_step": chunk.start_step,
        "control_timestep": chunk.control_timestep,
        "title": chunk.title,
        "total_time_s": seq.total_time,
        "note_fields": _NOTE_FIELDS,
        "notes": [[n.start_time, n.end_time, n.pitch, n.velocity, n.part] for n in seq.notes],
        "sustain": [
            [cc.time, cc.control_value] for cc in seq.control_changes if cc.control_number == SUSTAIN_CC
        ],
    }
    if chunk.reference is not None:
        payload["reference"] = chunk.reference.to_json()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n"


def save_chunk(chunk: Chunk, path: str | Path) -> None:
    atomic.write_text(path, chunk_to_json(chunk))


def load_chunk(path: str | Path) -> Chunk:
    """Read a chunk written by `save_chunk`; a missing or corrupt file raises `SongError`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SongError(f"{path}: no such chunk file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SongError(f"{path}: not a readable chunk file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHUNK_FORMAT:
        raise SongError(f"{path}: not a pianoset chunk file (no format {CHUNK_FORMAT!r})")
    if payload.get("version") != CHUNK_FORMAT_VERSION:
        raise SongError(
            f"{path}: chunk format version {payload.get('version')}, this code reads {CHUNK_FORMAT_VERSION}"
        )
    try:
        fields = payload["note_fields"]
        seq = music_pb2.NoteSequence()
        seq.ticks_per_quarter = 220
        seq.tempos.add(qpm=60.0)
        seq.sequence_metadata.title = payload["title"]
        for values in payload["notes"]:
            note = dict(zip(fields, values))
            seq.notes.add(
                start_time=note["start_s"],
                end_time=note["end_s"],
                pitch=int(note["pitch"]),
                velocity=int(note["velocity"]),
                part=int(note["part"]),
            )
        for time, value in payload["sustain"]:
            seq.control_changes.add(time=time, control_number=SUSTAIN_CC, control_value=int(value))
        seq.total_time = payload["total_time_s"]
        return Chunk(
            song_id=str(payload["song_id"]),
            index=int(payload["index"]),
            n_steps=int(payload["n_steps"]),
            lookahead_steps=int(payload["lookahead_steps"]),
            title=str(payload["title"]),
            midi=MidiFile(seq=seq),
            start_step=int(payload["start_step"]),
            control_timestep=float(payload["control_timestep"]),
            reference=(ChunkReference.from_json(payload["reference"], int(payload["n_steps"]))
                       if "reference" in payload else None),
        )
    except (KeyError, TypeError, ValueError, ReferenceError) as exc:
        raise SongError(f"{path}: corrupt chunk file ({type(exc).__name__}: {exc})") from exc


def chunk_path(out_dir: str | Path, song_id: str, index: int) -> Path:
    return Path(out_dir) / song_id / f"chunk-{index:03d}.json"


def write_song_chunks(song: Song, out_dir: str | Path, **chunk_options) -> list[Path]:
    """Write <out_dir>/<song_id>/chunk-000.json ... (atomic, idempotent).

    Files whose content is already right are left alone; chunk files beyond the
    song's chunk count (from other chunking options) are removed.
    `chunk_options` go to `make_chunks`.
    """
    chunks = make_chunks(song, **chunk_options)
    paths = []
    for chunk in chunks:
        path = chunk_path(out_dir, song.song_id, chunk.index)
        text = chunk_to_json(chunk)
        if not (path.is_file() and path.read_text(encoding="utf-8") == text):
            atomic.write_text(path, text)
        paths.append(path)
    keep = {p.name for p in paths}
    for stale in (Path(out_dir) / song.song_id).glob("chunk-*.json"):
        if stale.name not in keep:
            stale.unlink()
    return paths
