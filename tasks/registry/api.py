"""The data registry's public API: ensure_dvc, register, publish, pull, the registration lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tasks.registry.dvc import (LOCK_NAME, RegistryError, acquire, configure_remote, git, git_root, init_dvc,
                                 keep_ignored, relative)
from tasks.registry.publish import check_new_tag, commit_metadata, default_message, metadata_files, push_data
from tasks.registry.pull import dvc_fs, pull_song, resolve_rev, songs_to_pull
from tasks.registry.register import all_outputs, register_outputs

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- public API


def ensure_dvc(
    repo: str | Path,
    *,
    remote_url: str | None = None,
    remote_name: str | None = None,
    lock_timeout_s: float | None = None,
) -> None:
    """`dvc init` if the git repository `repo` has no `.dvc/`, and a default
    remote if none is configured (see the module docstring). Idempotent."""
    root = git_root(repo)
    init_dvc(root)
    with registry_lock(root, lock_timeout_s):
        configure_remote(root, remote_url, remote_name)


def register(
    repo: str | Path,
    paths: Sequence[str | Path] | None = None,
    *,
    lock_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Records the current shard and specialist folders in DVC (`dvc.lock` and
    the cache), one registration at a time across processes.

    `paths`: outputs to record (or folders inside them); default the outputs
    of the `collect` stage. Returns `{"changed": bool, "outputs": {path:
    {"md5", "nfiles", "size", "changed", "entries", "added", "modified",
    "removed"}}}` where entries are the top-level folders (songs, chunks);
    added/modified/removed are None when the previous version is not in the
    local cache (a fresh clone).
    """
    root = git_root(repo)
    init_dvc(root)
    with registry_lock(root, lock_timeout_s):
        configure_remote(root)
        return register_outputs(root, paths)


def publish(
    repo: str | Path,
    tag: str,
    message: str | None = None,
    push: bool = True,
    *,
    lock_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Registers the data, pushes it to the DVC remote (unless `push=False`),
    git-commits the DVC metadata and creates the annotated tag `tag`.

    The shards must pass `tasks.registry.card.validate_shards` (else `RegistryError` naming
    each bad song folder, and nothing is recorded); the version carries the generated
    `datasets/DATASET.md`. Raises `RegistryError` naming the tag if it exists. Returns `{"tag",
    "commit", "committed", "remote", "files_pushed", "register"}`;
    `committed` is False when the metadata had not changed (the tag then
    points at HEAD), `files_pushed` None when `push=False`.
    """
    root = git_root(repo)
    check_new_tag(root, tag)
    init_dvc(root)
    with registry_lock(root, lock_timeout_s):
        check_new_tag(root, tag)  # again: another publisher may have won the lock first
        card = release_card(root)  # refuses shards that fail validation, before anything is recorded
        remote_name, remote_url = configure_remote(root)
        registered = register_outputs(root, None)
        files_pushed = push_data(root, remote_name, remote_url) if push else None
        outputs = all_outputs(root)
        keep_ignored(root, outputs)  # before the commit: the tag must hold the .gitignore lines
        message = message or default_message(tag, registered)
        commit, committed = commit_metadata(root, [*metadata_files(root, outputs), card], message)
        git(root, "tag", "--annotate", tag, "--message", message, commit, what=f"git tag {tag}")
    logger.info("published %s at %s (%s files pushed)", tag, commit[:12], files_pushed)
    return {
        "tag": tag,
        "commit": commit,
        "committed": committed,
        "remote": remote_name,
        "files_pushed": files_pushed,
        "register": registered,
        "card": card,
    }


def release_card(root: Path) -> str:
    """Validate the shards of `root`'s params.yaml collection and write its dataset card; the
    card's path relative to `root`. Raises `RegistryError` when a song folder fails."""
    from tasks.params import ParamsError, load_params
    from tasks.registry.card import ValidationError, validate_shards, write_card

    try:
        params = load_params(root / "params.yaml")
        songs = validate_shards(root / params["collect"]["shards_dir"])
    except (ParamsError, ValidationError) as exc:
        raise RegistryError(f"not publishing: {exc}") from None
    return str(write_card(root, params, songs).relative_to(root))


def pull(
    repo: str | Path,
    rev: str,
    songs: Sequence[str] | None,
    shards_dir: str | Path = "datasets/shards",
    *,
    out_dir: str | Path | None = None,
    verify: bool = False,
    lock_timeout_s: float | None = None,
) -> list[Path]:
    """Downloads the song folders `songs` (all when None) of `shards_dir` as
    of git revision `rev` into `out_dir` (default `<repo>/<shards_dir>`),
    fetching only those songs' files. Returns the song folders, in the order
    asked. `verify` also checks every file's sha256 against the manifest.

    Raises `RegistryError` naming the revision if it does not exist, and the
    songs that are not in `shards_dir` at that revision.
    """
    root = git_root(repo)
    init_dvc(root)
    shards_dir = relative(root, shards_dir)
    dest_root = Path(out_dir).resolve() if out_dir is not None else root / shards_dir
    commit = resolve_rev(root, rev)
    with registry_lock(root, lock_timeout_s):
        remote_name, remote_url = configure_remote(root)
        fs = dvc_fs(root, commit)
        try:
            wanted = songs_to_pull(fs, shards_dir, rev, songs)
            dest_root.mkdir(parents=True, exist_ok=True)
            pulled = [
                pull_song(fs, f"{shards_dir}/{song}", dest_root / song, rev, remote_name, remote_url, verify)
                for song in wanted
            ]
        finally:
            fs.close()
        keep_ignored(root, all_outputs(root))
    logger.info("pulled %d song(s) of %s at %s into %s", len(pulled), shards_dir, rev, dest_root)
    return pulled


@contextlib.contextmanager
def registry_lock(repo: str | Path, timeout_s: float | None = None) -> Iterator[Path]:
    """Exclusive inter-process lock on `<repo>/.dvc/tmp/pianoset-register.lock`
    (fcntl.flock; released when the holder exits, even if killed). Waits up
    to `timeout_s` (None: forever). Not re-entrant."""
    path = Path(repo) / ".dvc" / "tmp" / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        acquire(handle, path, timeout_s)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
