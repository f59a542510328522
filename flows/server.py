"""The Prefect server of one `pianoset` run, and stopping a run cleanly on SIGTERM/SIGINT.

Without `PREFECT_API_URL`, Prefect starts a temporary server (uvicorn, ~230 MB)
for the process and stops it at exit; after a `kill -9` of that process the
server lived on as an orphan, one per killed run. `prefect_server()` starts
that same temporary server itself, as a child that the kernel kills when the
run's process dies (PR_SET_PDEATHSIG), and points the run at it.

`stop_on_signals()` turns the first SIGTERM or SIGINT into `Stopped` in the main
thread after asking every task to stop (`tasks.collect.STOP`): specialists save
a checkpoint and exit, rollout workers and the server are terminated, and the
command exits non-zero; rerunning it resumes as after a kill.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import psutil

from tasks.stop import die_with_parent

logger = logging.getLogger(__name__)

def _server_class():
    from prefect.server.api.server import SubprocessASGIServer

    class OwnedServer(SubprocessASGIServer):
        """Prefect's temporary server, started as a child that dies with this process."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            real_popen = subprocess.Popen

            def popen(*args, **kwargs):
                return real_popen(*args, preexec_fn=die_with_parent, **kwargs)

            subprocess.Popen = popen  # only for this call: Prefect builds the command line itself
            try:
                return super()._run_uvicorn_command()
            finally:
                subprocess.Popen = real_popen

    return OwnedServer


@contextlib.contextmanager
def prefect_server() -> Iterator[str | None]:
    """A temporary Prefect server for the block (its API URL), unless `PREFECT_API_URL` names one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    server = _server_class()()
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        # Send the run's last logs while the server is up; the server's own goodbye is not sent
        # (else Prefect prints "Error logging to API" once it has gone).
        from prefect.logging.handlers import APILogWorker
        from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED

        with contextlib.suppress(Exception):
            APILogWorker.drain_all(timeout=5)
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
            server.stop()


class Stopped(BaseException):
    """The run was asked to stop by a signal (SIGTERM from a scheduler or `docker stop`, SIGINT).
    A BaseException, as KeyboardInterrupt: Prefect re-raises it instead of recording a failed flow."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


def terminate_children(timeout_s: float = 10.0) -> None:
    """SIGTERM every descendant process (specialist children save a checkpoint first), SIGKILL the
    ones still there after `timeout_s`."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside the block, SIGTERM/SIGINT set `tasks.collect.STOP` and raise `Stopped` in the main thread."""
    from tasks.stop import STOP

    def handler(signum, frame):
        if STOP.is_set():
            return  # already stopping
        STOP.set()
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except Stopped:
        terminate_children()
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_in_thread(fn, *args):
    """`fn(*args)` in a worker thread while the main thread waits, so that a signal reaches our handler
    at once: a flow run in the main thread installs Prefect's own SIGTERM handler, which stops the
    run only after every running task has finished (their child processes kept training)."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="pianoset-flow", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in result:
        raise result["error"]
    return result["value"]


def is_owned_server(proc: psutil.Process, prefect_home: str) -> bool:
    """Whether `proc` is a temporary Prefect server of a run with this PREFECT_HOME (for tests)."""
    try:
        cmdline = " ".join(proc.cmdline())
        return "prefect.server.api.server:create_app" in cmdline and proc.environ().get("PREFECT_HOME") == prefect_home
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False

