"""Pieces both flows (collect, benchmark) use: the CLI's progress hook and failure checks."""

from __future__ import annotations

from typing import Callable

ProgressHook = Callable[[str, dict], None]


class Progress:
    """Where a flow reports progress events (event name, info dict); the CLI sets the hook."""

    def __init__(self) -> None:
        self.hook: ProgressHook | None = None

    def set_hook(self, hook: ProgressHook | None) -> None:
        """A callback (event, info) the CLI uses to draw progress; None to remove."""
        self.hook = hook

    def emit(self, event: str, **info) -> None:
        if self.hook is not None:
            self.hook(event, info)


# One hook for both flows (the CLI runs one at a time). `emit` is a module
# function, not the bound method: Ray's runner pickles a flow's function by
# value, and a function is pickled by reference where a bound method would
# drag the CLI's hook (and its locks) along.
PROGRESS = Progress()
set_progress_hook = PROGRESS.set_hook  # the CLI draws progress through this


def emit(event: str, **info) -> None:
    PROGRESS.emit(event, **info)


def error_of(future) -> str:
    """The exception a Prefect future ended with, as 'Type: message' ('' when it succeeded)."""
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - the message is the point
        return f"{type(exc).__name__}: {exc}"[:2000]
    return ""


def failed(future) -> bool:
    """Whether the task failed, crashed, was cancelled, or never ran because an upstream task failed."""
    state = future.state
    return state.is_failed() or state.is_crashed() or state.is_cancelled() or (
        state.is_pending() and state.name == "NotReady")
