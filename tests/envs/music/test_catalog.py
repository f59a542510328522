"""The song catalog: rows, bad files, cache, files on disk, filters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import envs.music.catalog_build as catalog
from envs.music.catalog import CatalogRow, filter_catalog, load_catalog
from envs.music.catalog_build import build_catalog, build_catalog_report
from envs.music.scores import music21_corpus_root
from envs.music.songs import SongError, load_song
from tests.envs.music.test_songs import MELODY, write_midi


@pytest.fixture()
def midi_dir(tmp_path):
    """Three good songs (one in a subfolder), one unreadable, one unplayable, one non-MIDI file."""
    root = tmp_path / "my midi"
    (root / "sub").mkdir(parents=True)
    write_midi(root / "melody.mid", MELODY)  # 2 s -> 2.5 s stretched
    write_midi(root / "sub" / "chords.midi", [(60, 0.0, 1.0), (64, 0.0, 1.0), (67, 0.0, 1.0)])
    write_midi(root / "long.mid", [(60 + i % 12, i * 1.0, i * 1.0 + 0.9) for i in range(30)])  # 29.9 s
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    write_midi(root / "cluster.mid", [(40 + 3 * i, 0.5, 1.5) for i in range(11)])
    (root / "README.txt").write_text("not a song")
    return root


def _by_name(rows):
    return {Path(r.ref).name: r for r in rows}


def test_midi_directory_with_a_bad_file(midi_dir, tmp_path):
    out = tmp_path / "catalog"
    rows = build_catalog([str(midi_dir)], out_dir=out, workers=1)
    by_name = _by_name(rows)
    assert sorted(by_name) == ["broken.mid", "chords.midi", "cluster.mid", "long.mid", "melody.mid"]

    melody = by_name["melody.mid"]
    assert melody.playable and melody.reason == ""
    assert (melody.source, melody.title, melody.n_notes, melody.max_polyphony) == ("midi", "melody", 4, 1)
    assert melody.duration_s == pytest.approx(2.5)  # 2 s x 1.25
    assert melody.n_chunks == 1
    assert melody.id == load_song(melody.ref).song_id
    assert by_name["chords.midi"].max_polyphony == 3
    # 29.9 s x 1.25 = 37.375 s = 748 steps = 550 + 198.
    assert by_name["long.mid"].n_chunks == 2

    broken = by_name["broken.mid"]
    assert not broken.playable and broken.id == "" and broken.n_chunks == 0
    assert "broken.mid: not a readable MIDI file" in broken.reason
    cluster = by_name["cluster.mid"]
    assert not cluster.playable and cluster.id != "" and cluster.max_polyphony == 11
    assert "cluster.mid: 11 simultaneous notes at 0.50 s, the hands have 10 fingers" in cluster.reason

    # One catalog file for this directory, same rows when read back.
    files = sorted(out.glob("*.jsonl"))
    assert len(files) == 1 and files[0].name.startswith("midi-my-midi-")
    assert load_catalog(out) == rows
    assert json.loads(files[0].read_text().splitlines()[0])["ref"] == broken.ref  # sorted by ref


def test_second_build_is_served_from_the_cache(midi_dir, tmp_path):
    out = tmp_path / "catalog"
    calls = []
    first = build_catalog_report([str(midi_dir)], out_dir=out, workers=1, progress=lambda d, t: calls.append((d, t)))
    assert (first.n_jobs, first.n_cached, first.n_converted) == (5, 0, 5)
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)

    second = build_catalog_report([str(midi_dir)], out_dir=out, workers=1)
    assert (second.n_cached, second.n_converted) == (5, 0)
    assert second.rows == first.rows

    # A changed file (new mtime and size) is converted again, and only it.
    write_midi(midi_dir / "melody.mid", MELODY + [(67, 2.0, 3.0)])
    third = build_catalog_report([str(midi_dir)], out_dir=out, workers=1)
    assert (third.n_cached, third.n_converted) == (4, 1)
    assert _by_name(third.rows)["melody.mid"].n_notes == 5


def test_process_pool_gives_the_same_rows(midi_dir, tmp_path):
    serial = build_catalog([str(midi_dir)], out_dir=tmp_path / "a", workers=1)
    parallel = build_catalog_report([str(midi_dir)], out_dir=tmp_path / "b", workers=2)
    assert parallel.n_converted == 5
    assert parallel.rows == serial


def test_missing_source_raises_before_any_work(tmp_path):
    with pytest.raises(SongError, match=r"nowhere: no such file or directory \(sources are robopianist, music21"):
        build_catalog(["robopianist", str(tmp_path / "nowhere")], out_dir=tmp_path / "catalog")
    assert not (tmp_path / "catalog").exists()


def test_robopianist_source(tmp_path):
    rows = build_catalog(["robopianist"], out_dir=tmp_path, workers=1)
    assert len(rows) == 8 and all(r.playable for r in rows)
    twinkle = next(r for r in rows if r.ref == "robopianist:TwinkleTwinkleRousseau")
    assert twinkle.has_fingering and twinkle.n_notes == 34 and twinkle.n_chunks == 1
    assert (tmp_path / "robopianist.jsonl").is_file()


def test_music21_source_with_collections_and_timeouts(tmp_path, monkeypatch):
    root = music21_corpus_root()
    files = [root / "bach/bwv66.6.mxl", root / "josquin/adieuMesAmours.abc", root / "monteverdi/madrigal.3.13.rntxt"]
    monkeypatch.setattr(catalog, "music21_corpus_files", lambda: files)
    out = tmp_path / "catalog"
    rows = build_catalog(["music21"], out_dir=out, workers=1)
    by_ref = {r.ref: r for r in rows}
    assert sorted(by_ref) == [
        "music21:bach/bwv66.6.mxl",
        "music21:josquin/adieuMesAmours.abc",  # four ABC voices merged into one piece
        "music21:monteverdi/madrigal.3.13.rntxt",
    ]
    bach = by_ref["music21:bach/bwv66.6.mxl"]
    assert bach.playable and bach.max_polyphony == 4 and bach.duration_s == pytest.approx(28.125)
    assert by_ref["music21:josquin/adieuMesAmours.abc"].max_polyphony == 4
    assert "roman-numeral analysis" in by_ref["music21:monteverdi/madrigal.3.13.rntxt"].reason

    # A file over its time limit becomes a row saying so, and a later build with
    # more time converts it again.
    monkeypatch.setattr(catalog, "music21_corpus_files", lambda: files[:1])
    slow = build_catalog_report(["music21"], out_dir=tmp_path / "slow", workers=1, timeout_s=1e-4)
    assert "took more than 0.0001 s of CPU time" in slow.rows[0].reason and not slow.rows[0].playable
    again = build_catalog_report(["music21"], out_dir=tmp_path / "slow", workers=1, timeout_s=1e-4)
    assert again.n_cached == 1
    more = build_catalog_report(["music21"], out_dir=tmp_path / "slow", workers=1, timeout_s=60)
    assert more.n_converted == 1 and more.rows[0].playable


def test_limit_and_several_sources(midi_dir, tmp_path):
    out = tmp_path / "catalog"
    rows = build_catalog(["robopianist", str(midi_dir)], out_dir=out, workers=1, limit=2)
    assert sorted(r.source for r in rows) == ["midi", "midi", "robopianist", "robopianist"]
    assert len(list(out.glob("*.jsonl"))) == 2
    assert len(load_catalog(out)) == 4


def test_load_catalog_errors(tmp_path):
    with pytest.raises(SongError, match=r"no catalog files"):
        load_catalog(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"id": "abc"\n')
    with pytest.raises(SongError, match=r"x\.jsonl:1: not a catalog row"):
        load_catalog(tmp_path)


def _row(ref, source="midi", title="t", playable=True, duration=10.0):
    return CatalogRow(
        id=ref[-4:], source=source, title=title, ref=ref, duration_s=duration, n_notes=1,
        max_polyphony=1, n_chunks=1, playable=playable, reason="" if playable else "bad",
    )


def test_filter_catalog():
    rows = [
        _row("robopianist:Twinkle", "robopianist", "Twinkle Twinkle"),
        _row("music21:bach/bwv66.6.mxl", "music21", "bwv66.6", duration=28.1),
        _row("music21:bach/bwv1.6.mxl", "music21", "Wie schön", playable=False),
        _row("songs/Bach prelude.mid", "midi", "Bach prelude", duration=100.0),
    ]
    assert [r.ref for r in filter_catalog(rows, source="music21")] == [rows[1].ref, rows[2].ref]
    assert [r.ref for r in filter_catalog(rows, playable=False)] == [rows[2].ref]
    assert [r.ref for r in filter_catalog(rows, query="BACH")] == [r.ref for r in rows[1:]]
    assert [r.ref for r in filter_catalog(rows, query="bach prelude")] == [rows[3].ref]
    assert [r.ref for r in filter_catalog(rows, query="bach", max_duration=30, playable=True)] == [rows[1].ref]
    assert rows[0].as_dict()["ref"] == "robopianist:Twinkle"
    assert CatalogRow.from_dict(rows[0].as_dict()) == rows[0]


def test_catalog_files_are_written_atomically(midi_dir, tmp_path):
    out = tmp_path / "catalog"
    build_catalog([str(midi_dir)], out_dir=out, workers=1)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert os.listdir(out / "cache")  # one entry per file
