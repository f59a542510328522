"""DVC versioning end to end: real git, real DVC, a local directory remote.

An "origin" repository gets the project's dvc.yaml, params.yaml and
.dvcignore, three songs written as real TFDS shard folders (plus a
specialist), and is published as v1; one song is rewritten and one added,
then v2. Fresh clones with empty caches pull songs at either tag and read
them with tfds. The origin is built once per module; tests that change a
repository work on their own copy or clone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks import registry
from tasks.registry import RegistryError

PROJECT = Path(__file__).resolve().parents[2]
SONGS_V1 = ("song_a", "song_b", "song_c")


# ----------------------------------------------------------------------------- helpers


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def dvc(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def checksums(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def song_folders(shards_dir: Path) -> set[str]:
    return {p.name for p in shards_dir.iterdir()} if shards_dir.is_dir() else set()


def assert_shards_ignored(repo: Path) -> None:
    for path in ("datasets/shards", "datasets/shards/song_a/manifest.json", "datasets/specialists"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo)
        assert ignored.returncode == 0, f"{path} is not git-ignored in {repo}"
    assert "datasets/shards" not in git(repo, "status", "--porcelain", "--untracked-files=all")


def write_song(shards_dir: Path, song_id: str, seed: int) -> None:
    import tasks.rlds as shards
    from tests.tasks.rlds.test_shards import make_song

    episodes = make_song(np.random.default_rng(seed), song_id, lengths=(4, 3, 5))
    shards.write_song_dataset(shards_dir, song_id, episodes, max_episodes_per_shard=2)


def project_files(repo: Path, remote: Path) -> None:
    """The project's own dvc.yaml, .dvcignore and params.yaml (remote pointed at `remote`)."""
    shutil.copy(PROJECT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(PROJECT / ".dvcignore", repo / ".dvcignore")
    params = (PROJECT / "params.yaml").read_text()
    params, n = re.subn(r"(?m)^(\s*remote_url:).*$", rf"\1 {remote}", params)
    assert n == 1
    (repo / "params.yaml").write_text(params)


@pytest.fixture(scope="module", autouse=True)
def isolated_env(tmp_path_factory):
    """Git identity, no DVC analytics, a private HOME (no user git/DVC config)
    and DVC site cache."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "HOME": str(home),
            "GIT_AUTHOR_NAME": "pianoset test",
            "GIT_AUTHOR_EMAIL": "test@pianoset.invalid",
            "GIT_COMMITTER_NAME": "pianoset test",
            "GIT_COMMITTER_EMAIL": "test@pianoset.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(home / "dvc-site-cache"),  # not /var/tmp/dvc
        }.items():
            mp.setenv(key, value)
        mp.delenv(registry.REMOTE_ENV, raising=False)
        yield


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """v1: songs a, b, c + one specialist; v2: a rewritten, d added. Returns a dict
    with the repo, the remote, each version's checksums and publish results."""
    base = tmp_path_factory.mktemp("registry")
    repo, remote = base / "origin", base / "remote"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("test project\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "init")
    project_files(repo, remote)
    shards_dir = repo / "datasets/shards"
    for i, song in enumerate(SONGS_V1):
        write_song(shards_dir, song, seed=i)
    specialist = repo / "datasets/specialists/song_a-000"
    specialist.mkdir(parents=True)
    (specialist / "specialist.json").write_text('{"chunk_id": "song_a-000"}\n')
    (specialist / "params.bin").write_bytes(np.random.default_rng(9).bytes(2048))

    v1 = registry.publish(repo, "v1")
    v1_files = {song: checksums(shards_dir / song) for song in SONGS_V1}
    write_song(shards_dir, "song_a", seed=100)
    write_song(shards_dir, "song_d", seed=101)
    v2 = registry.publish(repo, "v2", message="v2: song_a again, song_d")
    v2_files = {song: checksums(shards_dir / song) for song in (*SONGS_V1, "song_d")}
    assert v1_files["song_a"] != v2_files["song_a"]
    return {"repo": repo, "remote": remote, "v1": v1, "v2": v2, "v1_files": v1_files, "v2_files": v2_files}


def clone(origin: dict, dest: Path) -> Path:
    """A fresh clone whose DVC cache is a new, empty folder."""
    git(dest.parent, "clone", "-q", str(origin["repo"]), dest.name)
    dvc(dest, "cache", "dir", "--local", str(dest.parent / f"{dest.name}-cache"))
    return dest


# ----------------------------------------------------------------------------- publish


def test_publish_records_each_version(origin):
    repo = origin["repo"]
    shards_v1 = origin["v1"]["register"]["outputs"]["datasets/shards"]
    assert shards_v1["added"] == list(SONGS_V1) and shards_v1["entries"] == 3
    assert origin["v1"]["register"]["outputs"]["datasets/specialists"]["added"] == ["song_a-000"]
    shards_v2 = origin["v2"]["register"]["outputs"]["datasets/shards"]
    assert (shards_v2["added"], shards_v2["modified"], shards_v2["removed"]) == (["song_d"], ["song_a"], [])
    assert origin["v2"]["register"]["outputs"]["datasets/specialists"]["changed"] is False
    assert origin["v1"]["files_pushed"] > 0 and origin["v2"]["files_pushed"] > 0
    assert origin["v1"]["committed"] and origin["v2"]["committed"]

    assert registry.list_versions(repo) == ["v1", "v2"]
    assert git(repo, "rev-parse", "v2^{commit}").strip() == origin["v2"]["commit"]
    assert git(repo, "log", "-1", "--format=%s", "v2").strip() == "v2: song_a again, song_d"
    committed = set(git(repo, "ls-files").split())
    assert {"dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", ".dvc/config", "datasets/.gitignore"} <= committed
    assert not any(f.startswith(("datasets/shards/", "datasets/specialists/")) for f in committed)
    assert git(repo, "status", "--porcelain") == ""
    assert "up to date" in dvc(repo, "status", "collect")
    assert_shards_ignored(repo)
    # the remote holds every file of both versions: nothing left to push
    assert "Everything is up to date" in dvc(repo, "push")


def test_publish_refuses_an_existing_tag(origin):
    with pytest.raises(RegistryError, match=r"tag 'v2' already exists"):
        registry.publish(origin["repo"], "v2")
    with pytest.raises(RegistryError, match=r"tag 'bad tag': not a valid git tag name"):
        registry.publish(origin["repo"], "bad tag")


def test_nothing_changed_changes_nothing(origin, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(origin["repo"], repo, symlinks=True)
    lock_before = (repo / "dvc.lock").read_bytes()
    again = registry.register(repo)
    assert again["changed"] is False
    assert all(not s["changed"] and s["added"] == [] for s in again["outputs"].values())
    assert (repo / "dvc.lock").read_bytes() == lock_before

    v3 = registry.publish(repo, "v3")
    assert v3["committed"] is False and v3["files_pushed"] == 0
    assert v3["commit"] == origin["v2"]["commit"]  # the tag names the same data version
    assert git(repo, "status", "--porcelain") == ""
    assert registry.list_versions(repo) == ["v1", "v2", "v3"]
    assert_shards_ignored(repo)


def test_publish_commits_only_the_dvc_metadata(origin, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(origin["repo"], repo, symlinks=True)
    (repo / "README.md").write_text("work in progress\n")
    git(repo, "add", "README.md")  # someone's staged change: not part of the data version
    write_song(repo / "datasets/shards", "song_e", seed=7)
    n_files = sum(1 for p in (repo / "datasets/shards/song_e").rglob("*") if p.is_file())

    v3 = registry.publish(repo, "v3")

    # song_e's new files (dataset_info/features equal the other songs': in the cache already) and the .dir listing
    assert v3["committed"] and 2 < v3["files_pushed"] <= n_files + 1
    assert set(git(repo, "show", "--name-only", "--format=", "v3^{commit}").split()) == {"dvc.lock",
                                                                                        "datasets/DATASET.md"}
    assert "| song_e |" in git(repo, "show", "v3:datasets/DATASET.md")
    assert git(repo, "diff", "--cached", "--name-only").split() == ["README.md"]


def test_publish_refuses_shards_that_fail_validation(origin, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(origin["repo"], repo, symlinks=True)
    lock_before = (repo / "dvc.lock").read_bytes()
    record = next(p for p in (repo / "datasets/shards/song_b").rglob("*.tfrecord-*"))
    data = bytearray(record.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the sha256 tells
    record.write_bytes(bytes(data))
    (repo / "datasets/shards/song_x").mkdir()  # a folder without a manifest
    with pytest.raises(RegistryError, match=r"not publishing: 2 song folder\(s\)") as failure:
        registry.publish(repo, "v3")
    assert "song_b" in str(failure.value) and "sha256" in str(failure.value) and "song_x" in str(failure.value)
    assert registry.list_versions(repo) == ["v1", "v2"] and (repo / "dvc.lock").read_bytes() == lock_before


def test_each_version_carries_its_dataset_card(origin):
    from tasks.rlds import read_manifest

    repo = origin["repo"]
    card_v1 = git(repo, "show", "v1:datasets/DATASET.md")
    card_v2 = git(repo, "show", "v2:datasets/DATASET.md")
    assert "3 songs" in card_v1 and "4 songs" in card_v2 and "| song_d |" in card_v2 and "song_d" not in card_v1
    manifests = [read_manifest(repo / "datasets/shards" / s) for s in (*SONGS_V1, "song_d")]
    f1 = [e.f1 for m in manifests for e in m.episodes]
    share = sum(v > 0.75 for v in f1) / len(f1)
    assert f"{sum(m.n_episodes for m in manifests)} episodes" in card_v2
    assert f"{100 * share:.2f}% above 0.75" in card_v2
    assert "tfds.builder_from_directory('datasets/shards/<song_id>/1.1.0')" in card_v2
    assert "`piano_goal`: 968" in card_v2 and "sustain pedal (dim 38)" in card_v2
    assert "| unknown |" in card_v2  # test songs are in no catalog: the card says their origin is unknown


def test_lost_gitignore_line_is_restored_and_paths_register(origin, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(origin["repo"], repo, symlinks=True)
    ignore_file = repo / "datasets/.gitignore"
    ignore_file.write_text(ignore_file.read_text().replace("/shards\n", ""))
    assert subprocess.run(["git", "check-ignore", "-q", "datasets/shards"], cwd=repo).returncode == 1
    new_song = repo / "datasets/shards/song_new"
    new_song.mkdir()
    (new_song / "data.bin").write_bytes(os.urandom(256))
    staging = repo / "datasets/shards/.song_late.staging-0123abcd"  # a song being written right now
    staging.mkdir()
    (staging / "part.bin").write_bytes(os.urandom(256))

    result = registry.register(repo, [new_song])  # a folder inside an output: commits that output
    assert result["outputs"]["datasets/shards"]["added"] == ["song_new"]  # .dvcignore kept the staging out
    assert_shards_ignored(repo)


def test_ensure_dvc_initializes_quietly_and_idempotently(tmp_path, caplog):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    git(repo, "init", "-q")
    project_files(repo, remote)
    with caplog.at_level(logging.INFO):
        registry.ensure_dvc(repo)
    assert "Initialized DVC repository" in caplog.text  # through logging, not printed
    for name in ("dvc", "dvc_data", "dvc_objects"):
        assert not [h for h in logging.getLogger(name).handlers if getattr(h, "stream", None) is sys.stdout]
    local_config = (repo / ".dvc/config.local").read_text()
    assert f"url = {remote}" in local_config and "remote = local" in local_config
    registry.ensure_dvc(repo)
    assert (repo / ".dvc/config.local").read_text() == local_config
    assert (repo / ".dvc/config").read_text() == ""  # nothing machine-specific is committed

    registry.ensure_dvc(repo, remote_url="rel/remote")  # explicit: wins, relative to the repo root
    assert f"url = {repo / 'rel/remote'}" in (repo / ".dvc/config.local").read_text()


def test_register_errors_name_the_input(origin, tmp_path):
    with pytest.raises(RegistryError, match="datasets/nothere"):
        registry.register(origin["repo"], [origin["repo"] / "datasets/nothere"])
    with pytest.raises(RegistryError, match="not a git repository"):
        registry.ensure_dvc(tmp_path)


# ----------------------------------------------------------------------------- pull


def test_pull_fetches_only_the_requested_songs(origin, tmp_path):
    """Fresh clone, empty cache, and a remote lacking song_c's files: pulling
    a and b at v1 must not need them, and gives v1's bytes."""
    remote = tmp_path / "remote-without-c"
    shutil.copytree(origin["remote"], remote)
    def md5s(song: str) -> set[str]:
        files = (origin["repo"] / "datasets/shards" / song).rglob("*")
        return {hashlib.md5(p.read_bytes()).hexdigest() for p in files if p.is_file()}

    only_in_c = md5s("song_c") - md5s("song_a") - md5s("song_b")  # features.json is shared
    assert len(only_in_c) >= 3  # manifest, dataset_info, tfrecords
    for md5 in only_in_c:
        (remote / "files/md5" / md5[:2] / md5[2:]).unlink()
    repo = clone(origin, tmp_path / "clone")
    registry.ensure_dvc(repo, remote_url=str(remote))
    assert not (repo / "datasets/shards").exists()

    pulled = registry.pull(repo, "v1", ["song_a", "song_b"])

    shards_dir = repo / "datasets/shards"
    assert pulled == [shards_dir / "song_a", shards_dir / "song_b"]
    assert song_folders(shards_dir) == {"song_a", "song_b"}
    for song in ("song_a", "song_b"):
        assert checksums(shards_dir / song) == origin["v1_files"][song]

    with pytest.raises(RegistryError, match=r"song 'song_c' at revision 'v1': could not download"):
        registry.pull(repo, "v1", ["song_c"])
    assert song_folders(shards_dir) == {"song_a", "song_b"}  # no partial song_c, no staging folder left

    _read_with_tfds(shards_dir / "song_a", n_episodes=3)
    assert git(repo, "status", "--porcelain") == ""
    assert_shards_ignored(repo)


def _read_with_tfds(song_dir: Path, n_episodes: int) -> None:
    import tensorflow_datasets as tfds

    import tasks.rlds as shards

    builder = tfds.builder_from_directory(str(song_dir / shards.DATASET_VERSION))
    episodes = list(builder.as_dataset(split="train"))
    assert len(episodes) == n_episodes
    assert {e["song_id"].numpy().decode() for e in episodes} == {song_dir.name}


def test_pull_other_versions_in_a_fresh_clone(origin, tmp_path, caplog):
    """No remote setup at all: the committed params.yaml names the remote."""
    repo = clone(origin, tmp_path / "clone")
    shards_dir = repo / "datasets/shards"

    pulled = registry.pull(repo, "v2", None)
    assert [p.name for p in pulled] == ["song_a", "song_b", "song_c", "song_d"]
    for song, files in origin["v2_files"].items():
        assert checksums(shards_dir / song) == files

    registry.pull(repo, "v1", ["song_a"])  # replaces v2's song_a with v1's
    assert checksums(shards_dir / "song_a") == origin["v1_files"]["song_a"]
    assert song_folders(shards_dir) == {"song_a", "song_b", "song_c", "song_d"}

    with caplog.at_level(logging.INFO, logger="tasks.registry"):
        registry.pull(repo, "v1", ["song_a"])
    assert "not downloaded again" in caplog.text
    assert checksums(shards_dir / "song_a") == origin["v1_files"]["song_a"]
    _read_with_tfds(shards_dir / "song_d", n_episodes=3)
    assert_shards_ignored(repo)


def test_pull_errors_name_the_song_and_the_rev(origin):
    repo = origin["repo"]
    with pytest.raises(RegistryError, match=r"song\(s\) nope not in datasets/shards at revision 'v1'"):
        registry.pull(repo, "v1", ["song_a", "nope"])
    with pytest.raises(RegistryError, match=r"song\(s\) song_d not in datasets/shards at revision 'v1'"):
        registry.pull(repo, "v1", ["song_d"])
    with pytest.raises(RegistryError, match=r"revision 'v9' does not exist .*tags: v1, v2"):
        registry.pull(repo, "v9", ["song_a"])
    with pytest.raises(RegistryError, match=r"song '\.\./x': not a song folder name"):
        registry.pull(repo, "v1", ["../x"])


# ----------------------------------------------------------------------------- concurrency


REGISTER_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    sys.path.insert(0, {project!r})
    logging.basicConfig(filename={log!r}, level=logging.INFO)
    from tasks.registry import register
    result = register({repo!r})
    print(json.dumps({{"changed": result["changed"]}}))
    """
)


def wait_for_text(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.is_file() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{path}: no {text!r} after {timeout_s} s"
        time.sleep(0.2)


def test_concurrent_registers_are_serialized(origin, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(origin["repo"], repo, symlinks=True)
    for song in ("song_e", "song_f"):  # fake folders: register does not read them
        (repo / "datasets/shards" / song).mkdir()
        (repo / "datasets/shards" / song / "data.bin").write_bytes(os.urandom(512))
    lock_before = (repo / "dvc.lock").read_text()
    logs = [tmp_path / f"register-{i}.log" for i in range(2)]
    scripts = [REGISTER_SCRIPT.format(project=str(PROJECT), repo=str(repo), log=str(log)) for log in logs]

    with registry.registry_lock(repo):
        procs = [
            subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for script in scripts
        ]
        for log in logs:  # both reached the lock and are blocked on it
            wait_for_text(log, "waiting for", timeout_s=60)
        assert [p.poll() for p in procs] == [None, None], "register ran while the lock was held"
        assert (repo / "dvc.lock").read_text() == lock_before
    outputs = [p.communicate(timeout=90) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    changed = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert changed == ['{"changed": false}', '{"changed": true}']  # one recorded the songs, the other found nothing new
    assert "up to date" in dvc(repo, "status", "collect")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (shards_out,) = [o for o in lock["stages"]["collect"]["outs"] if o["path"] == "datasets/shards"]
    md5 = shards_out["md5"]
    listing = json.loads((repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text())
    assert {e["relpath"].split("/")[0] for e in listing} == {"song_a", "song_b", "song_c", "song_d", "song_e", "song_f"}
    assert shards_out["nfiles"] == len(listing)
    assert_shards_ignored(repo)
