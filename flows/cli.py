"""The `pianoset` command line (typer + rich).

Every command that lists or reports takes `--json`: one JSON document on
stdout, nothing else, for scripts. Progress bars go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The ephemeral Prefect server can take longer than Prefect's 20 s default to
# start on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# No telemetry: these machines reach no network beyond package registries.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Robot-piano learning data at scale (RP1M).")
out = Console()
err = Console(stderr=True)

CATALOG_DIR = Path("datasets/catalog")
SOURCES = ("robopianist", "music21")


def _emit_json(doc) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _progress(label: str, quiet: bool):
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, disable=quiet
    )
    return progress


def build_catalog_with_progress(sources: list[str], catalog_dir: Path, workers: Optional[int], quiet: bool,
                                limit: Optional[int] = None):
    from envs.music.catalog import build_catalog

    with _progress("building catalog", quiet) as progress:
        task_id = progress.add_task("catalog", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total)

        return build_catalog(sources, out_dir=catalog_dir, workers=workers, progress=report, limit=limit)


def resolve_song(song: str, catalog_dir: Path = CATALOG_DIR):
    """A song given as a catalog ref ("music21:bach/bwv66.6"), a MIDI path, a
    catalog id or title, or a robopianist library name."""
    from envs.music.songs import SongError, load_song

    if ":" in song or Path(song).suffix.lower() in (".mid", ".midi"):
        return load_song(song)
    try:
        from envs.music.catalog import load_catalog

        for row in load_catalog(catalog_dir):
            if song in (row.id, row.title):
                return load_song(row.ref)
    except (FileNotFoundError, SongError):
        pass  # no catalog built yet: try the name as a robopianist library song
    return load_song(f"robopianist:{song}")


@app.command()
def songs(
    source: list[str] = typer.Option(["robopianist"], "--source", "-s", help="robopianist, music21, or a MIDI file/dir (repeatable)"),
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
    sources_wanted = {s if s in SOURCES else "midi" for s in source}
    rows = [r for r in rows if r.source in sources_wanted]
    counts = {}
    for row in rows:
        c = counts.setdefault(row.source, {"total": 0, "playable": 0, "unplayable": 0})
        c["total"] += 1
        c["playable" if row.playable else "unplayable"] += 1
    shown = filter_catalog(rows, playable=playable, query=query)
    if as_json:
        _emit_json({"counts": counts, "songs": [r.as_dict() for r in shown]})
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
    from envs.music.chunks import make_chunks, write_song_chunks
    from envs.music.songs import SongError

    try:
        the_song = resolve_song(song)
        pieces = make_chunks(the_song)
    except SongError as exc:
        _fail(str(exc))
    written = [str(p) for p in write_song_chunks(the_song, write)] if write else []
    rows = []
    for chunk in pieces:
        n_notes = len(chunk.midi.seq.notes)
        rows.append({"chunk_id": chunk.chunk_id, "index": chunk.index, "n_steps": chunk.n_steps,
                     "seconds": round(chunk.n_steps * 0.05, 2), "notes_incl_context": n_notes})
    if as_json:
        _emit_json({"song_id": the_song.song_id, "title": the_song.title, "chunks": rows, "written": written})
        return
    table = Table(title=f"{the_song.title} ({the_song.song_id}): {len(rows)} chunks")
    for col in ("chunk_id", "steps", "seconds", "notes"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["chunk_id"], str(r["n_steps"]), str(r["seconds"]), str(r["notes_incl_context"]))
    out.print(table)
    for path in written:
        out.print(f"wrote {path}")


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

    from envs.music.chunks import make_chunks
    from envs.music.songs import SongError
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env
    from envs.piano.rollout import CONTROLLERS, run_episode

    if controller not in CONTROLLERS:
        _fail(f"--controller {controller!r}: expected one of {sorted(CONTROLLERS)}")
    try:
        config = EnvConfig().with_reward(fingering=fingering)
        the_song = resolve_song(song)
        pieces = make_chunks(the_song)[:max_chunks]
    except (SongError, ValueError) as exc:
        _fail(str(exc))
    results = []
    with _progress("evaluating", as_json) as progress:
        task_id = progress.add_task("chunks", total=len(pieces))
        for chunk in pieces:
            env = make_env(chunk, config, seed=seed)
            record = run_episode(env, CONTROLLERS[controller](env), np.random.default_rng(seed))
            results.append({"chunk_id": chunk.chunk_id, "n_steps": record.n_steps,
                            **record.metrics.as_dict(), "return": record.episode_return,
                            "reward_terms": record.reward_term_totals})
            progress.advance(task_id)
    if as_json:
        _emit_json({"song_id": the_song.song_id, "title": the_song.title, "controller": controller, "chunks": results})
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
    from dataclasses import replace

    import numpy as np

    from envs.music.chunks import load_chunk
    from envs.music.songs import SongError
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env
    from envs.piano.render import render_episode

    if (specialist is None) == (episode is None):
        _fail("give exactly one of --specialist WORK_DIR or --episode SONG_DIR")
    info: dict = {}
    try:
        if specialist is not None:
            from agents import droq
            from agents.common import to_env_action
            from envs.piano.env import flatten_observation
            from tasks.specialist import load_specialist

            state, manifest = load_specialist(specialist)
            chunk = load_chunk(specialist / "chunk.json")
            config = replace(EnvConfig.from_dict(manifest["env_config"]), change_color_on_activation=True)
            env = make_env(chunk, config)
            spec = env.action_spec()

            def next_action(obs, t):
                action = np.asarray(droq.eval_actions(state, flatten_observation(obs)))
                return to_env_action(action, spec.minimum, spec.maximum)

            info = {"specialist_id": manifest["specialist_id"], "chunk_id": chunk.chunk_id}
        else:
            from tasks.rlds.reader import iterate_episodes

            if chunk_file is None:
                _fail("--episode needs --chunk CHUNK_FILE (the chunk the episode was collected on)")
            chunk = load_chunk(chunk_file)
            stored = None
            for i, ep in enumerate(iterate_episodes([episode])):
                if i == index:
                    stored = ep
                    break
            if stored is None:
                _fail(f"{episode}: has no episode {index}")
            if stored.metadata["chunk_id"] != chunk.chunk_id:
                _fail(f"episode {index} of {episode} was collected on chunk {stored.metadata['chunk_id']}, "
                      f"not {chunk.chunk_id} ({chunk_file})")
            env = make_env(chunk, EnvConfig(change_color_on_activation=True))
            actions = stored.steps["action"]

            def next_action(obs, t):
                return actions[t]

            info = {"chunk_id": chunk.chunk_id, "stored_f1": float(stored.metadata["f1"]),
                    "rollout_seed": int(stored.metadata["rollout_seed"])}
    except (SongError, FileNotFoundError) as exc:
        _fail(str(exc))
    result = render_episode(env, next_action, out_file, camera=camera, width=width, height=height)
    doc = {"path": str(result.path), "frames": result.n_frames, "fps": result.fps, "seconds": result.seconds,
           "midi_events": result.n_midi_events, **info}
    if as_json:
        _emit_json(doc)
    else:
        out.print(f"wrote {result.path}: {result.n_frames} frames at {result.fps:g} fps, "
                  f"{result.n_midi_events} MIDI events")


def _songs_from_catalog(spec: dict) -> list[str]:
    """Song refs of the playable catalog rows matching params.yaml's catalog_filter."""
    from envs.music.catalog import filter_catalog, load_catalog

    rows = filter_catalog(load_catalog(CATALOG_DIR), source=spec.get("source"), playable=spec.get("playable", True),
                          max_duration=spec.get("max_duration_s"))
    refs = [row.ref for row in rows][: spec.get("limit")]
    if not refs:
        _fail(f"params.yaml collect.catalog_filter {spec} matches no song in {CATALOG_DIR} (run `pianoset songs` first)")
    return refs


EXIT_PARTIAL = 3  # some songs failed, the others are done
EXIT_ALL_FAILED = 4


@app.command()
def collect(
    songs: Optional[list[str]] = typer.Option(None, "--song", "-s", help="song ref (repeatable); default: params or two built-in songs"),
    params: Optional[Path] = typer.Option(None, help="read the `collect` section of this params.yaml"),
    profile: Optional[str] = typer.Option(None, help="smoke | cpu | paper"),
    specialist: Optional[str] = typer.Option(
        None, help="droq (RP1M, default) | residual (DroQ around the OT-IK controller) | ik (OT-IK alone, no training)"),
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
    from flows.collect import run_collection, set_progress_hook
    from tasks.collect import CollectConfig

    section = {}
    if params is not None:
        import yaml

        if not params.exists():
            _fail(f"{params}: no such params file")
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
        _fail(str(exc))
    # Absolute paths: tasks may run in other processes (child, Ray worker) with another cwd.
    from dataclasses import replace

    config = replace(config, work_dir=str(Path(config.work_dir).resolve()),
                     shards_dir=str(Path(config.shards_dir).resolve()),
                     specialists_dir=str(Path(config.specialists_dir).resolve()))
    with _progress("collecting", as_json) as progress:
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
        _emit_json({**summary, "exit_code": code})
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
        _emit_json({"songs": rows})
        return
    table = Table(title=f"{len(rows)} songs")
    for col in ("song", "song_id", "status", "episodes", "steps", "failure"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["ref"]), r["song_id"], r["status"], str(r["episodes"]), str(r["steps"]),
                      f"{r['stage']}: {(r['error'] or '')[:60]}" if r["status"] == "failed" else "")
    out.print(table)


@app.command()
def stats(
    shards_dir: Path = typer.Option(Path("datasets/shards")),
    out_dir: Path = typer.Option(Path("datasets/reports/stats")),
    song: Optional[list[str]] = typer.Option(None, "--song", help="only these song ids (repeatable)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dataset figures of RP1M Fig. 4 (pressed keys, active keys per piece, F1) as PNG files."""
    from tasks.stats import StatsError, compute_stats, write_reports

    try:
        result = compute_stats(shards_dir, songs=song or None)
    except StatsError as exc:
        _fail(str(exc))
    paths = write_reports(result, out_dir)
    doc = json.loads((out_dir / "stats.json").read_text())
    if as_json:
        _emit_json({"files": [str(p) for p in paths], "stats": doc})
        return
    for path in paths:
        out.print(f"wrote {path}")


@app.command()
def benchmark(
    params: Optional[Path] = typer.Option(None, help="read the `benchmark` section of this params.yaml"),
    profile: Optional[str] = typer.Option(None, help="training budget per policy: smoke | cpu | paper"),
    steps: Optional[int] = typer.Option(None, help="training steps per policy (overrides the profile's)"),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="only this method label (repeatable)"),
    train_size: Optional[list[int]] = typer.Option(None, "--train-size", help="train on the first N songs (repeatable)"),
    max_chunks: Optional[int] = typer.Option(None, help="evaluate only the first N chunks of each song"),
    max_steps: Optional[int] = typer.Option(None, help="cut evaluation episodes to their first N steps"),
    workers: Optional[int] = typer.Option(None, help="tasks run at once"),
    shards_dir: Optional[str] = typer.Option(None),
    work_dir: Optional[str] = typer.Option(None),
    policies_dir: Optional[str] = typer.Option(None),
    reports_dir: Optional[str] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train multi-song policies on the shards and score them like RP1M Table 2 (rerun = only what changed)."""
    import copy
    from dataclasses import replace

    from flows.benchmark import run_benchmark, set_progress_hook
    from tasks.benchmark import BenchmarkConfig, BenchmarkError, build_table
    from tasks.params import DEFAULTS, ParamsError, load_params

    try:
        section = load_params(params)["benchmark"] if params is not None else copy.deepcopy(DEFAULTS["benchmark"])
        if max_chunks is not None or max_steps is not None:
            section["eval"] = {**section["eval"], **{k: v for k, v in (("max_chunks_per_song", max_chunks),
                                                                     ("max_steps", max_steps)) if v is not None}}
        config = BenchmarkConfig.from_params(
            section, profile=profile, steps=steps, train_sizes=tuple(train_size) if train_size else None,
            workers=workers, shards_dir=shards_dir, work_dir=work_dir, policies_dir=policies_dir,
            reports_dir=reports_dir)
        if method:
            unknown = sorted(set(method) - {m.label for m in config.methods})
            if unknown:
                raise BenchmarkError(f"--method {unknown}: expected labels among {[m.label for m in config.methods]}")
            config = replace(config, methods=tuple(m for m in config.methods if m.label in method))
    except (ParamsError, ValueError, TypeError) as exc:
        _fail(str(exc))
    config = replace(config, **{key: str(Path(getattr(config, key)).resolve()) for key in (
        "shards_dir", "work_dir", "specialists_dir", "policies_dir", "reports_dir")})
    with _progress("benchmark", as_json) as progress:
        task_id = progress.add_task("evaluations", total=None)

        def hook(event: str, info: dict) -> None:
            if event == "planned":
                progress.update(task_id, total=info["evaluations"])
            elif event == "trained" and info["status"] == "failed":
                err.print(f"  {info['method']} ({info['train_songs']} songs): training failed: {info['error'][:200]}")
            elif event == "evaluated":
                progress.advance(task_id)

        set_progress_hook(hook)
        try:
            summary = run_benchmark(config)
        except BenchmarkError as exc:
            _fail(str(exc))
        finally:
            set_progress_hook(None)
    table = build_table(config.reports_dir)
    failed = summary["failed"]["train"] + summary["failed"]["evaluate"]
    filled = sum(1 for row in table["rows"] for cell in row["cells"].values() if cell is not None)
    code = 0 if not failed else (EXIT_ALL_FAILED if not filled else EXIT_PARTIAL)
    if as_json:
        _emit_json({**summary, "table": table, "exit_code": code})
        raise typer.Exit(code)
    view = Table(title=f"F1 ({config.profile}, {config.train_steps:,} training steps)")
    for col in ("task", "#songs", *table["methods"]):
        view.add_column(col)
    for row in table["rows"]:
        view.add_row(row["title"], str(row["train_songs"]),
                     *(f"{cell['f1']:.3f}" if cell else "-" for cell in row["cells"].values()))
    out.print(view)
    for entry in [*summary["policies"], *summary["evaluations"]]:
        if entry["status"] == "failed":
            out.print(f"[red]failed[/red] {entry['method']} ({entry['train_songs']} songs"
                      f"{', ' + entry['group'] if 'group' in entry else ''}): {entry['error'][:200]}")
    out.print(f"tasks run {summary['tasks_run']}, reused {summary['tasks_reused']}; {summary['seconds']} s")
    for path in summary["files"]:
        out.print(f"wrote {path}")
    raise typer.Exit(code)


@app.command()
def publish(
    tag: str = typer.Option(..., "--tag", help="version tag to create, e.g. v1"),
    message: Optional[str] = typer.Option(None),
    push: bool = typer.Option(True, "--push/--no-push", help="push the data to the DVC remote"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record the current shards and specialists with DVC, push them, git-commit and tag."""
    from tasks.registry import RegistryError
    from tasks.registry import publish as publish_version

    try:
        result = publish_version(Path.cwd(), tag, message=message, push=push)
    except RegistryError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json(result)
    else:
        out.print(f"published {result['tag']} at {result['commit'][:10]}: {result['files_pushed']} files pushed "
                  f"to {result['remote']}")


@app.command()
def pull(
    rev: str = typer.Option(..., "--rev", help="version (tag, branch or commit)"),
    songs: Optional[str] = typer.Option(None, "--songs", help="comma-separated song ids (default: all)"),
    shards_dir: str = typer.Option("datasets/shards"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fetch versioned song shards (only the given songs) into the working tree."""
    from tasks.registry import RegistryError
    from tasks.registry import pull as pull_version

    wanted = [s.strip() for s in songs.split(",") if s.strip()] if songs else None
    try:
        paths = pull_version(Path.cwd(), rev, wanted, shards_dir=shards_dir)
    except RegistryError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json({"rev": rev, "songs": [str(p) for p in paths]})
        return
    for path in paths:
        out.print(f"pulled {path}")
    if paths:
        out.print("read them with:\n  import tensorflow_datasets as tfds\n"
                  f"  ds = tfds.builder_from_directory('{paths[0]}/1.0.0').as_dataset(split='train')")


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
