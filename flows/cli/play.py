"""`pianoset evaluate` and `pianoset render`: play a controller, a specialist or a stored episode."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.cli.common import (
    app,
    emit_json,
    fail,
    out,
    progress_bar,
)


@app.command()
def evaluate(
    song: str = typer.Argument(..., help="catalog ref, id, title, MIDI path or robopianist name"),
    controller: str = typer.Option("random", help="random | zero"),
    max_chunks: Optional[int] = typer.Option(None, help="only the first N chunks"),
    seed: int = typer.Option(0),
    fingering: str = typer.Option("ot", help="ot | human | none (reward only; metrics don't depend on it)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run a fixed controller over every chunk of a song; print P/R/F1 per chunk."""
    import numpy as np

    from envs.music.catalog import resolve_song
    from envs.music.chunks import make_chunks
    from envs.music.songs import SongError
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env
    from envs.piano.rollout import CONTROLLERS, run_episode

    if controller not in CONTROLLERS:
        fail(f"--controller {controller!r}: expected one of {sorted(CONTROLLERS)}")
    try:
        config = EnvConfig().with_reward(fingering=fingering)
        the_song = resolve_song(song)
        pieces = make_chunks(the_song)[:max_chunks]
    except (SongError, ValueError) as exc:
        fail(str(exc))
    results = []
    with progress_bar("evaluating", as_json) as progress:
        task_id = progress.add_task("chunks", total=len(pieces))
        for chunk in pieces:
            env = make_env(chunk, config, seed=seed)
            record = run_episode(env, CONTROLLERS[controller](env), np.random.default_rng(seed))
            results.append({"chunk_id": chunk.chunk_id, "n_steps": record.n_steps,
                            **record.metrics.as_dict(), "return": record.episode_return,
                            "reward_terms": record.reward_term_totals})
            progress.advance(task_id)
    if as_json:
        emit_json({"song_id": the_song.song_id, "title": the_song.title, "controller": controller, "chunks": results})
        return
    table = Table(title=f"{the_song.title}: {controller} controller")
    for col in ("chunk", "steps", "precision", "recall", "F1", "return"):
        table.add_column(col)
    for r in results:
        table.add_row(r["chunk_id"], str(r["n_steps"]), f"{r['precision']:.3f}", f"{r['recall']:.3f}",
                      f"{r['f1']:.3f}", f"{r['return']:.1f}")
    out.print(table)


@app.command()
def render(
    out_file: Path = typer.Option(..., "--out", "-o", help="MP4 file to write"),
    specialist: Optional[Path] = typer.Option(None, help="a specialist work folder: play its chunk with the trained policy"),
    episode: Optional[Path] = typer.Option(None, help="a song's shard folder: replay one stored episode's actions"),
    index: int = typer.Option(0, help="which stored episode (with --episode)"),
    chunk_file: Optional[Path] = typer.Option(None, "--chunk", help="the chunk file of the stored episode (with --episode)"),
    camera: str = typer.Option("piano/topdown"),
    width: int = typer.Option(640),
    height: int = typer.Option(480),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write an MP4 (with the piano's sound) of a specialist or a stored episode."""
    from envs.music.songs import SongError
    from envs.piano.render import render_episode
    from tasks.play import episode_player, specialist_player

    if (specialist is None) == (episode is None):
        fail("give exactly one of --specialist WORK_DIR or --episode SONG_DIR")
    if episode is not None and chunk_file is None:
        fail("--episode needs --chunk CHUNK_FILE (the chunk the episode was collected on)")
    try:
        if specialist is not None:
            env, next_action, info = specialist_player(specialist)
        else:
            env, next_action, info = episode_player(episode, index, chunk_file)
    except (SongError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    result = render_episode(env, next_action, out_file, camera=camera, width=width, height=height)
    doc = {"path": str(result.path), "frames": result.n_frames, "fps": result.fps, "seconds": result.seconds,
           "midi_events": result.n_midi_events, **info}
    if as_json:
        emit_json(doc)
    else:
        out.print(f"wrote {result.path}: {result.n_frames} frames at {result.fps:g} fps, "
                  f"{result.n_midi_events} MIDI events")


