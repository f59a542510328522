"""`pianoset export`: the collection's shards in another dataset format (LeRobot v3.0)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.common import CATALOG_DIR, app, emit_json, fail, out

FORMATS = ("lerobot",)


@app.command()
def export(
    out_dir: Path = typer.Argument(..., metavar="OUT", help="the dataset folder to write (replaced whole)"),
    format: str = typer.Option("lerobot", "--format", help="lerobot (LeRobotDataset v3.0)"),
    songs: Optional[str] = typer.Option(None, "--songs", help="comma-separated song ids (default: all complete songs)"),
    params: Optional[Path] = typer.Option(None, help="take the shards folder from this params.yaml"),
    shards_dir: Optional[str] = typer.Option(None, help="default: collect.shards_dir (datasets/shards)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write the song shards as a LeRobot dataset (parquet episodes, meta/info.json, stats)."""
    from envs.music.catalog import load_catalog
    from envs.music.songs import SongError
    from tasks.export.lerobot import export_lerobot
    from tasks.params import ParamsError, load_params
    from tasks.rlds import complete_songs, is_complete

    if format not in FORMATS:
        fail(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    try:
        shards = Path(shards_dir or load_params(params)["collect"]["shards_dir"])
    except ParamsError as exc:
        fail(str(exc))
    if songs:
        dirs = [shards / s.strip() for s in songs.split(",") if s.strip()]
        missing = [d.name for d in dirs if not is_complete(d)]
        if missing:
            fail(f"--songs: {', '.join(missing)} not complete song folders under {shards}")
    else:
        dirs = complete_songs(shards)
        if not dirs:
            fail(f"{shards}: no complete song folders to export (run `pianoset collect` first)")
    try:
        titles = {row.id: row.title for row in load_catalog(CATALOG_DIR) if row.id}
    except SongError:
        titles = {}  # no catalog built: tasks name the song id
    info = export_lerobot(dirs, out_dir, titles=titles)
    summary = {"format": format, "out": str(out_dir), "songs": [d.name for d in dirs],
               "episodes": info["total_episodes"], "frames": info["total_frames"], "tasks": info["total_tasks"],
               "fps": info["fps"]}
    if as_json:
        emit_json(summary)
        return
    out.print(f"wrote {out_dir}: {summary['episodes']} episodes, {summary['frames']} frames, {summary['tasks']} tasks "
              f"of {len(dirs)} songs (LeRobot v3.0, {info['fps']} fps)")
