"""`envs.music.score_notes` plays a score as music21's MIDI writer does, without the MIDI round trip."""

from __future__ import annotations

import pytest

from envs.music.score_notes import TempoMap, has_repeats, score_to_sequence
from envs.music.scores import load_music21_file


def _notes(seq):
    return sorted((n.pitch, round(n.start_time, 4), round(n.end_time, 4), n.velocity) for n in seq.notes)


@pytest.mark.parametrize("ref", [
    "bach/bwv66.6.mxl",                       # MusicXML chorale, fermatas, 4 parts
    "palestrina/Kyrie_93.krn",                # Humdrum, ties across bars
    "oneills1850/0501-0550.abc#530",          # ABC tune with repeats
    "ryansMammoth/AllTheRageReel.abc",         # ABC, first/second endings
])
def test_same_notes_as_the_midi_writer(ref):
    [(_, by_notes)] = load_music21_file(ref, via="notes")
    [(_, by_midi)] = load_music21_file(ref, via="midi")
    assert by_notes.n_notes > 10
    # music21 writes ticks of 1/10080 quarter; the song id rounds to ms
    assert by_notes.song_id == by_midi.song_id
    a, b = _notes(by_notes.midi.seq), _notes(by_midi.midi.seq)
    assert [x[0] for x in a] == [x[0] for x in b]
    assert max(abs(x[1] - y[1]) + abs(x[2] - y[2]) for x, y in zip(a, b)) < 2e-3


def test_ties_tempo_changes_and_chords():
    from music21 import chord, note, stream, tempo, tie

    part = stream.Part()
    part.insert(0, tempo.MetronomeMark(number=60))
    first, second = note.Note("C4", quarterLength=2), note.Note("C4", quarterLength=1)
    first.tie, second.tie = tie.Tie("start"), tie.Tie("stop")
    part.append([first, second, note.Note("E4", quarterLength=1)])  # C4 0-3 s, E4 3-4 s
    part.insert(4, tempo.MetronomeMark(number=120))
    part.insert(4, chord.Chord(["G4", "B4"], quarterLength=2))  # 4-5 s at 120
    score = stream.Score([part])
    assert not has_repeats(score)
    seq = score_to_sequence(score)
    got = sorted((n.pitch, round(n.start_time, 6), round(n.end_time, 6)) for n in seq.notes)
    assert got == [(60, 0.0, 3.0), (64, 3.0, 4.0), (67, 4.0, 5.0), (71, 4.0, 5.0)]


def test_tempo_map_defaults_to_120_before_the_first_mark():
    seconds = TempoMap([(4.0, 60.0)])
    assert seconds(2.0) == pytest.approx(1.0) and seconds(6.0) == pytest.approx(4.0)
    assert TempoMap([])(1.0) == pytest.approx(0.5)
