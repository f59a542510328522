"""envs.atomic: a reader sees the old file or folder or the whole new one, never a part."""

from __future__ import annotations

import os

import numpy as np
import pytest

from envs import atomic


def test_write_json_and_text_replace_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic.write_json(path, {"x": 1})
    assert path.read_text() == '{\n "x": 1\n}\n'
    atomic.write_text(path, "new")
    assert path.read_text() == "new"
    assert oct(path.stat().st_mode & 0o777) == oct(atomic.FILE_MODE)
    assert os.listdir(path.parent) == ["a.json"]


def test_write_with_keeps_the_suffix_for_writers_that_go_by_it(tmp_path):
    path = tmp_path / "arrays.npz"
    atomic.write_with(path, lambda tmp: np.savez(tmp, a=np.arange(3)))  # np.savez appends .npz otherwise
    with np.load(path) as data:
        assert data["a"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["arrays.npz"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.write_with(path, broken)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("exchange", [True, False])
def test_staged_dir_swaps_in_whole_or_not_at_all(tmp_path, monkeypatch, exchange):
    if not exchange:  # file systems without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    final = tmp_path / "folder"
    with atomic.staged_dir(final) as staging:
        (staging / "f").write_text("one")
        assert not final.exists()
    assert (final / "f").read_text() == "one"
    with pytest.raises(ValueError):
        with atomic.staged_dir(final) as staging:
            (staging / "f").write_text("two")
            raise ValueError("bad input")
    assert (final / "f").read_text() == "one"
    with atomic.staged_dir(final) as staging:
        (staging / "g").write_text("three")
    assert sorted(os.listdir(final)) == ["g"]
    assert os.listdir(tmp_path) == ["folder"]  # no staging or old folder left
