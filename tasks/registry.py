"""DVC versioning of the collection: register, publish, pull.

Design
------
The data folders are *directory outputs of the `collect` stage* in
`dvc.yaml` (`datasets/shards` and `datasets/specialists`, taken from
params.yaml), not one `.dvc` file per song:

- register = `dvc commit --force collect`: DVC hashes what is new (its state
  database remembers the hashes of unchanged files), copies new files into
  the cache, writes one `.dir` object per output (the list of every file and
  its md5) and records its hash in `dvc.lock`. One git-tracked file, however
  many songs.
- pull = read that `.dir` as of a git revision and download only the files
  under the requested song folders. DVC does this natively for a path inside
  a directory output: `dvc.api.DVCFileSystem(repo, rev=vN).get(
  "datasets/shards/<song>")` fetches the (small) `.dir` object and then only
  that song's files, from the local cache when they are there and from the
  remote otherwise. It works in a fresh clone with an empty cache, and
  without checking out vN (the DVC CLI's `dvc pull` has no `--rev`).
- Why not `dvc add` per song: DVC forbids a `.dvc` file inside a stage
  output (overlapping outputs), so the pipeline could not declare its
  outputs; a 2,000-song collection would mean 2,000 `.dvc` files and 2,000
  `.gitignore` lines to keep in step; and a song deleted on disk would leave
  a stale `.dvc` file behind. Per-song granularity is still there on read.

Each operation, in order:

- `register(repo)`: takes the registry lock (below), configures the remote
  if none is set, runs `dvc commit --force` on the `collect` stage (or on the
  given output paths), then checks that every output is still git-ignored
  and restores the line if not. Returns what changed, per output and per
  top-level folder (songs for the shards, chunks for the specialists).
- `publish(repo, "vN")`: refuses a tag that exists (before doing anything),
  registers, pushes the data (`dvc push`), commits only the DVC metadata
  (`dvc.yaml`, `dvc.lock`, `params.yaml`, `.dvcignore`, `.dvc/config`, the
  `.gitignore` files next to the outputs; the user's other staged changes are
  left alone) and creates the annotated tag. Data is pushed *before* the
  commit and tag, so a tag never names data the remote lacks; a failed push
  leaves no tag. Publishing with nothing new makes no commit and tags HEAD.
- The `catalog` and `stats` stages are recorded by whoever produces them:
  `register(repo, [reports_dir])` commits the stage owning that path (a
  path inside an output names its stage); `publish` pushes and commits
  everything `dvc.lock` records.
- `pull(repo, "vN", songs)`: resolves vN with git (error naming it), lists
  the song folders recorded at vN (error naming missing songs), downloads
  each into a hidden staging folder next to its destination and renames it
  into place, so a song appears complete or not at all. A song whose local
  `manifest.json` already equals vN's (the manifest holds the sha256 of
  every file) and whose files are complete is not downloaded again.

Pitfalls handled:

- Concurrent writers: DVC's own repository lock makes a second command
  fail after a few seconds rather than wait. Every operation here (pull
  too: it writes into the tree a register reads) holds an exclusive
  `fcntl.flock` on `.dvc/tmp/pianoset-register.lock` (`registry_lock`), so
  two flows register one after the other. The lock is per open file, so two
  threads of one process also serialize; it is not re-entrant.
- Half-written folders: collection writes a song into a hidden staging
  folder and renames it (tasks/rlds.py); `.dvcignore` keeps those
  (`.*.staging-*`, `.*.old-*`, `.*.tmp*`, pulls' `.*.pull-*`, orbax
  `*.orbax-checkpoint-tmp-*`) out of every data version.
- `.gitignore` lines lost: after every operation each output is checked with
  `git check-ignore` and its line (`/shards` in `datasets/.gitignore`, the
  form DVC writes) is put back if missing.
- Prompts: commits are forced (`dvc commit --force`); git runs with stdin
  closed and `GIT_TERMINAL_PROMPT=0`.

DVC is driven in-process through `dvc.repo.Repo` (the calls its CLI commands
make: `Repo.init`, `.commit(target, force=True)`, `.push(remote=...)`,
`Config.edit`), which saves a 1-3 s interpreter start per call and returns
counts instead of text; DVC takes its own repository lock inside each call.
git is driven through its CLI.

Remote
------
`ensure_dvc` leaves a default remote alone when the repository already has
one (e.g. a shared S3 remote committed in `.dvc/config`). Otherwise it
writes one into `.dvc/config.local` (untracked: per clone, per machine):
name from params.yaml `dvc.remote_name`, URL from, in order, the
`remote_url` argument, the env var `PIANOSET_DVC_REMOTE`, params.yaml
`dvc.remote_url` (default `~/.cache/pianoset/dvc-remote`, `~` expanded
there, a relative path taken from the repository root). An explicit
argument or the env var always wins, even over a committed remote. So a
fresh clone on the same machine, or a CI job with `PIANOSET_DVC_REMOTE`,
pulls with no setup.

S3-compatible storage (needs `pip install dvc-s3`; NOT tested here, this
environment has no S3 client or endpoint)::

    dvc remote add -d storage s3://my-bucket/pianoset        # shared: .dvc/config
    dvc remote modify storage endpointurl https://minio.example.org
    dvc remote modify --local storage access_key_id ...       # secrets: config.local
    dvc remote modify --local storage secret_access_key ...

Caveats
-------
- `pull` writes vN's song folders into the working tree. If HEAD records
  other content for them, `dvc status` shows them modified and a later
  `register` records them: pull into a clean clone, or pass `out_dir`.
- `register(paths=[song folder])` commits the whole output that holds it
  (DVC has no partial commit of a directory output); unchanged files cost a
  stat, not a re-hash.
- The cache copies data (DVC's default link type). For a large collection,
  `dvc config --local cache.type reflink,hardlink,copy` saves the second
  copy: safe for shards (always replaced by rename, never edited in place),
  not for files a tool rewrites in place (matplotlib reports).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from envs import atomic
from tasks.names import SONG_MANIFEST as MANIFEST_NAME
from tasks.params import DEFAULTS as PARAM_DEFAULTS
from tasks.params import load_params

logger = logging.getLogger(__name__)

COLLECT_STAGE = "collect"
LOCK_NAME = "pianoset-register.lock"  # under .dvc/tmp (git-ignored by DVC)
REMOTE_ENV = "PIANOSET_DVC_REMOTE"
METADATA_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RegistryError(RuntimeError):
    """A DVC/git operation on the data registry failed, or its input is wrong."""


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
    root = _git_root(repo)
    _init_dvc(root)
    with registry_lock(root, lock_timeout_s):
        _configure_remote(root, remote_url, remote_name)


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
    root = _git_root(repo)
    _init_dvc(root)
    with registry_lock(root, lock_timeout_s):
        _configure_remote(root)
        return _register(root, paths)


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

    Raises `RegistryError` naming the tag if it exists. Returns `{"tag",
    "commit", "committed", "remote", "files_pushed", "register"}`;
    `committed` is False when the metadata had not changed (the tag then
    points at HEAD), `files_pushed` None when `push=False`.
    """
    root = _git_root(repo)
    _check_new_tag(root, tag)
    _init_dvc(root)
    with registry_lock(root, lock_timeout_s):
        _check_new_tag(root, tag)  # again: another publisher may have won the lock first
        remote_name, remote_url = _configure_remote(root)
        registered = _register(root, None)
        files_pushed = _push(root, remote_name, remote_url) if push else None
        outputs = _all_outputs(root)
        _keep_ignored(root, outputs)  # before the commit: the tag must hold the .gitignore lines
        message = message or _default_message(tag, registered)
        commit, committed = _commit_metadata(root, _metadata_files(root, outputs), message)
        _git(root, "tag", "--annotate", tag, "--message", message, commit, what=f"git tag {tag}")
    logger.info("published %s at %s (%s files pushed)", tag, commit[:12], files_pushed)
    return {
        "tag": tag,
        "commit": commit,
        "committed": committed,
        "remote": remote_name,
        "files_pushed": files_pushed,
        "register": registered,
    }


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
    root = _git_root(repo)
    _init_dvc(root)
    shards_dir = _relative(root, shards_dir)
    dest_root = Path(out_dir).resolve() if out_dir is not None else root / shards_dir
    commit = _resolve_rev(root, rev)
    with registry_lock(root, lock_timeout_s):
        remote_name, remote_url = _configure_remote(root)
        fs = _dvc_fs(root, commit)
        try:
            wanted = _songs_to_pull(fs, shards_dir, rev, songs)
            dest_root.mkdir(parents=True, exist_ok=True)
            pulled = [
                _pull_song(fs, f"{shards_dir}/{song}", dest_root / song, rev, remote_name, remote_url, verify)
                for song in wanted
            ]
        finally:
            fs.close()
        _keep_ignored(root, _all_outputs(root))
    logger.info("pulled %d song(s) of %s at %s into %s", len(pulled), shards_dir, rev, dest_root)
    return pulled


def list_versions(repo: str | Path) -> list[str]:
    """The git tags of `repo` (the published versions), in version order (v2 < v10)."""
    root = _git_root(repo)
    out = _git(root, "tag", "--list", "--sort=version:refname", what="git tag --list")
    return out.split()


@contextlib.contextmanager
def registry_lock(repo: str | Path, timeout_s: float | None = None) -> Iterator[Path]:
    """Exclusive inter-process lock on `<repo>/.dvc/tmp/pianoset-register.lock`
    (fcntl.flock; released when the holder exits, even if killed). Waits up
    to `timeout_s` (None: forever). Not re-entrant."""
    path = Path(repo) / ".dvc" / "tmp" / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        _acquire(handle, path, timeout_s)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- register


def _register(root: Path, paths: Sequence[str | Path] | None) -> dict[str, Any]:
    # DVC's API resolves targets against the process's cwd, like its CLI: pass them absolute.
    names = [_relative(root, p) for p in paths] if paths else [COLLECT_STAGE]
    absolute = [os.fspath(root / n) for n in names] if paths else [f"{root / 'dvc.yaml'}:{COLLECT_STAGE}"]
    before = _locked_outputs(root)
    with _dvc_repo(root, f"dvc commit {' '.join(names)}") as dvc_repo:
        outputs = _outputs_of(dvc_repo, absolute)
        for out in outputs:
            if not (root / out).exists() and not Path(out).suffix:
                logger.info("%s does not exist yet; registering it as an empty folder", out)
                (root / out).mkdir(parents=True)
        for target in absolute:
            dvc_repo.commit(target, force=True)  # force: never prompt
        after = _locked_outputs(root)
        cache = _cache_paths(dvc_repo)
        summary = {out: _output_change(cache, before.get(out), after.get(out), out) for out in outputs}
    _keep_ignored(root, outputs)
    changed = any(s["changed"] for s in summary.values())
    logger.info("registered %s: %s", ", ".join(outputs), _describe(summary) if changed else "nothing changed")
    return {"changed": changed, "outputs": summary}


def _all_outputs(root: Path) -> list[str]:
    with _dvc_repo(root, "reading dvc.yaml") as dvc_repo:
        return _outputs_of(dvc_repo, None)


def _outputs_of(dvc_repo, targets: Sequence[str] | None) -> list[str]:
    """Output paths (relative, as in dvc.lock) of the stages that own `targets`
    (all stages when None)."""
    if targets is None:
        stages = list(dvc_repo.index.stages)
    else:
        stages = [info.stage for t in targets for info in dvc_repo.stage.collect_granular(t)]
    outs = [out.def_path for stage in stages for out in stage.outs]
    if targets is not None and not outs:
        raise RegistryError(f"{dvc_repo.root_dir}: {', '.join(targets)} has no outputs in dvc.yaml")
    return list(dict.fromkeys(outs))


def _locked_outputs(root: Path) -> dict[str, dict[str, Any]]:
    """`{path: {"md5", "nfiles", "size"}}` of every output recorded in dvc.lock."""
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text()) or {}
    recorded = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            recorded[out["path"]] = {key: out.get(key) for key in ("md5", "nfiles", "size")}
    return recorded


def _cache_paths(dvc_repo):
    """oid -> path of that object in the repository's local cache."""
    odb = dvc_repo.cache.local
    return lambda oid: Path(odb.oid_to_path(oid))


def _dir_entries(cache, md5: str | None) -> dict[str, frozenset] | None:
    """Top-level folder -> its (relpath, md5) set, from a `.dir` object in the cache."""
    if not md5 or not md5.endswith(".dir"):
        return None
    path = cache(md5)
    if not path.is_file():
        return None
    grouped: dict[str, set] = {}
    for entry in json.loads(path.read_text()):
        top = entry["relpath"].split("/", 1)[0]
        grouped.setdefault(top, set()).add((entry["relpath"], entry["md5"]))
    return {name: frozenset(files) for name, files in grouped.items()}


def _output_change(cache, before: dict | None, after: dict | None, out: str) -> dict[str, Any]:
    if after is None:
        raise RegistryError(f"dvc commit left no record of {out} in dvc.lock")
    changed = before is None or before["md5"] != after["md5"]
    new = _dir_entries(cache, after["md5"]) or {}
    old = _dir_entries(cache, before["md5"]) if before else {}
    summary = {**after, "changed": changed, "entries": len(new)}
    if not changed:
        return {**summary, "added": [], "modified": [], "removed": []}
    if old is None:  # the previous version is not in this cache (fresh clone)
        return {**summary, "added": None, "modified": None, "removed": None}
    return {
        **summary,
        "added": sorted(set(new) - set(old)),
        "modified": sorted(name for name in set(new) & set(old) if new[name] != old[name]),
        "removed": sorted(set(old) - set(new)),
    }


def _describe(summary: dict[str, dict[str, Any]]) -> str:
    parts = []
    for out, s in summary.items():
        if s["changed"]:
            counts = "/".join(str(len(s[k])) if s[k] is not None else "?" for k in ("added", "modified", "removed"))
            parts.append(f"{out} ({s['entries']} entries, {s['nfiles']} files; added/modified/removed {counts})")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- publish


def _check_new_tag(root: Path, tag: str) -> None:
    if not tag or _run(["git", "check-ref-format", f"refs/tags/{tag}"], root, check=False).returncode != 0:
        raise RegistryError(f"tag {tag!r}: not a valid git tag name")
    existing = _run(["git", "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"], root, check=False)
    if existing.returncode == 0:
        raise RegistryError(
            f"tag {tag!r} already exists in {root} (commit {existing.stdout.strip()[:12]}); "
            "published versions are immutable, pick a new tag"
        )


def _push(root: Path, remote_name: str, remote_url: str | None) -> int:
    with _dvc_repo(root, f"dvc push to remote {remote_name!r} ({remote_url})") as dvc_repo:
        return dvc_repo.push(remote=remote_name)


def _metadata_files(root: Path, outputs: Sequence[str]) -> list[str]:
    ignores = {str(Path(out).parent / ".gitignore") for out in outputs}
    candidates = [*METADATA_FILES, *sorted(ignores)]
    return [f for f in candidates if (root / f).is_file()]


def _commit_metadata(root: Path, files: Sequence[str], message: str) -> tuple[str, bool]:
    """Commits only `files` (the DVC metadata), leaving anything else staged as it
    was; returns (HEAD, whether a commit was made)."""
    _git(root, "add", "--", *files, what="git add (DVC metadata)")
    has_head = _run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], root, check=False).returncode == 0
    staged = _run(["git", "diff", "--cached", "--quiet", "--", *files], root, check=False).returncode != 0
    if has_head and not staged:
        logger.info("DVC metadata unchanged since HEAD; nothing to commit")
        return _git(root, "rev-parse", "HEAD", what="git rev-parse HEAD").strip(), False
    _git(root, "commit", "--quiet", "--message", message, "--", *files, what="git commit (DVC metadata)")
    return _git(root, "rev-parse", "HEAD", what="git rev-parse HEAD").strip(), True


def _default_message(tag: str, registered: dict[str, Any]) -> str:
    sizes = ", ".join(f"{out}: {s['entries']} folders, {s['nfiles']} files" for out, s in registered["outputs"].items())
    return f"data {tag}: {sizes}"


# ----------------------------------------------------------------------------- pull


def _resolve_rev(root: Path, rev: str) -> str:
    found = _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root, check=False)
    if not rev or found.returncode != 0:
        tags = list_versions(root)
        raise RegistryError(f"revision {rev!r} does not exist in {root} (tags: {', '.join(tags) or 'none'})")
    return found.stdout.strip()


def _dvc_fs(root: Path, commit: str):
    _quiet_dvc()
    from dvc.api import DVCFileSystem

    return DVCFileSystem(repo=os.fspath(root), rev=commit)


def _songs_to_pull(fs, shards_dir: str, rev: str, songs: Sequence[str] | None) -> list[str]:
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


def _pull_song(fs, src: str, dest: Path, rev: str, remote_name: str, remote_url: str | None, verify: bool) -> Path:
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


def _swap_into_place(staging: Path, final: Path) -> None:
    if final.exists():
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
        os.rename(final, aside)
        os.rename(staging, final)
        shutil.rmtree(aside)
    else:
        os.rename(staging, final)


# ----------------------------------------------------------------------------- setup and plumbing


def _git_root(repo: str | Path) -> Path:
    path = Path(repo).resolve()
    if not path.is_dir():
        raise RegistryError(f"{repo}: no such directory")
    found = _run(["git", "rev-parse", "--show-toplevel"], path, check=False)
    if found.returncode != 0:
        raise RegistryError(f"{repo}: not a git repository (DVC versions data alongside git; run `git init`)")
    top = Path(found.stdout.strip()).resolve()
    if top != path:
        raise RegistryError(f"{repo}: not the root of its git repository ({top}); pass the root")
    return path


def _init_dvc(root: Path) -> None:
    if (root / ".dvc").is_dir():
        return
    _quiet_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    logger.info("%s: no .dvc/, running dvc init", root)
    try:
        Repo.init(os.fspath(root)).close()
    except DvcException as exc:
        if not (root / ".dvc").is_dir():  # else a concurrent init won: fine
            raise RegistryError(f"dvc init failed in {root}: {exc}") from exc


def _configure_remote(
    root: Path, remote_url: str | None = None, remote_name: str | None = None
) -> tuple[str, str | None]:
    """Returns the default remote (name, url), writing one into .dvc/config.local if needed."""
    _quiet_dvc()
    from dvc.config import Config

    config = Config(dvc_dir=os.fspath(root / ".dvc"))
    explicit = remote_url or os.environ.get(REMOTE_ENV)
    current = config["core"].get("remote")
    if current and not explicit:
        return current, config["remote"].get(current, {}).get("url")
    settings = _dvc_params(root)
    name = remote_name or settings["remote_name"]
    url = _normalize_url(explicit or settings["remote_url"], root)
    if current == name and config["remote"].get(name, {}).get("url") == url:
        return name, url
    with config.edit("local") as local:  # what `dvc remote add --local --default` does
        local["remote"].setdefault(name, {})["url"] = url  # other options (credentials) kept
        local["core"]["remote"] = name
    logger.info("%s: DVC remote %r -> %s (in .dvc/config.local)", root, name, url)
    return name, url


def _dvc_params(root: Path) -> dict[str, str]:
    path = root / "params.yaml"
    return load_params(path)["dvc"] if path.is_file() else dict(PARAM_DEFAULTS["dvc"])


def _normalize_url(url: str, root: Path) -> str:
    if _SCHEME.match(url):
        return url
    path = Path(url).expanduser()
    return os.fspath(path if path.is_absolute() else (root / path).resolve())


def _keep_ignored(root: Path, outputs: Sequence[str]) -> None:
    """Puts back the `.gitignore` line of any existing output git no longer ignores."""
    for out in outputs:
        if not (root / out).exists():
            continue  # nothing to leak into git; DVC writes the line when it first records it
        if _run(["git", "check-ignore", "--quiet", "--no-index", "--", out], root, check=False).returncode == 0:
            continue
        ignore_file = root / Path(out).parent / ".gitignore"
        line = f"/{Path(out).name}"
        text = ignore_file.read_text() if ignore_file.is_file() else ""
        ignore_file.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
        logger.warning("%s was not git-ignored; added %r to %s", out, line, ignore_file)


def _relative(root: Path, path: str | Path) -> str:
    absolute = (root / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        raise RegistryError(f"{path}: outside the repository {root}") from None


def _acquire(handle, path: Path, timeout_s: float | None) -> None:
    start = time.monotonic()
    waiting_logged = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not waiting_logged:
                logger.info("waiting for %s (another registration is running)", path)
                waiting_logged = True
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise RegistryError(f"{path}: still held by another process after {timeout_s} s") from None
            time.sleep(0.1)


def _quiet_dvc() -> None:
    """Importing dvc attaches console handlers to its loggers (`dvc.logger.setup`:
    INFO to stdout, which would also corrupt a `--json` CLI's output). Library
    code does not print: DVC's records go to the application's logging instead."""
    import dvc.logger

    for name in ("dvc", "dvc_objects", "dvc_data"):
        dvc_logger = logging.getLogger(name)
        for handler in list(dvc_logger.handlers):
            if isinstance(handler, dvc.logger.LoggerHandler):
                dvc_logger.removeHandler(handler)


@contextlib.contextmanager
def _dvc_repo(root: Path, what: str) -> Iterator[Any]:
    """The DVC repository at `root`; DVC's errors become `RegistryError`s saying what failed."""
    _quiet_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(os.fspath(root)) as dvc_repo:
            yield dvc_repo
    except DvcException as exc:
        raise RegistryError(f"{what} failed in {root}: {exc}") from exc


def _env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never a prompt: there is no terminal


def _run(args: Sequence[str], cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess:
    logger.debug("running %s in %s", " ".join(args), cwd)
    result = subprocess.run(
        list(args), cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise RegistryError(f"{' '.join(args[:4])} failed in {cwd}: {_tail(result)}")
    return result


def _tail(result: subprocess.CompletedProcess, lines: int = 6) -> str:
    text = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
    return " | ".join(text.splitlines()[-lines:]) or f"exit status {result.returncode}"


def _git(root: Path, *args: str, what: str) -> str:
    result = _run(["git", *args], root, check=False)
    if result.returncode != 0:
        raise RegistryError(f"{what} failed in {root}: {_tail(result)}")
    return result.stdout

