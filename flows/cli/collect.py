"""`pianoset collect`, `status` and `demo`: launch or resume a collection, and see where it stands."""

from __future__ import annotations

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
    run_flow,
)
from tasks.rlds.spec import DATASET_VERSION


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
    plan: bool = typer.Option(False, "--plan", help="run nothing: what would run or be reused, CPU-hours, disk"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Launch (or resume: rerun the same command) an RP1M-style collection."""
    from envs.music.catalog import select_songs
    from flows.collect import run_collection
    from flows.common import set_progress_hook
    from tasks.collect import CollectConfig
    from tasks.params import ParamsError, load_params

    try:
        section = load_params(params)["collect"]
        spec = section.pop("catalog_filter", None)
        if spec and not songs:
            section["songs"] = select_songs(spec, CATALOG_DIR)
        config = CollectConfig.from_params(
            section, songs=tuple(songs) if songs else None, profile=profile, specialist=specialist,
            n_rollouts=rollouts, workers=workers,
            parallel_chunks=parallel_chunks, seed=seed, runner=runner, ray_address=address, work_dir=work_dir,
            shards_dir=shards_dir, register=register)
    except (ParamsError, ValueError) as exc:
        fail(str(exc))
    # Absolute paths: tasks may run in other processes (child, Ray worker) with another cwd.
    from dataclasses import replace

    config = replace(config, work_dir=str(Path(config.work_dir).resolve()),
                     shards_dir=str(Path(config.shards_dir).resolve()),
                     specialists_dir=str(Path(config.specialists_dir).resolve()))
    if plan:
        from flows.cli.plan import show_plan

        show_plan(config, CATALOG_DIR, as_json)
        return
    with progress_bar("collecting", as_json) as progress:
        task_id = progress.add_task("songs", total=len(config.songs))

        def hook(event: str, info: dict) -> None:
            if event == "song":
                progress.advance(task_id)
                err.print(f"  {info['ref']}: {info['status']}" + (f" at {info['stage']}" if info.get("stage") else ""))

        set_progress_hook(hook)
        try:
            summary = run_flow(run_collection, config)
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
    params: Optional[Path] = typer.Option(None, help="take the folders from the `collect` section of this params.yaml"),
    work_dir: Optional[str] = typer.Option(None, help="default: collect.work_dir (work)"),
    shards_dir: Optional[str] = typer.Option(None, help="default: collect.shards_dir (datasets/shards)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """done / failed / pending per song, read from the files (manifests, status records)."""
    from tasks.collect import collection_status
    from tasks.params import ParamsError, load_params

    try:
        section = load_params(params)["collect"]
    except ParamsError as exc:
        fail(str(exc))
    rows = collection_status(work_dir or section["work_dir"], shards_dir or section["shards_dir"])
    if as_json:
        emit_json({"songs": rows})
        return
    table = Table(title=f"{len(rows)} songs")
    for col in ("song", "song_id", "status", "chunks trained/rolled out", "episodes", "steps", "failure"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["ref"] or ""), r["song_id"], r["status"], f"{r['trained']}/{r['rolled_out']} of {r['chunks']}",
                      str(r["episodes"]), str(r["steps"]),
                      f"{r['stage']}: {(r['error'] or '')[:60]}" if r["status"] == "failed" else "")
    out.print(table)
    states = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "partial", "pending", "failed")}
    out.print(", ".join(f"{n} {s}" for s, n in states.items() if n)
              + f"; chunks trained {sum(r['trained'] for r in rows)}, rolled out {sum(r['rolled_out'] for r in rows)}"
              f" of {sum(r['chunks'] for r in rows)}")



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
    summary = run_flow(run_collection, config)
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
    out.print(f"  ds = tfds.builder_from_directory('{done[0]['shards']}/{DATASET_VERSION}').as_dataset(split='train')",
              soft_wrap=True)


if __name__ == "__main__":
    app()
