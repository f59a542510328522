"""Chunking as RP1M: stretch 1.25, trim silence, 550-step episodes with lookahead context.

The hand-made song below is written in *unstretched* seconds; with the 1.25
stretch, 0.04 s of MIDI time is one 0.05 s control step. It starts with 4 steps
of silence (trimmed away). In trimmed steps:

    A  60  [0, 10)       chunk 0
    C  64  [540, 600)    chunk 0, crosses the end: sounds into the context until 560
    B  62  [545, 556)    chunk 0, crosses the end, ends inside the context
    D  65  [555, 565)    chunk 1 at [5, 15); also chunk 0's context at [555, 560)
    E  67  [565, 570)    chunk 1 at [15, 20), after chunk 0's window
    F  69  [1100, 1105)  chunk 1 at [550, 555): the 10-step tail was merged
    G  71  [1105, 1110)  chunk 1 at [555, 560); the song is 1110 steps
    pedal down at 540, up at 600

So: 1110 = 2 x 550 + 10 and 10 < 20 steps, hence two chunks of 550 and 560 steps.
"""

from __future__ import annotations

import json
import os

import pytest
from robopianist.music.midi_file import NoteTrajectory

from envs.music.chunks import (
    CHUNK_STEPS,
    CONTROL_TIMESTEP,
    LOOKAHEAD_STEPS,
    chunk_lengths,
    load_chunk,
    make_chunks,
    save_chunk,
    write_song_chunks,
)
from envs.music.songs import SongError, load_song
from tests.envs.music.test_songs import write_midi

STEP = 0.04  # unstretched seconds per control step (0.05 / 1.25)
LEAD = 4  # steps of leading silence


def _at(step: int) -> float:
    return (step + LEAD) * STEP


SONG = [
    (60, 0, 10),
    (64, 540, 600),
    (62, 545, 556),
    (65, 555, 565),
    (67, 565, 570),
    (69, 1100, 1105),
    (71, 1105, 1110),
]


@pytest.fixture()
def song(tmp_path):
    notes = [(pitch, _at(a), _at(b)) for pitch, a, b in SONG]
    path = write_midi(tmp_path / "hand_made.mid", notes, sustain=[(_at(540), 127), (_at(600), 0)])
    return load_song(str(path))


def _notes_in_steps(chunk):
    """(pitch, start step, end step) of the chunk's notes, rounded to steps."""
    return sorted(
        (n.pitch, round(n.start_time / CONTROL_TIMESTEP), round(n.end_time / CONTROL_TIMESTEP))
        for n in chunk.midi.seq.notes
    )


def test_chunk_lengths_rules():
    assert chunk_lengths(1110) == [550, 560]  # 10-step tail merged
    assert chunk_lengths(1100) == [550, 550]
    assert chunk_lengths(1120) == [550, 550, 20]  # 20 steps = 1 s: its own episode
    assert chunk_lengths(300) == [300]
    assert chunk_lengths(7) == [7]  # shorter than 1 s but the whole song
    assert chunk_lengths(569) == [569]


def test_hand_made_song_chunks(song):
    chunks = make_chunks(song)
    assert [c.n_steps for c in chunks] == [550, 560]
    assert [c.start_step for c in chunks] == [0, 550]
    assert [c.chunk_id for c in chunks] == [f"{song.song_id}-000", f"{song.song_id}-001"]
    assert all(c.lookahead_steps == LOOKAHEAD_STEPS and c.title == "hand made" for c in chunks)
    first, second = chunks
    # Own notes (A, C, B) plus D as context, cut at the end of the 560-step window.
    assert _notes_in_steps(first) == [(60, 0, 10), (62, 545, 556), (64, 540, 560), (65, 555, 560)]
    # D and E relative to step 550; F and G from the merged tail.
    assert _notes_in_steps(second) == [(65, 5, 15), (67, 15, 20), (69, 550, 555), (71, 555, 560)]
    # Exact times: 0.05 s per step, within the 1 us nudge.
    a = first.midi.seq.notes[0]
    assert a.start_time == pytest.approx(0.0, abs=2e-6) and a.end_time == pytest.approx(0.5, abs=2e-6)
    assert first.midi.seq.total_time == pytest.approx((550 + 10) * CONTROL_TIMESTEP)
    assert second.midi.seq.total_time == pytest.approx((560 + 10) * CONTROL_TIMESTEP)


def test_trajectories_cover_episode_and_context(song):
    first, second = make_chunks(song)
    traj = NoteTrajectory.from_midi(first.midi, CONTROL_TIMESTEP)
    assert len(traj) >= first.n_steps + LOOKAHEAD_STEPS

    def keys(t):
        return sorted(n.number for n in traj.notes[t])

    assert keys(0) == [60] and keys(9) == [60] and keys(10) == []
    assert keys(539) == [] and keys(540) == [64]
    assert keys(549) == [62, 64]  # last episode step
    assert keys(555) == [62, 64, 65]  # context: held notes go on, D comes in
    assert keys(559) == [64, 65]
    # Pedal: down from step 540 to the end of the window.
    assert traj.sustains[539] == 0 and traj.sustains[540] == 1 and traj.sustains[559] == 1

    traj2 = NoteTrajectory.from_midi(second.midi, CONTROL_TIMESTEP)
    assert len(traj2) >= second.n_steps + LOOKAHEAD_STEPS
    assert [n.number for n in traj2.notes[5]] == [65]
    assert [n.number for n in traj2.notes[552]] == [69]
    assert all(not traj2.notes[t] for t in range(560, len(traj2)))  # last chunk: silent context
    # The pedal was down when chunk 1 starts, and goes up at 600 - 550 = 50.
    assert traj2.sustains[0] == 1 and traj2.sustains[49] == 1 and traj2.sustains[50] == 0


def test_short_tail_gets_its_own_chunk_and_short_song_is_one_chunk(tmp_path):
    notes = [(60, _at(0), _at(10)), (62, _at(560), _at(575))]  # 575 steps = 550 + 25
    two = load_song(str(write_midi(tmp_path / "two.mid", notes)))
    assert [c.n_steps for c in make_chunks(two)] == [550, 25]
    tiny = load_song(str(write_midi(tmp_path / "tiny.mid", [(60, 1.0, 1.2)])))  # 0.25 s stretched
    (only,) = make_chunks(tiny)
    assert only.n_steps == 5 and only.start_step == 0
    assert _notes_in_steps(only) == [(60, 0, 5)]


def test_chunks_without_onsets_are_dropped(tmp_path):
    # The second note holds for 40 s: steps 550..1200 hold no onset.
    notes = [(60, _at(0), _at(10)), (62, _at(100), _at(1200))]
    song = load_song(str(write_midi(tmp_path / "long_hold.mid", notes)))
    chunks = make_chunks(song)
    assert [(c.index, c.n_steps) for c in chunks] == [(0, 550)]
    assert _notes_in_steps(chunks[0])[-1] == (62, 100, 560)


def test_options_no_stretch_no_trim(tmp_path):
    song = load_song(str(write_midi(tmp_path / "s.mid", [(60, 1.0, 2.0)])))
    (chunk,) = make_chunks(song, stretch=1.0, trim_silence=False)
    assert chunk.n_steps == 40
    assert _notes_in_steps(chunk) == [(60, 20, 40)]
    # 40 steps = 25 + 15; the note starts at step 20 in chunk 0, and steps 25-39
    # hold no onset: that chunk is dropped.
    (small,) = make_chunks(song, stretch=1.0, trim_silence=False, chunk_steps=25, min_chunk_steps=5)
    assert small.n_steps == 25
    assert _notes_in_steps(small) == [(60, 20, 35)]  # sounds on to the end of the window


def test_fingering_is_preserved():
    song = load_song("robopianist:TwinkleTwinkleRousseau")
    (chunk,) = make_chunks(song)  # 7.9 s x 1.25 = 9.8 s: one chunk
    assert chunk.midi.has_fingering()
    assert [n.part for n in chunk.midi.seq.notes] == [n.part for n in song.midi.seq.notes]
    traj = NoteTrajectory.from_midi(chunk.midi, CONTROL_TIMESTEP)
    assert {n.fingering for step in traj.notes for n in step} == {n.part for n in song.midi.seq.notes}


def test_unplayable_song_is_refused(tmp_path):
    song = load_song(str(write_midi(tmp_path / "high.mid", [(110, 0.0, 1.0)])), validate=False)
    with pytest.raises(SongError, match=r"high\.mid: all notes are off"):
        make_chunks(song)


def test_save_load_round_trip(song, tmp_path):
    chunks = make_chunks(song)
    path = tmp_path / "c.json"
    save_chunk(chunks[1], path)
    loaded = load_chunk(path)
    assert loaded == chunks[1]
    assert loaded.chunk_id == chunks[1].chunk_id
    assert path.stat().st_size < 5_000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_chunk_errors(tmp_path):
    with pytest.raises(SongError, match=r"missing\.json: no such chunk file"):
        load_chunk(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "pianoset.chunk", "vers')
    with pytest.raises(SongError, match=r"bad\.json: not a readable chunk file"):
        load_chunk(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(SongError, match=r"other\.json: not a pianoset chunk file"):
        load_chunk(other)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"format": "pianoset.chunk", "version": 1, "notes": []}))
    with pytest.raises(SongError, match=r"broken\.json: corrupt chunk file \(KeyError"):
        load_chunk(broken)


def test_write_song_chunks_is_idempotent(song, tmp_path):
    out = tmp_path / "chunks"
    paths = write_song_chunks(song, out)
    assert [p.relative_to(out).as_posix() for p in paths] == [
        f"{song.song_id}/chunk-000.json",
        f"{song.song_id}/chunk-001.json",
    ]
    mtimes = [p.stat().st_mtime_ns for p in paths]
    os.utime(paths[0], ns=(1, 1))  # a rewrite would change it
    assert write_song_chunks(song, out) == paths
    assert paths[0].stat().st_mtime_ns == 1 and paths[1].stat().st_mtime_ns == mtimes[1]
    assert load_chunk(paths[1]).n_steps == 560
    # Other options give one chunk: the stale second file goes away.
    assert write_song_chunks(song, out, chunk_steps=2 * CHUNK_STEPS) == paths[:1]
    assert sorted(p.name for p in (out / song.song_id).iterdir()) == ["chunk-000.json"]
