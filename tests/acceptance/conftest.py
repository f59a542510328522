"""Acceptance tests: the installed `pianoset` and `dvc` run as subprocesses in a fresh clone of the
repository, as a user runs them. `pianoset(...)` and `dvc(...)` are how every test calls them (the
README coverage test reads those calls)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv the tests run in: `make setup` installed pianoset here
PIANOSET = BIN / "pianoset"
DVC = BIN / "dvc"


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: the virtualenv on PATH, no PYTHONPATH, offscreen rendering."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    # CI=1 as on the CI machine (pyfluidsynth prints on stdout when it is set).
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa", CI="1",
               GIT_AUTHOR_NAME="pianoset tests", GIT_AUTHOR_EMAIL="tests@pianoset.invalid",
               GIT_COMMITTER_NAME="pianoset tests", GIT_COMMITTER_EMAIL="tests@pianoset.invalid", **extra)
    return env


class Project:
    """A fresh clone with its own Prefect home and DVC remote."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root = root
        self.env = user_env(PREFECT_HOME=str(scratch / "prefect"), PIANOSET_DVC_REMOTE=str(scratch / "remote"))

    def run(self, program: Path, *args: str, timeout: float = 900, cwd: Path | None = None):
        proc = subprocess.run([str(program), *args], cwd=cwd or self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        return proc

    def pianoset(self, command: str, *args: str, expect: int | None = 0, timeout: float = 900, cwd: Path | None = None):
        """`pianoset COMMAND ARGS --json`: (exit code, the JSON document, stderr)."""
        proc = self.run(PIANOSET, command, *args, "--json", timeout=timeout, cwd=cwd)
        assert expect is None or proc.returncode == expect, (
            f"pianoset {command} {' '.join(args)}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        doc = json.loads(proc.stdout) if proc.stdout.strip().startswith(("{", "[")) else None
        return proc.returncode, doc, proc.stderr

    def dvc(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = self.run(DVC, *args, timeout=timeout)
        assert proc.returncode == 0, f"dvc {' '.join(args)}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc


def fresh_clone(source: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(source), str(dest)], check=True, capture_output=True)
    return dest


@pytest.fixture(scope="session")
def installed():
    if not PIANOSET.exists() or not DVC.exists():
        pytest.fail(f"no installed pianoset/dvc in {BIN}: run `make setup` (the tests use the installed commands)")
    return PIANOSET
