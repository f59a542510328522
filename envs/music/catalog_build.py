"""Building the song catalog: every song we know of, whether it can be played, and how long it is
(over 400 lines: one pipeline, discovery to the per-file worker pool with its time limit, read top to bottom).

Sources (`build_catalog(sources=...)`):

- ``"robopianist"``: robopianist's built-in library (`envs.music.songs`).
- ``"music21"``: every file of the corpus shipped inside music21 (Bach
  chorales, Palestrina, folk song books, quartets, ...). Tune collections give
  one row per tune, so a file can give many rows.
- ``"video:<folder>"``: a demonstration written by `pianoset video`, or a
  folder of them (each one with its ``manifest.json``): ``video:<demo>`` refs.
- any other string: a MIDI file or a directory searched recursively for
  ``.mid``/``.midi``/``.proto``/``*_fingering.txt`` (GiantMIDI-Piano, PIG, your
  own). A path that does not exist raises `SongError` before any work.

Each row says where the song came from, how to load it again (`ref`), its
content id, its length after RP1M's stretch (1.25) and silence trim, its note
count and polyphony, how many 550-step chunks it makes, and whether it is
playable; `reason` says why not (the `SongError` message: a bad file, no
notes, notes off the keyboard, more than 10 keys at once, a timeout). One bad
file never stops a build: it becomes a row with `playable=False`. A file that
cannot be read has no content id (`id == ""`).

Files: one JSON-lines file per source under `out_dir` (default
`datasets/catalog/`): ``robopianist.jsonl``, ``music21.jsonl`` and
``midi-<dir name>-<hash of its path>.jsonl`` per MIDI path, each rewritten
atomically (temporary file + rename) and sorted by ref.

Speed: files are converted in parallel (a process pool, `workers` defaults to
`os.cpu_count()`; workers are spawned, not forked, so that the parent's
threads do not leak into them, and a script calling this with workers > 1 must
keep its top-level code under `if __name__ == "__main__":`). The rows of each
file are cached under `out_dir/cache/` by (path, size, mtime_ns,
`CATALOG_VERSION`): a rebuild with nothing changed converts nothing. Large scores are slow in music21 (a Beethoven quartet takes
minutes), so each file has a limit of CPU time (`timeout_s`); a file over it
becomes a row with the reason, and is retried when a later build allows more
time. If a worker process dies (out of memory), the files it had in hand
become rows saying so, are not cached, and the build goes on in a new pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from envs import atomic
from envs.music.catalog import (
    BUILTIN_SOURCES,
    CATALOG_VERSION,
    DEFAULT_CATALOG_DIR,
    DEFAULT_TIMEOUT_S,
    CatalogBuild,
    CatalogRow,
    ProgressCallback,
    error_row,
    row_for_song,
)
from envs.music.scores import load_music21_file, music21_corpus_files, music21_ref
from envs.music.songs import (
    VIDEO_PREFIX,
    SongError,
    is_song_file,
    load_midi_file,
    load_song,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    catalog_name: str  # catalog file stem
    kind: str  # "robopianist" | "music21" | "midi" | "video"
    target: str  # library name, corpus file (absolute), MIDI path as found or demonstration folder
    key: str  # cache key
    size: int  # bytes


class _Timeout(BaseException):
    """Not an `Exception`: library code that catches everything must not swallow it."""


@contextlib.contextmanager
def _time_limit(cpu_seconds: float | None):
    """Raise `_Timeout` after `cpu_seconds` of this process's CPU time.

    CPU time, not wall-clock time, so that a busy machine does not turn slow
    files into timeouts (SIGPROF; only in a process's main thread).
    """
    if not cpu_seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGPROF, _expired)
    # Repeating: a raise that lands in a gc callback or __del__ is swallowed by
    # Python as "unraisable" (JAX registers such a callback), so keep raising
    # every 10 ms of CPU time until the block is left.
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds, 0.01)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _convert(job: _Job, timeout_s: float | None) -> dict:
    """Rows of one job, as a cache entry. Runs in a worker process."""
    started, started_cpu = time.perf_counter(), time.process_time()
    rows: list[CatalogRow] = []
    timed_out = False
    try:
        with _time_limit(timeout_s):
            if job.kind == "robopianist":
                rows = [row_for_song(load_song(job.target, validate=False))]
            elif job.kind == "video":
                rows = [row_for_song(load_song(_job_ref(job), validate=False))]
            elif job.kind == "midi":
                try:
                    rows = [row_for_song(load_midi_file(job.target))]
                except SongError as exc:
                    rows = [error_row("midi", job.target, Path(job.target).stem, str(exc))]
            else:
                for ref, result in load_music21_file(job.target):
                    if isinstance(result, SongError):
                        rows.append(error_row("music21", ref, Path(job.target).stem, str(result)))
                    else:
                        rows.append(row_for_song(result))
    except SongError as exc:
        ref = _job_ref(job)
        rows = [error_row(job.kind, ref, Path(job.target).stem, str(exc))]
    except _Timeout:
        timed_out = True
        ref = _job_ref(job)
        rows = [error_row(job.kind, ref, Path(job.target).stem,
                           f"{ref}: conversion took more than {timeout_s:g} s of CPU time (timeout_s)")]
    except Exception as exc:  # a bug or an unexpected library error: still one row
        logger.exception("catalog: %s failed", job.target)
        ref = _job_ref(job)
        rows = [error_row(job.kind, ref, Path(job.target).stem, f"{ref}: {type(exc).__name__}: {exc}")]
    return {
        "key": job.key,
        "target": job.target,
        "timed_out": timed_out,
        "timeout_s": timeout_s,
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_s": round(time.process_time() - started_cpu, 3),  # what the build costs on an idle machine
        "rows": [r.as_dict() for r in rows],
    }


# CPU seconds per byte by file kind, roughly (`python -m benchmarks.catalog_profile`): ABC is
# dense text (a 44 KB book holds 129 tunes, 25 s), MusicXML verbose (1.2 MB, 1.6 s), .mxl zipped.
_COST_PER_BYTE = {".abc": 500.0, ".krn": 100.0, ".mxl": 50.0, ".xml": 1.5, ".musicxml": 1.5}


def _cost(job: _Job) -> float:
    """A guess of a job's conversion time, to start the slow ones first."""
    return job.size * _COST_PER_BYTE.get(Path(job.target).suffix.lower(), 1.0)


def _job_ref(job: _Job) -> str:
    if job.kind == "music21":
        return music21_ref(Path(job.target))
    if job.kind == "video":
        return f"{VIDEO_PREFIX}{job.target}"
    return job.target


# ----------------------------------------------------------------------------------
# Jobs and cache


def _file_key(kind: str, target: str) -> tuple[str, int]:
    path = Path(target)
    st = path.stat()
    text = f"{CATALOG_VERSION}\n{kind}\n{target}\n{path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest(), st.st_size


def _midi_catalog_name(path: Path, kind: str = "midi") -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", path.resolve().name).strip("-").lower() or "root"
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:6]
    return f"{kind}-{slug}-{digest}"


def _catalog_name(source: str) -> str:
    if source in BUILTIN_SOURCES:
        return source
    if source.startswith(VIDEO_PREFIX):
        return _midi_catalog_name(Path(source[len(VIDEO_PREFIX):]), "video")
    return _midi_catalog_name(Path(source))


def _video_jobs(source: str) -> list[_Job]:
    root = Path(source[len(VIDEO_PREFIX):])
    if (root / "manifest.json").is_file():
        folders = [root]
    elif root.is_dir():
        folders = sorted(p.parent for p in root.rglob("manifest.json"))
    else:
        raise SongError(f"{source}: no such demonstration folder")
    if not folders:
        logger.warning("catalog: %s holds no video demonstrations (no manifest.json)", source)
    name = _catalog_name(source)
    return [_Job(name, "video", str(folder), *_file_key("video", str(folder / "manifest.json"))) for folder in folders]


def _jobs_for_source(source: str, limit: int | None) -> list[_Job]:
    jobs: list[_Job] = []
    if source == "robopianist":
        import robopianist
        from robopianist import music

        for name in sorted(music.DEBUG_MIDIS):
            text = f"{CATALOG_VERSION}\nrobopianist=={getattr(robopianist, '__version__', '?')}\n{name}"
            key = hashlib.sha256(text.encode()).hexdigest()
            jobs.append(_Job("robopianist", "robopianist", f"robopianist:{name}", key, 0))
    elif source.startswith(VIDEO_PREFIX):
        jobs = _video_jobs(source)
    elif source == "music21":
        for path in music21_corpus_files():
            key, size = _file_key("music21", str(path))
            jobs.append(_Job("music21", "music21", str(path), key, size))
    else:
        root = Path(source)
        if not root.exists():
            raise SongError(
                f"{source}: no such file or directory (sources are {', '.join(BUILTIN_SOURCES)} "
                "or MIDI files/directories)"
            )
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and is_song_file(p))
            if not files:
                logger.warning("catalog: %s holds no MIDI files", source)
        else:
            files = [root]
        name = _midi_catalog_name(root)
        for path in files:
            key, size = _file_key("midi", str(path))
            jobs.append(_Job(name, "midi", str(path), key, size))
    return jobs[:limit] if limit is not None else jobs


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.json"


def _read_cache(cache_dir: Path, job: _Job, timeout_s: float | None) -> dict | None:
    path = _cache_path(cache_dir, job.key)
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != job.key or not isinstance(entry.get("rows"), list):
        return None
    if entry.get("timed_out"):
        old = entry.get("timeout_s") or 0.0
        if timeout_s is None or timeout_s > old:  # more time now: try again
            return None
    return entry


def _write_cache(cache_dir: Path, entry: dict) -> None:
    atomic.write_text(_cache_path(cache_dir, entry["key"]), json.dumps(entry, separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------------
# Build


def build_catalog(
    sources: Iterable[str],
    out_dir: str | Path = DEFAULT_CATALOG_DIR,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
    *,
    cache_dir: str | Path | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> list[CatalogRow]:
    """Build (or refresh) the catalog of `sources`; see `build_catalog_report`."""
    return build_catalog_report(
        sources, out_dir, workers, progress, limit, cache_dir=cache_dir, timeout_s=timeout_s
    ).rows


def build_catalog_report(
    sources: Iterable[str],
    out_dir: str | Path = DEFAULT_CATALOG_DIR,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
    *,
    cache_dir: str | Path | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> CatalogBuild:
    """Build the catalog and say how (cache hits, conversions, time).

    `sources`: "robopianist", "music21" and/or MIDI files/directories.
    `limit`: at most this many files per source (smoke runs, tests).
    `progress(done, total)` is called as files finish (files, not songs).
    Returns the rows of the given sources, sorted by (source, ref); the
    catalog files of these sources under `out_dir` are rewritten.
    """
    started = time.perf_counter()
    sources = list(dict.fromkeys(str(s) for s in sources))
    if not sources:
        raise ValueError("build_catalog: no sources given")
    if limit is not None and limit < 0:
        raise ValueError(f"build_catalog: limit must be >= 0, got {limit}")
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    jobs: list[_Job] = []
    catalog_names: list[str] = []
    for source in sources:  # all paths are checked before any work starts
        source_jobs = _jobs_for_source(source, limit)
        jobs.extend(source_jobs)
        name = _catalog_name(source)
        catalog_names.append(name)

    entries: dict[str, dict] = {}
    todo: list[_Job] = []
    unique_jobs = list({job.key: job for job in jobs}.values())  # a file named by two sources
    for job in unique_jobs:
        entry = _read_cache(cache_dir, job, timeout_s)
        if entry is None:
            todo.append(job)
        else:
            entries[job.key] = entry
    n_cached = len(entries)
    total = len(unique_jobs)
    logger.info("catalog: %d files, %d cached, %d to convert", total, n_cached, len(todo))
    if progress is not None:
        progress(n_cached, total)

    done = n_cached

    def _finished(job: _Job, entry: dict, cache: bool = True) -> None:
        nonlocal done
        entries[job.key] = entry
        if cache:
            _write_cache(cache_dir, entry)
        done += 1
        if progress is not None:
            progress(done, total)

    todo.sort(key=lambda j: -_cost(j))  # slow files first: the pool ends together
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    deaths = 0
    if todo and (n_workers == 1 or len(todo) == 1):
        for job in todo:
            _finished(job, _convert(job, timeout_s))
    elif todo:
        deaths = _run_pool(todo, n_workers, timeout_s, _finished)

    rows_by_name: dict[str, list[CatalogRow]] = {name: [] for name in catalog_names}
    for job in jobs:
        for data in entries[job.key]["rows"]:
            rows_by_name[job.catalog_name].append(CatalogRow.from_dict(data))
    written: list[Path] = []
    all_rows: list[CatalogRow] = []
    for name in catalog_names:
        rows = sorted(rows_by_name[name], key=lambda r: r.ref)
        path = out_dir / f"{name}.jsonl"
        atomic.write_text(path, "".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in rows))
        written.append(path)
        all_rows.extend(rows)
    all_rows.sort(key=lambda r: (r.source, r.ref))
    elapsed = time.perf_counter() - started
    n_playable = sum(r.playable for r in all_rows)
    logger.info(
        "catalog: %d songs (%d playable) from %d files in %.1f s (%d cached, %d converted)",
        len(all_rows), n_playable, total, elapsed, n_cached, len(todo),
    )
    return CatalogBuild(
        rows=all_rows, files=written, n_jobs=total, n_cached=n_cached,
        n_converted=len(todo), n_worker_deaths=deaths, elapsed_s=elapsed,
    )


def _run_pool(
    todo: list[_Job], n_workers: int, timeout_s: float | None, finished: Callable[..., None]
) -> int:
    """Convert `todo` in a process pool, at most 2 jobs per worker in flight. Returns worker deaths."""
    context = multiprocessing.get_context("spawn")
    pending = list(reversed(todo))  # pop() from the end = biggest first
    deaths = 0
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(n_workers, len(pending)), mp_context=context)
        in_flight: dict[Future, _Job] = {}
        n_done = 0
        try:
            while pending or in_flight:
                while pending and len(in_flight) < 2 * n_workers:
                    job = pending.pop()
                    in_flight[pool.submit(_convert, job, timeout_s)] = job
                done_set, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done_set:
                    job = in_flight.pop(future)
                    finished(job, future.result())
                    n_done += 1
        except BrokenProcessPool as exc:
            deaths += 1
            if n_done == 0:  # dies at start-up: starting more pools would not help
                raise RuntimeError(
                    "catalog: the worker processes died before converting anything; a script that "
                    "builds the catalog with workers > 1 must guard its code with "
                    "`if __name__ == '__main__':` (workers are spawned), or use workers=1"
                ) from exc
            for job in in_flight.values():  # we cannot tell which one killed it: none is cached
                ref = _job_ref(job)
                reason = f"{ref}: the worker process died while converting it (out of memory?)"
                row = error_row(job.kind, ref, Path(job.target).stem, reason)
                finished(job, {"key": job.key, "rows": [row.as_dict()]}, cache=False)
            logger.warning("catalog: a worker process died; %d files lost, starting a new pool", len(in_flight))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return deaths
