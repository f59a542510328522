"""Atomic file writes and folder swaps: the one guarantee every layer uses.

A reader sees the old file (or folder) or the complete new one, never a part:
content goes to a temporary name in the same folder, is flushed and fsynced,
then renamed over the final name, and the folder entry is fsynced. A folder is
built under a staging name and swapped in with Linux `renameat2(RENAME_EXCHANGE)`
(one atomic step even when the final folder exists), else renamed aside first.
This module sits at the bottom of the import order (`envs <- agents <- tasks <-
flows`) and imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FILE_MODE = 0o644  # data files are shared: readable by all


def temporary_path(path: str | Path, tag: str = "tmp") -> Path:
    """A unique hidden sibling of `path` that keeps its suffix (np.savez, savefig and ffmpeg go by it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{tag}-{uuid.uuid4().hex[:12]}{path.suffix}")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (manifests list it per file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` to produce the file at a temporary path, then move it over `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, payload: Any, *, indent: int | None = 1, **dumps_options) -> Path:
    """`payload` as JSON (a trailing newline), written atomically."""
    return write_text(path, json.dumps(payload, indent=indent, **dumps_options) + "\n")


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system does not support it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"renameat2(RENAME_EXCHANGE) {a} <-> {b}: {os.strerror(err)}")


def swap_dir(staging: str | Path, final: str | Path) -> Path:
    """Put the complete folder `staging` at `final`, replacing any folder there; the old one is removed."""
    staging, final = Path(staging), Path(final)
    if not final.exists():
        os.rename(staging, final)  # atomic; fails if another writer created `final` meanwhile
    elif _exchange(staging, final):
        shutil.rmtree(staging)  # now holds the old folder
    else:
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(final, aside)
        os.rename(staging, final)
        shutil.rmtree(aside)
    fsync_dir(final.parent)
    return final


def fsync_tree(folder: str | Path) -> None:
    """fsync every file and folder under `folder` (before it is swapped into place)."""
    folder = Path(folder)
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder under a staging name; on success it is synced and swapped in at `final`,
    on any error it is removed and `final` is left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        swap_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
