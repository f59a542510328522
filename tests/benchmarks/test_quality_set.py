"""The shipped params.yaml's `quality:` section read through benchmarks/quality_set.py (what the
benchmark itself reads): the split, the selection, and that every listed song exists offline."""

from pathlib import Path

import pytest

from benchmarks.quality_set import SETS, load_chunk, load_quality_set, select
from benchmarks.written_pieces import PIECES, PREFIX
from envs.music.scores import music21_corpus_root

PROJECT = Path(__file__).resolve().parents[2]


def test_shipped_section_lists_the_fixed_split():
    listed, section = load_quality_set(PROJECT / "params.yaml")
    dev, holdout = select(listed, "dev", None), select(listed, "holdout", None)
    assert len(dev) == 11 and len(holdout) == 8 and len(listed) == 19
    assert [c.set for c in listed] == ["dev"] * 11 + ["holdout"] * 8  # dev first, in file order
    assert {c.set for c in listed} == set(SETS)
    assert len({c.slug for c in listed}) == len(listed)  # result files never collide
    assert all(c.why for c in listed)
    assert section["rollouts"] >= 1 and section["work_dir"] and section["reports_dir"]
    assert select(listed, "all", None) == listed
    named = select(listed, "all", [holdout[0].spec, "robopianist:CMajorScaleTwoHands:1"])
    assert named[0] == holdout[0] and named[1].set == "extra"


def test_every_listed_song_exists_offline():
    from robopianist import music

    listed, _ = load_quality_set(PROJECT / "params.yaml")
    root = music21_corpus_root()
    for chunk in listed:
        source, name = chunk.ref.split(":", 1)
        if source == "music21":
            assert (root / name).is_file() or list((root / name).parent.glob(Path(name).name + ".*")), chunk.ref
        elif source == "robopianist":
            assert name in music.DEBUG_MIDIS + music.PIG_MIDIS, chunk.ref
        else:
            assert f"{source}:" == PREFIX and name in PIECES, chunk.ref


def test_a_written_chunk_loads(tmp_path):
    listed, _ = load_quality_set(PROJECT / "params.yaml")
    entry = next(c for c in listed if c.ref.startswith(PREFIX))
    chunk = load_chunk(entry, tmp_path, max_steps=30)
    assert chunk.n_steps == 30
    with pytest.raises(SystemExit, match="chunk 99 does not exist"):
        load_chunk(type(entry)(entry.ref, 99, entry.set), tmp_path)
