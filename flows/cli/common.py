"""What every `pianoset` command shares: the typer app, consoles, JSON output, errors, progress bars."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Robot-piano learning data at scale (RP1M).")
out = Console()
err = Console(stderr=True)

CATALOG_DIR = Path("datasets/catalog")
SOURCES = ("robopianist", "music21")
EXIT_PARTIAL = 3  # some songs failed, the others are done
EXIT_ALL_FAILED = 4


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="show library warnings and TensorFlow's log")) -> None:
    """Robot-piano learning data at scale (RP1M)."""
    import logging
    import warnings

    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        logging.basicConfig(level=logging.INFO)
        return
    # Noise a CPU-only user cannot act on: pydub's audioop and other deprecation warnings,
    # glfw's missing DISPLAY (we render offscreen), absl's dtype notices from TFDS.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*DISPLAY environment variable is missing.*")
    logging.getLogger("absl").setLevel(logging.ERROR)


def emit_json(doc) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def progress_bar(label: str, quiet: bool):
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, disable=quiet
    )


def build_catalog_with_progress(sources: list[str], catalog_dir: Path, workers: Optional[int], quiet: bool,
                                limit: Optional[int] = None):
    from envs.music.catalog_build import build_catalog

    with progress_bar("building catalog", quiet) as progress:
        task_id = progress.add_task("catalog", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total)

        return build_catalog(sources, out_dir=catalog_dir, workers=workers, progress=report, limit=limit)



def run_flow(run, config):
    """`run(config)` with its own Prefect server and a clean stop on SIGTERM/SIGINT (`flows.server`):
    on a signal, child processes save what they can and end, the server is stopped, and the
    command exits 143 (SIGTERM) or 130 (SIGINT) at once, without waiting for in-process tasks
    (everything they write is atomic, so a rerun resumes as after a kill)."""
    from flows.server import Stopped, prefect_server, run_in_thread, stop_on_signals

    try:
        # The handler covers the server's start and stop too; on a signal the children (the server
        # too) end together.
        with stop_on_signals(), prefect_server():
            return run_in_thread(run, config)
    except Stopped as exc:
        err.print(f"[yellow]{exc}[/yellow]: the work done so far is kept; rerun the same command to resume")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.exit_code)
