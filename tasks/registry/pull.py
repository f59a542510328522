"""Versions, and pulling versioned song shards (only the songs asked for), checked against their manifests, swapped in whole."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from envs import atomic
from tasks.names import SONG_MANIFEST as MANIFEST_NAME
from tasks.registry.dvc import RegistryError, git, git_root, quiet_dvc, run

logger = logging.getLogger(__name__)


def list_versions(repo: str | Path) -> list[str]:
    """The git tags of `repo` (the published versions), in version order (v2 < v10)."""
    root = git_root(repo)
    out = git(root, "tag", "--list", "--sort=version:refname", what="git tag --list")
    return out.split()


# ----------------------------------------------------------------------------- pull


def resolve_rev(root: Path, rev: str) -> str:
    found = run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root, check=False)
    if not rev or found.returncode != 0:
        tags = list_versions(root)
        raise RegistryError(f"revision {rev!r} does not exist in {root} (tags: {', '.join(tags) or 'none'})")
    return found.stdout.strip()


def dvc_fs(root: Path, commit: str):
    quiet_dvc()
    from dvc.api import DVCFileSystem

    return DVCFileSystem(repo=os.fspath(root), rev=commit)


def songs_to_pull(fs, shards_dir: str, rev: str, songs: Sequence[str] | None) -> list[str]:
    if not fs.isdir(shards_dir):
        raise RegistryError(f"{shards_dir} is not tracked at revision {rev!r}")
    available = sorted(Path(e["name"]).name for e in fs.ls(shards_dir, detail=True) if e["type"] == "directory")
    if songs is None:
        return available
    wanted = list(dict.fromkeys(songs))
    for song in wanted:
        if not song or "/" in song or song.startswith(".") or song != song.strip():
            raise RegistryError(f"song {song!r}: not a song folder name")
    missing = [s for s in wanted if s not in set(available)]
    if missing:
        shown = ", ".join(available[:10]) + (", ..." if len(available) > 10 else "")
        raise RegistryError(
            f"song(s) {', '.join(missing)} not in {shards_dir} at revision {rev!r} "
            f"({len(available)} songs there: {shown or 'none'})"
        )
    return wanted


def pull_song(fs, src: str, dest: Path, rev: str, remote_name: str, remote_url: str | None, verify: bool) -> Path:
    if _same_song(fs, src, dest, verify):
        logger.info("%s is already %s at %s; not downloaded again", dest, src, rev)
        return dest
    staging = dest.with_name(f".{dest.name}.pull-{uuid.uuid4().hex}")
    try:
        fs.get(src, os.fspath(staging), recursive=True)
    except Exception as exc:  # DVC raises several types for a missing remote object
        shutil.rmtree(staging, ignore_errors=True)
        raise RegistryError(
            f"song {dest.name!r} at revision {rev!r}: could not download {src} from DVC remote "
            f"{remote_name!r} ({remote_url}): {exc!r}; was that version published with push?"
        ) from exc
    try:
        _check_song(staging, dest.name, rev, verify)
        atomic.swap_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _same_song(fs, src: str, dest: Path, verify: bool) -> bool:
    """The local folder has the revision's manifest and its files match it
    (sizes; sha256 too with `verify`)."""
    local_manifest = dest / MANIFEST_NAME
    if not local_manifest.is_file() or not fs.isfile(f"{src}/{MANIFEST_NAME}"):
        return False
    if fs.cat_file(f"{src}/{MANIFEST_NAME}") != local_manifest.read_bytes():
        return False
    import tasks.rlds as shards  # lazy: TensorFlow

    return shards.is_complete(dest, verify=verify)


def _check_song(folder: Path, song: str, rev: str, verify: bool) -> None:
    """A pulled folder with a manifest must match it; a folder without one is
    not a shard folder and is returned as is (logged)."""
    if not (folder / MANIFEST_NAME).is_file():
        logger.warning("song %s at %s has no %s; not checked", song, rev, MANIFEST_NAME)
        return
    import tasks.rlds as shards  # lazy: TensorFlow

    try:
        shards.read_manifest(folder, verify=verify)
    except shards.ShardError as exc:
        raise RegistryError(f"song {song!r} at revision {rev!r}: downloaded files do not match the manifest: {exc}")
