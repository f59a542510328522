"""Songs: loading from the three sources, content ids, playability errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pretty_midi
import pytest
from note_seq import music_pb2

from envs.music.songs import (
    MAX_SIMULTANEOUS_NOTES,
    Song,
    SongError,
    load_song,
    song_id_of,
    song_stats,
    validate_song,
)


def write_midi(path: Path, notes, *, drums=(), sustain=()) -> Path:
    """notes: (pitch, start_s, end_s[, velocity]); sustain: (time_s, value)."""
    pm = pretty_midi.PrettyMIDI(resolution=1000, initial_tempo=120.0)  # 1 tick = 0.5 ms
    piano = pretty_midi.Instrument(program=0)
    for pitch, start, end, *velocity in notes:
        velocity = velocity[0] if velocity else 80
        piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=end))
    for time, value in sustain:
        piano.control_changes.append(pretty_midi.ControlChange(number=64, value=value, time=time))
    pm.instruments.append(piano)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        for pitch, start, end in drums:
            kit.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=start, end=end))
        pm.instruments.append(kit)
    pm.write(str(path))
    return path


MELODY = [(60, 0.0, 0.5), (62, 0.5, 1.0), (64, 1.0, 1.5), (65, 1.5, 2.0)]


# --- MIDI files and content ids ----------------------------------------------------


def test_midi_file_loads_with_path_as_ref(tmp_path):
    path = write_midi(tmp_path / "little_tune.mid", MELODY, drums=[(36, 0.0, 0.1)])
    song = load_song(str(path))
    assert song.source == "midi"
    assert song.ref == str(path)
    assert song.title == "little tune"
    assert [n.pitch for n in song.midi.seq.notes] == [60, 62, 64, 65]  # drum note dropped
    assert song.midi.seq.notes[2].start_time == pytest.approx(1.0)
    stats = song_stats(song)
    assert (stats.n_notes, stats.max_polyphony) == (4, 1)
    assert stats.duration_s == pytest.approx(2.0)


def test_song_id_depends_on_content_not_file_name(tmp_path):
    a = write_midi(tmp_path / "a.mid", MELODY)
    b = tmp_path / "sub" / "renamed copy.midi"
    b.parent.mkdir()
    shutil.copy(a, b)
    c = write_midi(tmp_path / "a_louder.mid", [(p, s, e, 100) for p, s, e in MELODY])
    d = write_midi(tmp_path / "a_moved.mid", [(p, s + 0.25, e + 0.25) for p, s, e in MELODY])
    ids = [load_song(str(p)).song_id for p in (a, b, c, d)]
    assert ids[0] == ids[1]
    assert len(set(ids)) == 3
    assert len(ids[0]) == 12 and int(ids[0], 16) >= 0


def test_song_id_ignores_note_order():
    seq1, seq2 = music_pb2.NoteSequence(), music_pb2.NoteSequence()
    for pitch, start, end in MELODY:
        seq1.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=80)
    for pitch, start, end in reversed(MELODY):
        seq2.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=80)
    assert song_id_of(seq1) == song_id_of(seq2)


def test_proto_and_pig_files(tmp_path):
    seq = music_pb2.NoteSequence()
    seq.notes.add(pitch=60, start_time=0.0, end_time=1.0, velocity=80, part=0)
    seq.notes.add(pitch=48, start_time=0.0, end_time=1.0, velocity=80, part=9)
    seq.sequence_metadata.title = "Proto song"
    (tmp_path / "p.proto").write_bytes(seq.SerializeToString())
    proto = load_song(str(tmp_path / "p.proto"))
    assert proto.title == "Proto song" and proto.has_fingering()

    pig = tmp_path / "001-1_fingering.txt"
    pig.write_text(
        "//Version: PianoFingering_v170101\n"
        "0\t0.0\t0.5\tC4\t64\t80\t0\t1\n"  # right thumb -> 0
        "1\t0.0\t0.5\tC3\t64\t80\t1\t-5\n"  # left little -> 9
        "2\t0.5\t1.0\tD#4\t64\t80\t0\t3_2\n"  # substitution: first finger kept -> 2
    )
    song = load_song(str(pig))
    assert [(n.pitch, n.part) for n in song.midi.seq.notes] == [(48, 9), (60, 0), (63, 2)]
    assert song.has_fingering()


# --- bad inputs: SongError names the file and the problem ---------------------------


def test_random_bytes_are_not_midi(tmp_path):
    path = tmp_path / "noise.mid"
    path.write_bytes(bytes([7, 200, 13, 0, 255, 1, 2, 3, 4, 5]))
    with pytest.raises(SongError, match=r"noise\.mid: not a readable MIDI file"):
        load_song(str(path))


def test_truncated_midi(tmp_path):
    good = write_midi(tmp_path / "good.mid", MELODY * 20)
    data = good.read_bytes()
    cut = tmp_path / "cut.mid"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SongError, match=r"cut\.mid: not a readable MIDI file, it is truncated or corrupt"):
        load_song(str(cut))


def test_empty_midi(tmp_path):
    path = write_midi(tmp_path / "empty.mid", [])
    song = load_song(str(path), validate=False)
    assert song.n_notes == 0
    with pytest.raises(SongError, match=r"empty\.mid: no notes"):
        load_song(str(path))


def test_notes_off_the_keyboard(tmp_path):
    some = write_midi(tmp_path / "high.mid", MELODY + [(110, 3.0, 3.5)])
    with pytest.raises(SongError, match=r"high\.mid: 1 of 5 notes are off the 88-key piano .* pitch 110 at 3\.00 s"):
        load_song(str(some))
    everything = write_midi(tmp_path / "low.mid", [(10, 0.0, 1.0), (20, 1.0, 2.0)])
    with pytest.raises(SongError, match=r"low\.mid: all notes are off the 88-key piano"):
        load_song(str(everything))


def test_eleven_simultaneous_notes(tmp_path):
    chord = [(48 + 2 * i, 1.0, 2.0) for i in range(11)]
    path = write_midi(tmp_path / "cluster.mid", MELODY[:2] + chord)
    with pytest.raises(SongError) as info:
        load_song(str(path))
    message = str(info.value)
    assert "cluster.mid: 11 simultaneous notes at 1.00 s" in message
    assert f"the hands have {MAX_SIMULTANEOUS_NOTES} fingers" in message


def test_polyphony_counts_keys_not_voices_nor_legato_overlaps(tmp_path):
    ten = [(48 + 2 * i, 1.0, 2.0) for i in range(10)]
    # A unison (same key in two voices) is one key; a note that ends 10 ms after
    # the chord starts is a legato overlap (below the 25 ms tolerance).
    path = write_midi(tmp_path / "ten.mid", ten + [(48, 1.0, 1.5), (90, 0.5, 1.01)])
    song = load_song(str(path))
    assert song_stats(song).max_polyphony == 10
    late = write_midi(tmp_path / "late.mid", ten + [(90, 0.5, 1.05)])  # 50 ms: counts
    with pytest.raises(SongError, match=r"late\.mid: 11 simultaneous notes at 1\.00 s"):
        load_song(str(late))


def test_missing_path_and_wrong_kind(tmp_path):
    with pytest.raises(SongError, match=r"nowhere\.mid: no such file"):
        load_song(str(tmp_path / "nowhere.mid"))
    with pytest.raises(SongError, match=r"is a directory"):
        load_song(str(tmp_path))
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(SongError, match=r"notes\.txt: unsupported file type \.txt"):
        load_song(str(other))


def test_validate_song_names_the_ref():
    seq = music_pb2.NoteSequence()
    song = Song(song_id=song_id_of(seq), source="midi", title="x", ref="some/ref.mid", midi=_midi(seq))
    with pytest.raises(SongError, match=r"^some/ref\.mid: no notes$"):
        validate_song(song)


def _midi(seq):
    from robopianist.music.midi_file import MidiFile

    return MidiFile(seq=seq)


# --- robopianist library ----------------------------------------------------------------


def test_robopianist_library_song_with_fingering():
    song = load_song("robopianist:TwinkleTwinkleRousseau")
    assert song.source == "robopianist"
    assert song.title == "Twinkle Twinkle (YouTube)"
    assert song.n_notes == 34
    assert song.has_fingering()
    assert load_song("robopianist:TwinkleTwinkleRousseau").song_id == song.song_id


def test_unknown_robopianist_song():
    with pytest.raises(SongError, match=r"robopianist:NoSuchSong: no such song .*known: .*CMajorScaleOneHand"):
        load_song("robopianist:NoSuchSong")


# --- music21 corpus ---------------------------------------------------------------------


def test_music21_bach_chorale():
    song = load_song("music21:bach/bwv66.6")
    assert song.ref == "music21:bach/bwv66.6.mxl"
    assert song.source == "music21"
    assert song.title == "bwv66.6"
    stats = song_stats(song)
    # Four voices; 45 quarter notes at music21's default 120 quarters per minute.
    assert stats.max_polyphony == 4
    assert stats.duration_s == pytest.approx(22.5)
    assert stats.n_notes > 100
    assert load_song(song.ref).song_id == song.song_id


def test_music21_folk_tune_from_a_collection():
    song = load_song("music21:essenFolksong/altdeu10.abc#4")
    assert song.title == "Herzog Ernst"
    assert song_stats(song).max_polyphony == 1
    with pytest.raises(SongError, match=r"altdeu10\.abc: a collection of 313 tunes; name one as .*#<number>"):
        load_song("music21:essenFolksong/altdeu10.abc")


def test_music21_badly_formed_repeats_are_played_once():
    # music21 cannot expand this reel's repeats; it is still converted.
    song = load_song("music21:ryansMammoth/KittyInTheLaneReel")
    assert song.n_notes > 50


def test_music21_analysis_and_missing_files():
    with pytest.raises(SongError, match=r"roman-numeral analysis"):
        load_song("music21:monteverdi/madrigal.3.13.rntxt")
    with pytest.raises(SongError, match=r"music21:bach/no_such_piece: no such file in the music21 corpus"):
        load_song("music21:bach/no_such_piece")


def test_abc_voices_versus_tune_collections():
    from envs.music.scores import _abc_voices_of_one_piece

    josquin = [("1", ["Fortuna dun gran tempo"]), ("2", ["Fortuna dun gran tempo", "Tenor"]),
               ("3", ["Fortuna dun gran tempo", "Bassus"])]
    assert _abc_voices_of_one_piece(josquin)
    variants = [(str(i), ["Graf und Nonne (Die Nonne)"]) for i in range(1, 94)]  # essen ballad80
    assert not _abc_voices_of_one_piece(variants)
    book = [("1", ["Herzog Ernst"]), ("2", ["Es wohnet ein Markgraf", "Var."])]
    assert not _abc_voices_of_one_piece(book)
    assert not _abc_voices_of_one_piece([("1", ["Solo", "Cantus"])])


def test_music21_runaway_repeat_expansion_is_played_once(monkeypatch):
    # A reel of 124 notated notes with its repeats: 248 notes played (13 grace
    # notes dropped). music21 expands a few folk tunes' repeats 100-fold (O'Neill
    # #1046, Morgan Rattler: 496 notes -> 50,498, which takes minutes to render);
    # past MAX_REPEAT_EXPANSION the tune is played once through. Shown here with
    # a lower factor so that this reel trips it.
    import envs.music.scores as scores

    assert load_song("music21:ryansMammoth/AcaciaReel").n_notes == 248
    monkeypatch.setattr(scores, "MAX_REPEAT_EXPANSION", 1.5)
    assert load_song("music21:ryansMammoth/AcaciaReel").n_notes == 124
