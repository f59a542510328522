"""Offset estimation, note files, the demonstration folder format."""

import json

import numpy as np
import pytest

from envs import atomic
from envs.music.songs import load_song
from envs.music.video import demo
from envs.music.video.notes import Note, estimate_offset, load_notes, onset_f1, write_midi, write_note_sequence


def melody(rng: np.random.Generator, n: int = 60) -> list[Note]:
    starts = np.cumsum(rng.uniform(0.1, 0.5, n))
    return [Note(float(s), float(s) + 0.2, int(p)) for s, p in zip(starts, rng.integers(48, 84, n))]


def test_offset_found_despite_jitter_missing_and_extra_notes():
    rng = np.random.default_rng(0)
    reference = melody(rng)
    heard = [Note(n.start + 1.234 + rng.normal(0, 0.005), n.end + 1.234, n.pitch) for n in reference[5:]]
    heard += [Note(float(t), float(t) + 0.1, int(p)) for t, p in zip(rng.uniform(0, 20, 15), rng.integers(48, 84, 15))]
    estimate = estimate_offset(reference, sorted(heard, key=lambda n: n.start))
    assert estimate.offset_s == pytest.approx(1.234, abs=0.005)
    assert estimate.matched_fraction == pytest.approx(55 / 60)
    assert estimate.runner_up_votes < 0.5


def test_offset_needs_a_pitch_in_common():
    with pytest.raises(ValueError, match="no pitch in common"):
        estimate_offset([Note(0, 1, 60)], [Note(0, 1, 61)])


def test_onset_f1_is_mir_evals():
    ref = [Note(0.0, 0.5, 60), Note(1.0, 1.5, 62)]
    assert onset_f1(ref, [Note(0.03, 0.2, 60), Note(1.2, 1.5, 62)]) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_midi_and_note_sequence_round_trip_with_fingering(tmp_path):
    notes = [Note(0.0, 0.5, 60, 70), Note(0.5, 1.0, 64, 80), Note(0.5, 1.0, 48, 90)]
    write_midi(notes, tmp_path / "n.mid")
    back = load_notes(tmp_path / "n.mid")
    assert [(n.start, n.pitch, n.velocity) for n in back] == [(0.0, 60, 70), (0.5, 48, 90), (0.5, 64, 80)]
    write_note_sequence(notes, [1, 3, 6], tmp_path / "n.proto")
    song = load_song(str(tmp_path / "n.proto"))
    assert song.has_fingering()
    assert sorted((n.pitch, n.part) for n in song.midi.seq.notes) == [(48, 6), (60, 1), (64, 3)]


def test_load_notes_names_the_file(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    with pytest.raises(ValueError, match="bad.mid"):
        load_notes(bad)


def test_npz_is_byte_identical_and_loads(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([True, False])}
    demo.write_npz(tmp_path / "1.npz", arrays)
    demo.write_npz(tmp_path / "2.npz", arrays)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    with np.load(tmp_path / "1.npz") as data:
        np.testing.assert_array_equal(data["a"], arrays["a"])


def test_folder_appears_complete_or_not_at_all(tmp_path):
    final = tmp_path / "demo"
    with pytest.raises(RuntimeError):
        with atomic.staged_dir(final) as staging:
            (staging / "x.txt").write_text("x")
            raise RuntimeError("the video ended early")
    assert not final.exists() and not list(tmp_path.iterdir())
    with atomic.staged_dir(final) as staging:
        (staging / "x.txt").write_text("x")
        manifest = demo.write_manifest(staging, {"notes": 0})
    assert [f["path"] for f in manifest["files"]] == ["x.txt"]
    assert json.loads((final / demo.MANIFEST).read_text())["format"] == demo.FORMAT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    with pytest.raises(demo.DemoError, match="demonstration.json missing"):
        demo.read_demonstration(final)
    with pytest.raises(demo.DemoError, match="no manifest.json"):
        demo.read_demonstration(tmp_path)
