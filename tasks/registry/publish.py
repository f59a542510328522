"""Publishing a version: push to the DVC remote, git commit of the metadata, tag."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.registry.dvc import METADATA_FILES, RegistryError, git, open_dvc_repo, run

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- publish


def check_new_tag(root: Path, tag: str) -> None:
    if not tag or run(["git", "check-ref-format", f"refs/tags/{tag}"], root, check=False).returncode != 0:
        raise RegistryError(f"tag {tag!r}: not a valid git tag name")
    existing = run(["git", "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"], root, check=False)
    if existing.returncode == 0:
        raise RegistryError(
            f"tag {tag!r} already exists in {root} (commit {existing.stdout.strip()[:12]}); "
            "published versions are immutable, pick a new tag"
        )


def push_data(root: Path, remote_name: str, remote_url: str | None) -> int:
    with open_dvc_repo(root, f"dvc push to remote {remote_name!r} ({remote_url})") as dvc_repo:
        return dvc_repo.push(remote=remote_name)


def metadata_files(root: Path, outputs: Sequence[str]) -> list[str]:
    ignores = {str(Path(out).parent / ".gitignore") for out in outputs}
    candidates = [*METADATA_FILES, *sorted(ignores)]
    return [f for f in candidates if (root / f).is_file()]


def commit_metadata(root: Path, files: Sequence[str], message: str) -> tuple[str, bool]:
    """Commits only `files` (the DVC metadata), leaving anything else staged as it
    was; returns (HEAD, whether a commit was made)."""
    git(root, "add", "--", *files, what="git add (DVC metadata)")
    has_head = run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], root, check=False).returncode == 0
    staged = run(["git", "diff", "--cached", "--quiet", "--", *files], root, check=False).returncode != 0
    if has_head and not staged:
        logger.info("DVC metadata unchanged since HEAD; nothing to commit")
        return git(root, "rev-parse", "HEAD", what="git rev-parse HEAD").strip(), False
    git(root, "commit", "--quiet", "--message", message, "--", *files, what="git commit (DVC metadata)")
    return git(root, "rev-parse", "HEAD", what="git rev-parse HEAD").strip(), True


def default_message(tag: str, registered: dict[str, Any]) -> str:
    sizes = ", ".join(f"{out}: {s['entries']} folders, {s['nfiles']} files" for out, s in registered["outputs"].items())
    return f"data {tag}: {sizes}"
