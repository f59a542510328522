"""PianoMime's goal autoencoder pre-trained on a song folder (App. G): the goals are the songs'
distinct goals, a bad file is recorded and skipped, the same songs reuse the saved folder, other
songs give another, and the catalog files of the user are left alone."""

from __future__ import annotations

import json

import numpy as np
import pretty_midi
import pytest

from agents.sdf import load_autoencoder
from envs.piano.spec import N_KEYS
from tasks.benchmark import BenchmarkConfig, Method
from tasks.benchmark.sdf import pretrain_sdf, song_goals

LOWEST_MIDI_PITCH = 21  # key 0 of the 88 is A0


def write_midi(path, chords):
    """One chord per 0.5 s (each a list of MIDI pitches), held 0.4 s."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i, chord in enumerate(chords):
        piano.notes += [pretty_midi.Note(velocity=80, pitch=p, start=0.5 * i, end=0.5 * i + 0.4) for p in chord]
    midi.instruments.append(piano)
    midi.write(str(path))


def goal(*pitches):
    row = np.zeros(N_KEYS, dtype=bool)
    row[[p - LOWEST_MIDI_PITCH for p in pitches]] = True
    return row


@pytest.fixture
def songs(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    write_midi(folder / "a.mid", [[60], [64, 67], [60]])
    write_midi(folder / "b.mid", [[48, 52, 55], [72]])
    (folder / "broken.mid").write_bytes(b"not a midi file")
    return folder


def test_song_goals_are_the_distinct_key_sets_of_its_steps(songs):
    got = {tuple(np.flatnonzero(g)) for g in song_goals(str(songs / "a.mid"))}
    expected = {tuple(np.flatnonzero(g)) for g in (goal(60), goal(64, 67), np.zeros(N_KEYS, bool))}
    assert got == expected  # C4, then E4+G4, and the silent steps between notes


def test_pretraining_learns_the_songs_goals_skips_the_bad_file_and_is_reused(songs, tmp_path):
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "robopianist.jsonl").write_text("user's catalog\n")
    first = pretrain_sdf([str(songs)], tmp_path / "policies", catalog_dir=catalog, max_steps=300, seed=0)
    assert not first["reused"] and first["songs"] == 2 and first["skipped"] == 1
    assert first["goals"] == 5  # {C4}, {E4 G4}, {C3 E3 G3}, {C5}, silence
    assert first["final_rmse_m"] < 0.5 * first["initial_rmse_m"]
    meta = json.loads((tmp_path / "policies" / first["sdf_key"] / "sdf.json").read_text())
    assert [s["ref"] for s in meta["skipped"]] == [str(songs / "broken.mid")] and meta["skipped"][0]["reason"]
    autoencoder = load_autoencoder(first["sdf_dir"])
    assert autoencoder.encode(goal(64, 67)[None].astype(np.float32)).shape == (1, 16)
    again = pretrain_sdf([str(songs)], tmp_path / "policies", catalog_dir=catalog, max_steps=300, seed=0)
    assert again["reused"] and again["sdf_dir"] == first["sdf_dir"]
    write_midi(songs / "c.mid", [[62, 65]])
    more = pretrain_sdf([str(songs)], tmp_path / "policies", catalog_dir=catalog, max_steps=300, seed=0)
    assert not more["reused"] and more["sdf_key"] != first["sdf_key"] and more["songs"] == 3
    assert (catalog / "robopianist.jsonl").read_text() == "user's catalog\n"  # the user's catalog is untouched


def test_no_playable_song_is_an_error_that_names_the_sources(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "broken.mid").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"pretrain_sdf: the sources .*empty.* hold no playable song"):
        pretrain_sdf([str(folder)], tmp_path / "policies", catalog_dir=tmp_path / "catalog", max_steps=5)


def test_the_pretrained_autoencoder_goes_to_the_pianomime_methods_with_an_sdf_goal_only():
    methods = (Method("Two-stage Diff", "pianomime"), Method("w/o SDF", "pianomime", {"goal_encoding": "binary"}),
               Method("own", "pianomime", {"sdf_dir": "elsewhere"}), Method("BC", "bc"))
    config = BenchmarkConfig(methods=methods, sdf_sources=("robopianist",))
    given = {m.label: dict(m.config).get("sdf_dir") for m in config.trained_methods("policies/sdf-1")}
    assert given == {"Two-stage Diff": "policies/sdf-1", "w/o SDF": None, "own": "elsewhere", "BC": None}
    assert [m.config for m in BenchmarkConfig(methods=methods).trained_methods(None)] == [m.config for m in methods]
    with pytest.raises(ValueError, match=r"benchmark: sdf_sources='robopianist', expected a list"):
        BenchmarkConfig(sdf_sources="robopianist")
