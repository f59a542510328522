"""A process-wide request to stop, set by the CLI on SIGTERM/SIGINT (`flows.server.stop_on_signals`)
and checked by long tasks between units of work (a chunk, a rollout group, a training step), so that
a stopped run starts nothing new and leaves only complete, resumable files."""

import contextlib
import ctypes
import signal
import threading

STOP = threading.Event()


class StopRequested(RuntimeError):
    """A task saw the stop request before (or while) doing its work."""


def check_stop(what: str) -> None:
    if STOP.is_set():
        raise StopRequested(f"{what}: not started, the run is stopping")


def die_with_parent() -> None:
    """In a child before exec: the kernel sends it SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG),
    so a `kill -9` of the run leaves no orphan (a specialist child saves a checkpoint first)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
