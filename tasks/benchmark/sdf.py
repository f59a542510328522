"""PianoMime's goal autoencoder pre-trained on the goals of every song given (App. G), not only the
training songs': the distinct 88-key goals of each song's episodes, saved and keyed like a policy.

    result = pretrain_sdf(["robopianist", "music21", "my_midi/"], "datasets/policies", max_steps=2000)
    result["sdf_dir"]   # datasets/policies/sdf-<key>: give it to a pianomime method as `sdf_dir`

Sources are the catalog's (`envs.music.catalog_build`: "robopianist", "music21", MIDI files or
folders), so the per-file cache and the timeouts of `pianoset songs` apply; a song that cannot be
read is recorded with its reason and skipped. The key covers every song's notes (the catalog's
content ids), the autoencoder config, the step cap and the seed: the same songs give the same
folder, which is then reused.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from envs.piano.spec import N_KEYS

log = logging.getLogger(__name__)

SDF_PRETRAIN_VERSION = "sdf-pretrain-1"  # bump when a change alters the pre-trained autoencoder


def chunk_goals(chunk) -> np.ndarray:
    """(n, 88) bool distinct goals of a chunk's episode steps (the keys the task wants down)."""
    from robopianist.music.midi_file import NoteTrajectory

    notes = NoteTrajectory.from_midi(chunk.midi, chunk.control_timestep).notes[: chunk.n_steps]
    goals = np.zeros((len(notes), N_KEYS), dtype=bool)
    for t, step in enumerate(notes):
        goals[t, [n.key for n in step]] = True
    return np.unique(goals, axis=0)


def song_goals(ref: str) -> np.ndarray:
    """(n, 88) bool distinct goals over all the chunks of song `ref` (`envs.music.songs.load_song`)."""
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song

    chunks = make_chunks(load_song(ref))
    return np.unique(np.concatenate([chunk_goals(c) for c in chunks]), axis=0)


def catalog_songs(sources: Sequence[str], catalog_dir: str | Path, *, workers: int = 1,
                  limit: int | None = None) -> tuple[list, list]:
    """(playable rows, unplayable rows) of the sources' catalog, read through the per-file cache of
    `catalog_dir` (a file read before is not read again); the catalog files there are left as they are."""
    import tempfile

    from envs.music.catalog_build import build_catalog

    with tempfile.TemporaryDirectory(prefix="sdf-catalog-") as scratch:
        rows = build_catalog(list(sources), scratch, workers=workers, limit=limit,
                             cache_dir=Path(catalog_dir) / "cache")
    return [r for r in rows if r.playable], [r for r in rows if not r.playable]


def sdf_key(song_ids: Sequence[str], config, max_steps: int, seed: int) -> str:
    from agents.common.io import config_to_json
    from agents.sdf import CODE_VERSION
    from tasks.benchmark.config import digest

    payload = {"songs": sorted(set(song_ids)), "config": config_to_json(config),
               "max_steps": max_steps, "seed": seed, "code": [SDF_PRETRAIN_VERSION, CODE_VERSION]}
    return f"sdf-{digest(payload)[:16]}"


def pretrain_sdf(
    sources: Sequence[str],
    out_root: str | Path,
    *,
    catalog_dir: str | Path = "datasets/catalog",
    config=None,
    max_steps: int = 0,
    seed: int = 0,
    workers: int = 1,
    limit: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Pre-train (or reuse) the goal autoencoder on the distinct goals of the sources' songs.

    Saved under `<out_root>/<sdf_key>/` (`agents.sdf.save_autoencoder`, atomic) with the songs,
    the goal count, the skipped songs and their reasons, and the training history. `max_steps`
    caps the gradient steps (0: the config's epochs); `limit` caps the songs per source.
    Returns a summary with `sdf_dir`.
    """
    from agents.sdf import load_autoencoder, read_autoencoder_meta, save_autoencoder, train_sdf
    from agents.sdf.config import SDFConfig

    config = config or SDFConfig()
    if max_steps:
        config = dataclasses.replace(config, max_steps=max_steps)
    if not sources:
        raise ValueError("pretrain_sdf: no sources given (catalog sources: robopianist, music21, MIDI files or folders)")
    started = time.perf_counter()
    rows, unplayable = catalog_songs(sources, catalog_dir, workers=workers, limit=limit)
    if not rows:
        raise ValueError(f"pretrain_sdf: the sources {list(sources)} hold no playable song")
    key = sdf_key([r.id for r in rows], config, max_steps, seed)
    out = Path(out_root) / key
    meta = read_autoencoder_meta(out)
    if meta is not None and meta.get("sdf_key") == key:
        load_autoencoder(out)  # it must load
        return {"sdf_key": key, "sdf_dir": str(out), "reused": True, "songs": meta["songs"],
                "goals": meta["goals"], "skipped": len(meta.get("skipped", []))}
    goals, skipped = [], [{"ref": r.ref, "reason": r.reason} for r in unplayable]
    per_source: dict[str, int] = {}
    for i, row in enumerate(rows):
        try:
            goals.append(song_goals(row.ref))
            per_source[row.source] = per_source.get(row.source, 0) + 1
        except Exception as exc:  # one bad song never stops the others: recorded, skipped
            skipped.append({"ref": row.ref, "reason": f"{type(exc).__name__}: {exc}"})
            log.warning("sdf: skipped %s (%s)", row.ref, exc)
        if on_progress is not None:
            on_progress("goals", i + 1, len(rows))
    if not goals:
        raise ValueError(f"pretrain_sdf: no song of {list(sources)} could be read: {skipped[:3]}")
    goals = np.unique(np.concatenate(goals), axis=0)
    read_s = time.perf_counter() - started
    log.info("sdf: %d distinct goals from %d songs (%d skipped) in %.0f s", len(goals), sum(per_source.values()),
             len(skipped), read_s)
    autoencoder, history = train_sdf(
        goals, config, seed=seed,
        on_progress=None if on_progress is None else (lambda step, total, _: on_progress("train", step, total)))
    save_autoencoder(autoencoder, out, extra={
        "sdf_key": key, "songs": sum(per_source.values()), "songs_per_source": per_source,
        "goals": int(len(goals)), "sources": list(sources), "skipped": skipped, "history": history,
        "seed": seed, "max_steps": max_steps, "read_seconds": round(read_s, 1),
        "train_seconds": round(time.perf_counter() - started - read_s, 1)})
    return {"sdf_key": key, "sdf_dir": str(out), "reused": False, "songs": sum(per_source.values()),
            "goals": int(len(goals)), "skipped": len(skipped), "final_rmse_m": history[-1].get("rmse_m"),
            "initial_rmse_m": history[0].get("rmse_m")}
