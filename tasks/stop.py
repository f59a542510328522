"""A process-wide request to stop, set by the CLI on SIGTERM/SIGINT (`flows.server.stop_on_signals`)
and checked by long tasks between units of work (a chunk, a rollout group, a training step), so that
a stopped run starts nothing new and leaves only complete, resumable files."""

import contextlib
import ctypes
import os
import signal
import threading

STOP = threading.Event()


class StopRequested(RuntimeError):
    """A task saw the stop request before (or while) doing its work."""


def check_stop(what: str) -> None:
    if STOP.is_set():
        raise StopRequested(f"{what}: not started, the run is stopping")


def die_with_parent() -> None:
    """The kernel sends this process SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG), so a
    `kill -9` of the run leaves no orphan (a specialist child saves a checkpoint first). As a
    `preexec_fn` it runs in the forked child before exec; only for a child started while no other
    thread can be importing (the Prefect server, started before any task): with `preexec_fn`,
    CPython takes the import and logging locks around the fork, which deadlocks against a thread
    importing a module (seen: a shard writer importing TensorFlow while a specialist was started)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


PARENT_ENV = "PIANOSET_PARENT_PID"


def child_env() -> dict[str, str]:
    """The environment of a child process that calls `die_with_parent_from_start` first thing
    (started without a `preexec_fn`, so safe from any thread)."""
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def die_with_parent_from_start() -> None:
    """First thing in a child started with `child_env()`: `die_with_parent`, then exit at once
    (143, as a SIGTERM) if the parent already died before the request was in place."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    die_with_parent()
    if os.getppid() != int(parent):
        raise SystemExit(128 + signal.SIGTERM)
