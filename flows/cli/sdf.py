"""`pianoset sdf`: PianoMime's goal autoencoder pre-trained on the goals of every song of some
catalog sources (App. G), saved and keyed like a policy, for the benchmark's pianomime methods."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.common import CATALOG_DIR, app, emit_json, fail, out, progress_bar


@app.command()
def sdf(
    source: list[str] = typer.Option(["robopianist"], "--source", "-s", help="robopianist, music21, or a MIDI file/dir (repeatable)"),
    out_dir: Path = typer.Option(Path("datasets/policies"), "--out", help="the autoencoder goes to OUT/sdf-<key>/"),
    max_steps: int = typer.Option(0, help="gradient steps (0: PianoMime's 100 epochs over the goals)"),
    limit: Optional[int] = typer.Option(None, help="at most N songs per source"),
    seed: int = typer.Option(0),
    workers: Optional[int] = typer.Option(None, help="catalog workers (default: all cores)"),
    catalog_dir: Path = typer.Option(CATALOG_DIR, help="the catalog whose per-file cache is read"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document on stdout"),
) -> None:
    """Pre-train the goal autoencoder on the sources' songs (reused when the same songs were done)."""
    from envs.music.songs import SongError
    from tasks.benchmark.sdf import pretrain_sdf

    if max_steps < 0 or (limit is not None and limit < 1):
        fail(f"--max-steps {max_steps} / --limit {limit}: need max-steps >= 0 and limit >= 1")
    with progress_bar("goal autoencoder", as_json) as bar:
        tasks = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task("songs read" if stage == "goals" else "training steps", total=total)
            bar.update(tasks[stage], completed=done)

        try:
            result = pretrain_sdf(source, out_dir, catalog_dir=catalog_dir, max_steps=max_steps, seed=seed,
                                  workers=workers, limit=limit, on_progress=progress)
        except (SongError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
    if as_json:
        emit_json(result)
        return
    verb = "reused" if result["reused"] else "trained"
    line = f"{verb} {result['sdf_dir']}: {result['goals']} distinct goals of {result['songs']} songs"
    if result.get("final_rmse_m") is not None:
        line += f", SDF RMSE {result['initial_rmse_m']:.3f} -> {result['final_rmse_m']:.3f} m"
    out.print(line + (f" ({result['skipped']} songs skipped: see sdf.json)" if result["skipped"] else ""))
