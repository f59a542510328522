"""The song catalog: one row per song (playable or why not, duration, chunks), loading, filtering and
resolving a song by name. Built by `envs.music.catalog_build` (see its docstring for the sources)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from envs.music.chunks import STRETCH, make_chunks
from envs.music.songs import (
    Song,
    SongError,
    song_stats,
    validate_song,
)

logger = logging.getLogger(__name__)


# Bump when a row's content would change for the same input file (conversion,
# validation or chunking rules): every cached row is recomputed.
CATALOG_VERSION = 3  # 3: scores read off by envs.music.score_notes (no MIDI round trip)
DEFAULT_CATALOG_DIR = Path("datasets/catalog")
# CPU seconds per file. The slowest corpus files (Beethoven quartets, the
# 300-tune ABC books) need a few minutes of CPU.
DEFAULT_TIMEOUT_S = 900.0
BUILTIN_SOURCES = ("robopianist", "music21")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class CatalogRow:
    id: str  # song_id (content hash); "" when the file could not be read
    source: str  # "robopianist" | "music21" | "midi"
    title: str
    ref: str  # `envs.music.songs.load_song(ref)` loads it again
    duration_s: float  # after stretch 1.25 and silence trim (RP1M Table 4)
    n_notes: int
    max_polyphony: int  # most distinct keys down at once
    n_chunks: int  # 550-step episodes (`envs.music.chunks.make_chunks`); 0 if unplayable
    playable: bool
    reason: str  # why not playable; "" when playable
    has_fingering: bool = False  # human fingering labels (robopianist's `part` field)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CatalogRow":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class CatalogBuild:
    """What `build_catalog_report` did."""

    rows: list[CatalogRow]
    files: list[Path]  # catalog files written
    n_jobs: int  # files (or library songs) considered
    n_cached: int  # served from the cache
    n_converted: int  # converted in this build
    n_worker_deaths: int
    elapsed_s: float


# ----------------------------------------------------------------------------------
# Rows


def row_for_song(song: Song) -> CatalogRow:
    """Describe a loaded song: statistics, playability, chunk count."""
    stats = song_stats(song)
    reason = ""
    n_chunks = 0
    try:
        validate_song(song)
        n_chunks = len(make_chunks(song))
    except SongError as exc:
        reason = str(exc)
    return CatalogRow(
        id=song.song_id,
        source=song.source,
        title=song.title,
        ref=song.ref,
        duration_s=round(stats.duration_s * STRETCH, 3),
        n_notes=stats.n_notes,
        max_polyphony=stats.max_polyphony,
        n_chunks=n_chunks,
        playable=not reason,
        reason=reason,
        has_fingering=song.has_fingering(),
    )


def error_row(kind: str, ref: str, title: str, reason: str) -> CatalogRow:
    return CatalogRow(
        id="", source=kind, title=title, ref=ref, duration_s=0.0, n_notes=0,
        max_polyphony=0, n_chunks=0, playable=False, reason=reason,
    )


# ----------------------------------------------------------------------------------
# Reading and filtering


def load_catalog(out_dir: str | Path = DEFAULT_CATALOG_DIR) -> list[CatalogRow]:
    """All rows of the catalog files under `out_dir`, sorted by (source, ref)."""
    out_dir = Path(out_dir)
    files = sorted(out_dir.glob("*.jsonl")) if out_dir.is_dir() else []
    if not files:
        raise SongError(f"{out_dir}: no catalog files (*.jsonl); build the catalog first (build_catalog)")
    rows: list[CatalogRow] = []
    for path in files:
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(CatalogRow.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise SongError(f"{path}:{line_number}: not a catalog row ({exc})") from exc
    rows.sort(key=lambda r: (r.source, r.ref))
    return rows


def filter_catalog(
    rows: Iterable[CatalogRow],
    source: str | None = None,
    playable: bool | None = None,
    query: str | None = None,
    max_duration: float | None = None,
) -> list[CatalogRow]:
    """Rows of `source`, with this playability, whose title/ref/id contain every word
    of `query` (case-insensitive), at most `max_duration` seconds (stretched) long."""
    words = query.lower().split() if query else []
    out = []
    for row in rows:
        if source is not None and row.source != source:
            continue
        if playable is not None and row.playable != playable:
            continue
        if max_duration is not None and row.duration_s > max_duration:
            continue
        if words:
            text = f"{row.title} {row.ref} {row.id}".lower()
            if not all(w in text for w in words):
                continue
        out.append(row)
    return out


def select_songs(spec: dict, catalog_dir: str | Path = DEFAULT_CATALOG_DIR) -> list[str]:
    """Refs of the catalog rows that `params.yaml`'s `collect.catalog_filter` selects: `source`,
    `playable` (default true), `max_duration_s`, `query` (every word in title, ref or id), then the
    first `limit`. Raises ValueError naming the filter when nothing matches."""
    rows = filter_catalog(load_catalog(catalog_dir), source=spec.get("source"), playable=spec.get("playable", True),
                          query=spec.get("query"), max_duration=spec.get("max_duration_s"))
    refs = [row.ref for row in rows][: spec.get("limit")]
    if not refs:
        raise ValueError(f"collect.catalog_filter {spec} matches no song in {catalog_dir} "
                         "(build the catalog first: `pianoset songs --source ...`)")
    return refs


def resolve_song(song: str, catalog_dir: str | Path = DEFAULT_CATALOG_DIR):
    """A song given as a catalog ref ("music21:bach/bwv66.6"), a MIDI path, a
    catalog id or title, or a robopianist library name."""
    from envs.music.songs import SongError, load_song

    if ":" in song or Path(song).suffix.lower() in (".mid", ".midi"):
        return load_song(song)
    try:
        for row in load_catalog(catalog_dir):
            if song in (row.id, row.title):
                return load_song(row.ref)
    except (FileNotFoundError, SongError):
        pass  # no catalog built yet: try the name as a robopianist library song
    return load_song(f"robopianist:{song}")
