"""`pianoset songs` and `pianoset chunks`: the catalog and how a song is cut into episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.cli.common import (
    CATALOG_DIR,
    SOURCES,
    app,
    build_catalog_with_progress,
    emit_json,
    fail,
    out,
)


@app.command()
def songs(
    source: list[str] = typer.Option(["robopianist"], "--source", "-s", help="robopianist, music21, video:<demonstration or folder of them>, or a MIDI file/dir (repeatable)"),
    playable: Optional[bool] = typer.Option(None, "--playable/--unplayable", help="filter on playability"),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="substring of title or ref"),
    limit: int = typer.Option(20, help="rows to show in the table (--json lists all)"),
    build_limit: Optional[int] = typer.Option(None, help="only catalog the first N files per source (quick look)"),
    workers: Optional[int] = typer.Option(None, help="parallel workers (default: all cores)"),
    catalog_dir: Path = typer.Option(CATALOG_DIR, help="where the catalog is written"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document on stdout"),
) -> None:
    """Build (cached per file) and list the song catalog."""
    from envs.music.catalog import filter_catalog

    rows = build_catalog_with_progress(list(source), catalog_dir, workers, as_json, build_limit)
    sources_wanted = {s if s in SOURCES else "video" if s.startswith("video:") else "midi" for s in source}
    rows = [r for r in rows if r.source in sources_wanted]
    counts = {}
    for row in rows:
        c = counts.setdefault(row.source, {"total": 0, "playable": 0, "unplayable": 0})
        c["total"] += 1
        c["playable" if row.playable else "unplayable"] += 1
    shown = filter_catalog(rows, playable=playable, query=query)
    if as_json:
        emit_json({"counts": counts, "songs": [r.as_dict() for r in shown]})
        return
    table = Table(title=f"{len(shown)} songs")
    for col in ("id", "source", "title", "duration_s", "notes", "poly", "chunks", "playable / reason"):
        table.add_column(col)
    for row in shown[:limit]:
        table.add_row(row.id, row.source, row.title[:40], f"{row.duration_s:.1f}", str(row.n_notes),
                      str(row.max_polyphony), str(row.n_chunks), "yes" if row.playable else f"[red]{row.reason}[/red]")
    out.print(table)
    for src, c in counts.items():
        out.print(f"{src}: {c['total']} songs, {c['playable']} playable, {c['unplayable']} unplayable")


@app.command()
def chunks(
    song: str = typer.Argument(..., help="catalog ref, id, title, MIDI path or robopianist name"),
    write: Optional[Path] = typer.Option(None, help="also write the chunk files under this folder"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show how a song is cut into RP1M episodes (stretch 1.25, trimmed, 550 steps)."""
    from envs.music.catalog import resolve_song
    from envs.music.chunks import make_chunks, write_song_chunks
    from envs.music.songs import SongError

    try:
        the_song = resolve_song(song)
        pieces = make_chunks(the_song)
    except SongError as exc:
        fail(str(exc))
    written = [str(p) for p in write_song_chunks(the_song, write)] if write else []
    rows = []
    for chunk in pieces:
        n_notes = len(chunk.midi.seq.notes)
        rows.append({"chunk_id": chunk.chunk_id, "index": chunk.index, "n_steps": chunk.n_steps,
                     "seconds": round(chunk.n_steps * 0.05, 2), "notes_incl_context": n_notes})
    if as_json:
        emit_json({"song_id": the_song.song_id, "title": the_song.title, "chunks": rows, "written": written})
        return
    table = Table(title=f"{the_song.title} ({the_song.song_id}): {len(rows)} chunks")
    for col in ("chunk_id", "steps", "seconds", "notes"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["chunk_id"], str(r["n_steps"]), str(r["seconds"]), str(r["notes_incl_context"]))
    out.print(table)
    for path in written:
        out.print(f"wrote {path}")


