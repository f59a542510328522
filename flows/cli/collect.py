"""`pianoset collect`, `status` and `demo`: launch or resume a collection, and see where it stands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.cli.common import (
    CATALOG_DIR,
    EXIT_ALL_FAILED,
    EXIT_PARTIAL,
    app,
    emit_json,
    err,
    fail,
    out,
    progress_bar,
)


def _songs_from_catalog(spec: dict) -> list[str]:
    """Song refs of the playable catalog rows matching params.yaml's catalog_filter."""
    from envs.music.catalog import filter_catalog, load_catalog

    rows = filter_catalog(load_catalog(CATALOG_DIR), source=spec.get("source"), playable=spec.get("playable", True),
                          max_duration=spec.get("max_duration_s"))
    refs = [row.ref for row in rows][: spec.get("limit")]
    if not refs:
        fail(f"params.yaml collect.catalog_filter {spec} matches no song in {CATALOG_DIR} (run `pianoset songs` first)")
    return refs




@app.command()
def collect(
    songs: Optional[list[str]] = typer.Option(None, "--song", "-s", help="song ref (repeatable); default: params or two built-in songs"),
    params: Optional[Path] = typer.Option(None, help="read the `collect` section of this params.yaml"),
    profile: Optional[str] = typer.Option(None, help="smoke | cpu | paper"),
    specialist: Optional[str] = typer.Option(
        None, help="droq (RP1M, default) | residual (DroQ around the OT-IK controller) | ik (OT-IK alone, no training) "
                   "| mpc (OT-IK optimised by sampling MPC, no training)"),
    rollouts: Optional[int] = typer.Option(None, help="rollouts per specialist (default per profile; RP1M: 500)"),
    workers: Optional[int] = typer.Option(None, help="rollout worker processes per chunk"),
    parallel_chunks: Optional[int] = typer.Option(None, help="chunks trained at once (local runner)"),
    seed: Optional[int] = typer.Option(None),
    runner: Optional[str] = typer.Option(None, help="local | ray"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (with --runner ray)"),
    work_dir: Optional[str] = typer.Option(None),
    shards_dir: Optional[str] = typer.Option(None),
    register: Optional[bool] = typer.Option(None, "--register/--no-register", help="record new shards with DVC"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Launch (or resume: rerun the same command) an RP1M-style collection."""
    from flows.collect import run_collection
    from flows.common import set_progress_hook
    from tasks.collect import CollectConfig

    section = {}
    if params is not None:
        import yaml

        if not params.exists():
            fail(f"{params}: no such params file")
        section = dict((yaml.safe_load(params.read_text()) or {}).get("collect", {}))
        spec = section.pop("catalog_filter", None)
        if spec and not songs and not section.get("songs"):
            section["songs"] = _songs_from_catalog(spec)
    try:
        config = CollectConfig.from_params(
            section, songs=tuple(songs) if songs else None, profile=profile, specialist=specialist,
            n_rollouts=rollouts, workers=workers,
            parallel_chunks=parallel_chunks, seed=seed, runner=runner, address=address, work_dir=work_dir,
            shards_dir=shards_dir, register=register)
    except ValueError as exc:
        fail(str(exc))
    # Absolute paths: tasks may run in other processes (child, Ray worker) with another cwd.
    from dataclasses import replace

    config = replace(config, work_dir=str(Path(config.work_dir).resolve()),
                     shards_dir=str(Path(config.shards_dir).resolve()),
                     specialists_dir=str(Path(config.specialists_dir).resolve()))
    with progress_bar("collecting", as_json) as progress:
        task_id = progress.add_task("songs", total=len(config.songs))

        def hook(event: str, info: dict) -> None:
            if event == "song":
                progress.advance(task_id)
                err.print(f"  {info['ref']}: {info['status']}" + (f" at {info['stage']}" if info.get("stage") else ""))

        set_progress_hook(hook)
        try:
            summary = run_collection(config)
        finally:
            set_progress_hook(None)
    code = 0
    if summary["counts"]["failed"]:
        code = EXIT_ALL_FAILED if summary["counts"]["failed"] == len(config.songs) else EXIT_PARTIAL
    if as_json:
        emit_json({**summary, "exit_code": code})
        raise typer.Exit(code)
    table = Table(title=f"collection ({config.profile}, {config.rollouts} rollouts/chunk)")
    for col in ("song", "song_id", "status", "detail"):
        table.add_column(col)
    for ref, rec in summary["songs"].items():
        detail = f"{rec.get('stage')}: {rec.get('error', '')[:80]}" if rec["status"] == "failed" else rec.get("shards", "")
        table.add_row(ref, rec.get("song_id", "-"), rec["status"], detail)
    out.print(table)
    out.print(f"done {summary['counts']['done']}, cached {summary['counts']['cached']}, failed "
              f"{summary['counts']['failed']}; tasks run {summary['tasks_run']}, reused {summary['tasks_reused']}; "
              f"{summary['seconds']} s")
    raise typer.Exit(code)


@app.command()
def status(
    work_dir: str = typer.Option("work"),
    shards_dir: str = typer.Option("datasets/shards"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """done / failed / pending per song, read from the files (manifests, status records)."""
    from tasks.rlds import read_manifest

    rows = []
    status_dir = Path(work_dir) / "status"
    for path in sorted(status_dir.glob("*.json")) if status_dir.exists() else []:
        rec = json.loads(path.read_text())
        song_dir = Path(shards_dir) / rec["song_id"]
        try:
            manifest = read_manifest(song_dir)
            episodes, steps = manifest.n_episodes, manifest.n_steps
        except Exception:  # noqa: BLE001 - absent or incomplete folder
            episodes, steps = 0, 0
        state = rec["status"]
        if state in ("done", "cached") and not episodes:
            state = "pending"  # the record says done but the shards are gone
        rows.append({"ref": rec.get("ref"), "song_id": rec["song_id"], "status": state, "stage": rec.get("stage"),
                     "error": rec.get("error"), "episodes": episodes, "steps": steps})
    if as_json:
        emit_json({"songs": rows})
        return
    table = Table(title=f"{len(rows)} songs")
    for col in ("song", "song_id", "status", "episodes", "steps", "failure"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["ref"]), r["song_id"], r["status"], str(r["episodes"]), str(r["steps"]),
                      f"{r['stage']}: {(r['error'] or '')[:60]}" if r["status"] == "failed" else "")
    out.print(table)



@app.command()
def demo() -> None:
    """The main job on the built-in defaults: collect two built-in songs at the smoke
    budget (train, roll out, write RLDS shards, register with DVC), then show how
    to read the shards."""
    from flows.collect import run_collection
    from tasks.collect import CollectConfig

    config = CollectConfig()
    config = CollectConfig(work_dir=str(Path(config.work_dir).resolve()),
                           shards_dir=str(Path(config.shards_dir).resolve()),
                           specialists_dir=str(Path(config.specialists_dir).resolve()))
    out.print(f"collecting {', '.join(config.songs)} at the '{config.profile}' budget, "
              f"{config.rollouts} rollouts per chunk")
    summary = run_collection(config)
    for ref, rec in summary["songs"].items():
        out.print(f"  {ref}: {rec['status']}" + (f" ({rec.get('stage')}: {rec.get('error', '')[:200]})"
                                                 if rec["status"] == "failed" else f" -> {rec.get('shards')}"))
    out.print(f"tasks run {summary['tasks_run']}, reused {summary['tasks_reused']}, {summary['seconds']} s")
    done = [rec for rec in summary["songs"].values() if rec["status"] in ("done", "cached")]
    if not done:
        raise typer.Exit(EXIT_ALL_FAILED)
    registered = summary.get("registered") or {}
    if registered.get("error"):
        out.print(f"DVC registration failed: {registered['error']}")
    elif registered:
        out.print("registered with DVC (dvc.lock); `pianoset publish --tag v1` pushes and tags this version")
    out.print(f"\nshards are in {config.shards_dir}; read one with:\n")
    out.print("  import tensorflow_datasets as tfds", soft_wrap=True)
    out.print(f"  ds = tfds.builder_from_directory('{done[0]['shards']}/1.0.0').as_dataset(split='train')",
              soft_wrap=True)


if __name__ == "__main__":
    app()
