"""`pianoset stats` and `pianoset benchmark`: the dataset figures (RP1M Fig. 4) and the policy table (Table 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.cli.common import (
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


@app.command()
def stats(
    params: Optional[Path] = typer.Option(None, help="take the folders from this params.yaml (what `dvc repro stats` runs)"),
    shards_dir: Optional[Path] = typer.Option(None, help="default: collect.shards_dir (datasets/shards)"),
    out_dir: Optional[Path] = typer.Option(None, help="default: stats.reports_dir (datasets/reports/stats)"),
    song: Optional[list[str]] = typer.Option(None, "--song", help="only these song ids (repeatable)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dataset figures of RP1M Fig. 4 (pressed keys, active keys per piece, F1) as PNG files."""
    from tasks.params import ParamsError, load_params
    from tasks.stats import StatsError, compute_stats, write_reports

    try:
        loaded = load_params(params)
        shards_dir = shards_dir or Path(loaded["collect"]["shards_dir"])
        out_dir = out_dir or Path(loaded["stats"]["reports_dir"])
        result = compute_stats(shards_dir, songs=song or None)
    except (ParamsError, StatsError) as exc:
        fail(str(exc))
    paths = write_reports(result, out_dir)
    doc = json.loads((out_dir / "stats.json").read_text())
    if as_json:
        emit_json({"files": [str(p) for p in paths], "stats": doc})
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
    from dataclasses import replace

    from flows.benchmark import run_benchmark
    from flows.common import set_progress_hook
    from tasks.benchmark import BenchmarkConfig, BenchmarkError, build_table
    from tasks.params import ParamsError, load_params

    try:
        section = load_params(params)["benchmark"]
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
        fail(str(exc))
    config = replace(config, **{key: str(Path(getattr(config, key)).resolve()) for key in (
        "shards_dir", "work_dir", "specialists_dir", "policies_dir", "reports_dir")})
    with progress_bar("benchmark", as_json) as progress:
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
            summary = run_flow(run_benchmark, config)
        except BenchmarkError as exc:
            fail(str(exc))
        finally:
            set_progress_hook(None)
    table = build_table(config.reports_dir)
    failed = summary["failed"]["train"] + summary["failed"]["evaluate"]
    filled = sum(1 for row in table["rows"] for cell in row["cells"].values() if cell is not None)
    code = 0 if not failed else (EXIT_ALL_FAILED if not filled else EXIT_PARTIAL)
    if as_json:
        emit_json({**summary, "table": table, "exit_code": code})
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


