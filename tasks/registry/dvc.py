"""Setup and plumbing of the registry: errors, git and DVC calls, remote configuration, locks."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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


# ----------------------------------------------------------------------------- setup and plumbing


def git_root(repo: str | Path) -> Path:
    path = Path(repo).resolve()
    if not path.is_dir():
        raise RegistryError(f"{repo}: no such directory")
    found = run(["git", "rev-parse", "--show-toplevel"], path, check=False)
    if found.returncode != 0:
        raise RegistryError(f"{repo}: not a git repository (DVC versions data alongside git; run `git init`)")
    top = Path(found.stdout.strip()).resolve()
    if top != path:
        raise RegistryError(f"{repo}: not the root of its git repository ({top}); pass the root")
    return path


def init_dvc(root: Path) -> None:
    if (root / ".dvc").is_dir():
        return
    quiet_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    logger.info("%s: no .dvc/, running dvc init", root)
    try:
        Repo.init(os.fspath(root)).close()
    except DvcException as exc:
        if not (root / ".dvc").is_dir():  # else a concurrent init won: fine
            raise RegistryError(f"dvc init failed in {root}: {exc}") from exc


def configure_remote(
    root: Path, remote_url: str | None = None, remote_name: str | None = None
) -> tuple[str, str | None]:
    """Returns the default remote (name, url), writing one into .dvc/config.local if needed."""
    quiet_dvc()
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


def keep_ignored(root: Path, outputs: Sequence[str]) -> None:
    """Puts back the `.gitignore` line of any existing output git no longer ignores."""
    for out in outputs:
        if not (root / out).exists():
            continue  # nothing to leak into git; DVC writes the line when it first records it
        if run(["git", "check-ignore", "--quiet", "--no-index", "--", out], root, check=False).returncode == 0:
            continue
        ignore_file = root / Path(out).parent / ".gitignore"
        line = f"/{Path(out).name}"
        text = ignore_file.read_text() if ignore_file.is_file() else ""
        ignore_file.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
        logger.warning("%s was not git-ignored; added %r to %s", out, line, ignore_file)


def relative(root: Path, path: str | Path) -> str:
    absolute = (root / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        raise RegistryError(f"{path}: outside the repository {root}") from None


def acquire(handle, path: Path, timeout_s: float | None) -> None:
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


def quiet_dvc() -> None:
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
def open_dvc_repo(root: Path, what: str) -> Iterator[Any]:
    """The DVC repository at `root`; DVC's errors become `RegistryError`s saying what failed."""
    quiet_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(os.fspath(root)) as dvc_repo:
            yield dvc_repo
    except DvcException as exc:
        raise RegistryError(f"{what} failed in {root}: {exc}") from exc


def _env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never a prompt: there is no terminal


def run(args: Sequence[str], cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess:
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


def git(root: Path, *args: str, what: str) -> str:
    result = run(["git", *args], root, check=False)
    if result.returncode != 0:
        raise RegistryError(f"{what} failed in {root}: {_tail(result)}")
    return result.stdout
