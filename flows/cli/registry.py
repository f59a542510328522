"""`pianoset publish` and `pianoset pull`: versioned shards with DVC."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.common import (
    app,
    emit_json,
    fail,
    out,
)
from tasks.rlds.spec import DATASET_VERSION


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
        fail(str(exc))
    if as_json:
        emit_json(result)
    else:
        out.print(f"published {result['tag']} at {result['commit'][:10]}: {result['files_pushed']} files pushed "
                  f"to {result['remote']}")


@app.command()
def pull(
    rev: str = typer.Option(..., "--rev", help="version (tag, branch or commit)"),
    songs: Optional[str] = typer.Option(None, "--songs", help="comma-separated song ids (default: all)"),
    params: Optional[Path] = typer.Option(None, help="take the shards folder from this params.yaml"),
    shards_dir: Optional[str] = typer.Option(None, help="default: collect.shards_dir (datasets/shards)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fetch versioned song shards (only the given songs) into the working tree."""
    from tasks.params import ParamsError, load_params
    from tasks.registry import RegistryError
    from tasks.registry import pull as pull_version

    wanted = [s.strip() for s in songs.split(",") if s.strip()] if songs else None
    try:
        shards_dir = shards_dir or load_params(params)["collect"]["shards_dir"]
        paths = pull_version(Path.cwd(), rev, wanted, shards_dir=shards_dir)
    except (ParamsError, RegistryError) as exc:
        fail(str(exc))
    if as_json:
        emit_json({"rev": rev, "songs": [str(p) for p in paths]})
        return
    for path in paths:
        out.print(f"pulled {path}")
    if paths:
        out.print("read them with:\n  import tensorflow_datasets as tfds\n"
                  f"  ds = tfds.builder_from_directory('{paths[0]}/{DATASET_VERSION}').as_dataset(split='train')")


