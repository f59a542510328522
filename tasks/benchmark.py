"""The policy benchmark of RP1M section 5 (Table 2) as plain functions and Prefect tasks.

Steps (each idempotent, files are the ground truth of what is done):

    plan       pick the training sets (the first N song folders of the
               collection, sorted by song id, or a listed set), the songs of
               each evaluation group and their chunks; check that no
               out-of-distribution song is in a training set
    train      one policy per (training set, method): a registered policy
               (`agents.common.policy`) with config overrides, trained for the
               profile's step budget; saved to `<policies_dir>/<policy_key>/`
    evaluate   one record per (policy, group): every chunk of the group's
               songs played in the real env (`tasks.policy_eval`)
    report     table.md / table.csv (RP1M Table 2: rows group x #training
               songs, columns methods, F1; P/R in the CSV) and bars.png,
               recomputed from the saved evaluation episodes (`build_table`)

Caching (run-independent keys, never Prefect's result cache):

- `policy_key` = policy name + its full resolved config + training steps +
  seed + the training songs' shard manifests (file checksums) + code
  version; a policy folder whose `policy.json` carries the key is done.
- `tasks.policy_eval.evaluation_key` = policy key + the exact chunks,
  lengths and seeds + env config + code version; a record json carrying it is
  done. Changing one method retrains and re-evaluates only that method.

Layout::

    <policies_dir>/<policy_key>/            policy.json (+ key, history), params, normalizer
    <work_dir>/benchmark/chunks/<song_id>/  chunk files of the out-of-distribution songs
    <reports_dir>/plan.json                 what the table is made of (cells -> records)
    <reports_dir>/episodes/<policy_key>/<group>.{json,npz}   evaluation episodes
    <reports_dir>/table.md, table.csv, bars.png
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from envs import atomic
from envs.piano.config import EnvConfig
from tasks.policy_eval import (
    EvalConfig,
    EvalItem,
    evaluate_episodes,
    evaluation_key,
    read_records,
    recompute_episodes,
    save_records,
    summarize,
)

log = logging.getLogger(__name__)

BENCHMARK_VERSION = "benchmark-1"  # bump when a change alters trained policies
PLAN_FORMAT = "pianoset-benchmark-plan/1"
GROUPS = ("in_distribution", "easy_ood", "hard_ood")
GROUP_TITLES = {"in_distribution": "In-Dist.", "easy_ood": "Easy OOD", "hard_ood": "Hard OOD"}  # RP1M Table 2

# Training steps per policy for each budget. RP1M Tables 5-8: 1M steps for
# every method. `cpu` is tens of minutes per small policy on a 2-core machine
# (the 6 x 4096 BC is far slower there); `smoke` only exercises the code.
PROFILE_STEPS = {"smoke": 50, "cpu": 10_000, "paper": 1_000_000}

# Evaluation needs no reward; "none" skips the per-step OT matching. The
# observation and the key-press metrics do not depend on it.
EVAL_ENV = {"reward": {"fingering": "none"}}


class BenchmarkError(ValueError):
    """The benchmark cannot be planned as configured (the message names the input)."""


@dataclasses.dataclass(frozen=True)
class Method:
    """One column of the table: a registered policy and overrides of its config.

    Attributes:
      label: column name, unique ("BC (1024)").
      policy: registered policy name (`agents.common.policy.policy_registry`).
      config: fields of the policy's config class that differ from its
        defaults (lists become tuples).
    """

    label: str
    policy: str
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"label": self.label, "policy": self.policy, "config": dict(self.config)}


# RP1M Table 2 columns (Appendix B.1): BC with 3x256, 3x1024 and 6x4096 MLPs,
# IBC, BC-RNN and the CNN Diffusion Policy, each at its paper defaults.
RP1M_METHODS = (
    Method("BC (256)", "bc", {"hidden_dims": (256,) * 3}),
    Method("BC (1024)", "bc", {"hidden_dims": (1024,) * 3}),
    Method("BC (4096)", "bc", {"hidden_dims": (4096,) * 6}),
    Method("IBC", "ibc"),
    Method("BC-RNN", "bc_rnn"),
    Method("Diffusion Policy", "diffusion"),
)

# RP1M Table 2, for the report: {group: {train songs: {method: F1}}}.
RP1M_TABLE2 = {
    "in_distribution": {50: (0.086, 0.621, 0.200, 0.120, 0.174, 0.706),
                        150: (0.124, 0.245, 0.176, 0.088, 0.121, 0.578),
                        300: (0.084, 0.249, 0.102, 0.083, 0.025, 0.596)},
    "easy_ood": {50: (0.06, 0.278, 0.109, 0.128, 0.204, 0.446),
                 150: (0.085, 0.257, 0.172, 0.058, 0.050, 0.465),
                 300: (0.056, 0.236, 0.112, 0.056, 0.039, 0.486)},
    "hard_ood": {50: (0.141, 0.244, 0.217, 0.183, 0.221, 0.303),
                 150: (0.155, 0.275, 0.229, 0.148, 0.105, 0.432),
                 300: (0.145, 0.253, 0.181, 0.144, 0.081, 0.440)},
}


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """The songs of one evaluation group.

    Attributes:
      songs: song refs (`envs.music.songs.load_song`: "robopianist:NocturneRousseau",
        "music21:...", a MIDI path) or, for in_distribution, song ids of the
        collection (folder names).
      limit: in_distribution only, when `songs` is empty: the first N songs
        of the smallest training set (RP1M Table 9 lists 12).
    """

    songs: tuple[str, ...] = ()
    limit: int | None = None


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a benchmark run depends on (params.yaml `benchmark:`).

    Attributes:
      shards_dir: the collection: one complete song folder per song.
      train_songs: song ids (folder names) to train on, in this order; None:
        every complete folder, sorted by song id (a content hash, so the order
        is a fixed pseudo-random one).
      train_sizes: train one policy per method on each of the first N songs
        (RP1M: 50, 150, 300); None: one training set with all the songs.
      methods: the table's columns (default: RP1M Table 2's).
      profile: training budget, `PROFILE_STEPS`.
      steps: training steps per policy, overriding the profile's.
      seed: training seed of every policy.
      in_distribution, easy_ood, hard_ood: the evaluation groups; a group with
        no songs (and no limit) is skipped.
      eval: evaluation extent (`tasks.policy_eval.EvalConfig`).
      workers: tasks run at once (training and evaluation share the cores).
      work_dir: where out-of-distribution chunk files are written; the
        collection's `work_dir` (its `<song_id>/chunk-*.json`) is also where
        in-distribution chunks are looked up.
      specialists_dir: the collection's specialists (each holds the chunk.json
        it was trained on): the other place in-distribution chunks are found.
      policies_dir, reports_dir: outputs.
      env: EnvConfig fields of the evaluation env.
    """

    shards_dir: str = "datasets/shards"
    train_songs: tuple[str, ...] | None = None
    train_sizes: tuple[int, ...] | None = None
    methods: tuple[Method, ...] = RP1M_METHODS
    profile: str = "smoke"
    steps: int | None = None
    seed: int = 0
    in_distribution: GroupSpec = GroupSpec(limit=12)
    easy_ood: GroupSpec = GroupSpec()
    hard_ood: GroupSpec = GroupSpec()
    eval: EvalConfig = EvalConfig()
    workers: int = 1
    work_dir: str = "work"
    specialists_dir: str = "datasets/specialists"
    policies_dir: str = "datasets/policies"
    reports_dir: str = "datasets/reports/benchmark"
    env: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(EVAL_ENV))

    def __post_init__(self) -> None:
        if self.profile not in PROFILE_STEPS:
            raise BenchmarkError(f"benchmark: profile={self.profile!r}, expected one of {sorted(PROFILE_STEPS)}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise BenchmarkError(f"benchmark: steps={self.steps!r}, expected None or an integer >= 1")
        if not self.methods:
            raise BenchmarkError("benchmark: no methods selected")
        labels = [m.label for m in self.methods]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise BenchmarkError(f"benchmark: method labels {repeated} are used more than once")
        if self.train_sizes is not None:
            if not self.train_sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.train_sizes):
                raise BenchmarkError(f"benchmark: train_sizes={self.train_sizes!r}, expected integers >= 1")
        if self.workers < 1:
            raise BenchmarkError(f"benchmark: workers={self.workers}, expected >= 1")
        self.env_config()  # validates

    @property
    def train_steps(self) -> int:
        return self.steps or PROFILE_STEPS[self.profile]

    def env_config(self) -> EnvConfig:
        return EnvConfig.from_dict(dict(self.env))

    def group(self, name: str) -> GroupSpec:
        return getattr(self, name)

    @classmethod
    def from_params(cls, section: Mapping[str, Any], **overrides) -> "BenchmarkConfig":
        """From a validated params.yaml `benchmark:` section (`tasks.params`), CLI overrides on top."""
        values = dict(section)
        values.update({k: v for k, v in overrides.items() if v is not None})
        groups = values.pop("groups", {}) or {}
        kwargs: dict[str, Any] = {}
        for name in GROUPS:
            spec = groups.get(name) or {}
            kwargs[name] = GroupSpec(songs=tuple(spec.get("songs") or ()), limit=spec.get("limit"))
        if values.get("methods") is not None:
            kwargs["methods"] = tuple(
                Method(m["label"], m["policy"], _tuplify(m.get("config") or {})) for m in values.pop("methods")
            )
        else:
            values.pop("methods", None)
        if values.get("eval") is not None:
            kwargs["eval"] = EvalConfig(**values.pop("eval"))
        for key in ("train_songs", "train_sizes"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BenchmarkError(f"benchmark: unknown keys {unknown}")
        return cls(**{**values, **kwargs})


def _tuplify(value):
    if isinstance(value, (list, tuple)):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(_jsonable(payload), sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, payload) -> None:
    atomic.write_json(path, _jsonable(payload))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ----------------------------------------------------------------------------- policies


def resolve_config(method: Method):
    """The method's policy config: the registered config class's defaults with the overrides."""
    from agents.common.policy import get_policy

    _, config_cls, _ = get_policy(method.policy)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(method.config) - fields)
    if unknown:
        raise BenchmarkError(
            f"benchmark method {method.label!r}: {config_cls.__name__} has no field(s) {unknown} "
            f"(fields: {sorted(fields)})"
        )
    try:
        return config_cls(**_tuplify(dict(method.config)))
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"benchmark method {method.label!r}: {exc}") from None


def _policy_code_version(policy_name: str) -> str:
    """The policy package's CODE_VERSION, if it declares one (bump it to retrain)."""
    from agents.common.policy import get_policy

    policy_cls = get_policy(policy_name)[0]
    package = sys.modules.get(policy_cls.__module__.rsplit(".", 1)[0])
    return str(getattr(package, "CODE_VERSION", ""))


def song_shards_digest(song_dir: Path) -> str:
    """A song folder's content identity: its manifest's file checksums."""
    from tasks.rlds import read_manifest

    manifest = read_manifest(song_dir)
    return _digest(sorted((f.path, f.sha256) for f in manifest.files))


def policy_key(method: Method, train_dirs: Sequence[Path], *, steps: int, seed: int) -> str:
    """Run-independent identity of a trained policy, `<policy>-<16 hex>` (a folder name)."""
    from agents.common.io import config_to_json

    config = resolve_config(method)
    payload = {
        "policy": method.policy,
        "config": config_to_json(config),
        "steps": steps,
        "seed": seed,
        "songs": [(Path(d).name, song_shards_digest(Path(d))) for d in train_dirs],
        "code": [BENCHMARK_VERSION, _policy_code_version(method.policy)],
    }
    return f"{method.policy}-{_digest(payload)[:16]}"


def policy_done(policy_dir: Path, key: str) -> bool:
    from agents.common.io import PARAMS_FILE

    meta = _read_json(Path(policy_dir) / "policy.json")
    return bool(meta) and meta.get("policy_key") == key and (Path(policy_dir) / PARAMS_FILE).is_file()


_EPISODES_LOCK = threading.Lock()
_EPISODES_CACHE: dict[tuple, list] = {}  # the last training set read (the next method usually reuses it)


def _training_episodes(train_dirs: Sequence[Path]) -> list:
    from tasks.rlds.reader import iterate_episodes

    key = tuple((str(d), song_shards_digest(Path(d))) for d in train_dirs)
    with _EPISODES_LOCK:
        if key not in _EPISODES_CACHE:
            _EPISODES_CACHE.clear()
            _EPISODES_CACHE[key] = list(iterate_episodes([Path(d) for d in train_dirs]))
        return _EPISODES_CACHE[key]


def train_policy(
    method: Method,
    train_dirs: Sequence[str],
    policies_dir: str,
    *,
    key: str,
    steps: int,
    seed: int,
    profile: str = "",
    on_progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train `method` on the song folders and save it under `<policies_dir>/<key>/`
    (nothing to do when it is there already); returns a small summary."""
    from agents.common.io import save_policy
    from agents.common.policy import get_policy
    from envs.piano.spec import OBSERVATION_KEYS
    from tasks.rlds.reader import WindowDataset

    policy_dir = Path(policies_dir) / key
    if policy_done(policy_dir, key):
        meta = _read_json(policy_dir / "policy.json")
        return {"policy_key": key, "policy_dir": str(policy_dir), "reused": True,
                "final_loss": meta.get("final_loss"), "train_seconds": meta.get("train_seconds")}
    _, _, train_fn = get_policy(method.policy)
    config = resolve_config(method)
    episodes = _training_episodes([Path(d) for d in train_dirs])
    first = episodes[0].steps
    obs_dim = sum(int(np.prod(first["observation"][k].shape[1:])) for k in OBSERVATION_KEYS)
    action_dim = int(first["action"].shape[-1])
    spec = config.spec_for(obs_dim, action_dim)
    dataset = WindowDataset.from_episodes(episodes, spec.obs_horizon, spec.pred_horizon,
                                          action_offset=spec.action_offset)
    log.info("%s: training %s on %d songs (%d episodes, %d steps) for %d steps", method.label, key,
             len(train_dirs), dataset.n_episodes, len(dataset), steps)
    started = time.perf_counter()
    policy, history = train_fn(dataset, config, steps=steps, seed=seed, on_progress=on_progress)
    seconds = time.perf_counter() - started
    history = _jsonable(list(history or []))
    final_loss = history[-1].get("loss") if history and isinstance(history[-1], Mapping) else None
    save_policy(policy, policy_dir, extra={
        "policy_key": key,
        "method": method.as_dict(),
        "train_songs": [Path(d).name for d in train_dirs],
        "train_episodes": dataset.n_episodes,
        "train_windows": len(dataset),
        "steps": steps,
        "profile": profile,
        "seed": seed,
        "train_seconds": round(seconds, 2),
        "final_loss": final_loss,
        "history": history,
        "code_version": [BENCHMARK_VERSION, _policy_code_version(method.policy)],
    })
    return {"policy_key": key, "policy_dir": str(policy_dir), "reused": False, "final_loss": final_loss,
            "train_seconds": round(seconds, 2)}


# ----------------------------------------------------------------------------- planning


def select_training_sets(config: BenchmarkConfig) -> list[list[Path]]:
    """The training sets, smallest first: the first N song folders of the collection."""
    from tasks.rlds import complete_songs, is_complete

    shards_dir = Path(config.shards_dir)
    if config.train_songs is not None:
        dirs = []
        for song_id in config.train_songs:
            song_dir = shards_dir / song_id
            if not is_complete(song_dir):
                raise BenchmarkError(f"benchmark.train_songs: {song_id} has no complete song folder in {shards_dir}")
            dirs.append(song_dir)
    else:
        dirs = complete_songs(shards_dir)
    if not dirs:
        raise BenchmarkError(f"benchmark: {shards_dir} holds no complete song folder to train on (run `pianoset collect`)")
    if config.train_sizes is None:
        return [dirs]
    sets = []
    for size in sorted(set(config.train_sizes)):
        if size > len(dirs):
            raise BenchmarkError(
                f"benchmark.train_sizes: {size} songs asked, but {shards_dir} has only {len(dirs)} to train on"
            )
        sets.append(dirs[:size])
    return sets


def _chunk_items(group: str, song_ref: str, song_id: str, chunk_files: Sequence[Path], config: EvalConfig) -> list[EvalItem]:
    from envs.music.chunks import load_chunk

    items = []
    for chunk_file in list(chunk_files)[: config.max_chunks_per_song]:
        chunk = load_chunk(chunk_file)
        n_steps = min(chunk.n_steps, config.max_steps or chunk.n_steps)
        for episode in range(config.episodes_per_chunk):
            items.append(EvalItem(group, song_ref, song_id, chunk.chunk_id, chunk.index, str(chunk_file), n_steps,
                                  config.seed + episode))
    return items


def _collection_chunk_files(song_dir: Path, config: BenchmarkConfig) -> list[Path]:
    """The chunk files a song of the collection was played on, by chunk index."""
    from envs.music.chunks import chunk_path, load_chunk
    from tasks.rlds import read_manifest

    manifest = read_manifest(song_dir)
    chunks = sorted({(e.chunk_index, e.chunk_id) for e in manifest.episodes})
    files = []
    for index, chunk_id in chunks:
        candidates = [Path(config.specialists_dir) / chunk_id / "chunk.json",
                      chunk_path(config.work_dir, song_dir.name, index)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise BenchmarkError(
                f"in_distribution song {song_dir.name}: no chunk file for chunk {chunk_id} "
                f"(looked for {', '.join(map(str, candidates))}); in-distribution evaluation plays the chunks "
                "the collection was made of, so it needs the collection's specialists or work folder"
            )
        if load_chunk(found).chunk_id != chunk_id:
            raise BenchmarkError(f"in_distribution song {song_dir.name}: {found} holds chunk "
                                 f"{load_chunk(found).chunk_id}, the shards were collected on {chunk_id}")
        files.append(found)
    return files


def _song_ref_of(song_id: str, config: BenchmarkConfig) -> str:
    record = _read_json(Path(config.work_dir) / "status" / f"{song_id}.json")
    return (record or {}).get("ref") or f"shards:{song_id}"


def plan_benchmark(config: BenchmarkConfig) -> dict:
    """Training sets and evaluation items (JSON-able); writes the OOD chunk files.

    Raises `BenchmarkError` naming the song when an out-of-distribution song
    is in a training set, or an in-distribution song is missing from one.
    """
    from envs.music.chunks import write_song_chunks
    from envs.music.songs import SongError, load_song

    train_sets = select_training_sets(config)
    trained = {d.name: d for train_set in train_sets for d in train_set}
    smallest = {d.name for d in train_sets[0]}
    groups: dict[str, list[dict]] = {}
    group_songs: dict[str, list[str]] = {}

    spec = config.in_distribution
    if spec.songs or spec.limit:
        if spec.songs:
            song_ids = []
            for entry in spec.songs:
                if entry in trained:
                    song_ids.append(entry)
                    continue
                try:
                    song_ids.append(load_song(entry).song_id)
                except SongError as exc:
                    raise BenchmarkError(f"benchmark.groups.in_distribution: {entry}: {exc}") from None
        else:
            song_ids = [d.name for d in train_sets[0]][: spec.limit]
        items = []
        for entry, song_id in zip(spec.songs or song_ids, song_ids):
            if song_id not in smallest:
                raise BenchmarkError(
                    f"benchmark.groups.in_distribution: {entry} (song {song_id}) is not in the training set of "
                    f"{len(train_sets[0])} songs; in-distribution songs must be in every training set"
                )
            items += _chunk_items("in_distribution", _song_ref_of(song_id, config), song_id,
                                  _collection_chunk_files(trained[song_id], config), config.eval)
        groups["in_distribution"] = [i.as_dict() for i in items]
        group_songs["in_distribution"] = song_ids

    chunk_root = Path(config.work_dir) / "benchmark" / "chunks"
    for name in ("easy_ood", "hard_ood"):
        refs = config.group(name).songs
        if not refs:
            continue
        items, song_ids = [], []
        for ref in refs:
            try:
                song = load_song(ref)
            except SongError as exc:
                raise BenchmarkError(f"benchmark.groups.{name}: {ref}: {exc}") from None
            if song.song_id in trained:
                raise BenchmarkError(
                    f"benchmark.groups.{name}: {ref} (song {song.song_id}) is in the training set "
                    f"({trained[song.song_id]}); out-of-distribution songs must not be trained on"
                )
            try:
                files = write_song_chunks(song, chunk_root)
            except SongError as exc:
                raise BenchmarkError(f"benchmark.groups.{name}: {ref}: {exc}") from None
            items += _chunk_items(name, ref, song.song_id, files, config.eval)
            song_ids.append(song.song_id)
        groups[name] = [i.as_dict() for i in items]
        group_songs[name] = song_ids
    if not groups:
        raise BenchmarkError("benchmark: every evaluation group is empty")
    return {
        "train_sets": [[str(d) for d in train_set] for train_set in train_sets],
        "groups": groups,
        "group_songs": group_songs,
    }


# ----------------------------------------------------------------------------- evaluation


def records_stem(reports_dir: str | Path, policy_key_: str, group: str) -> Path:
    return Path(reports_dir) / "episodes" / policy_key_ / group


def group_evaluation_key(policy_key_: str, items: Sequence[dict], config: BenchmarkConfig) -> str:
    return evaluation_key(policy_key_, [EvalItem.from_dict(i) for i in items], config.env_config(), config.eval)


def evaluation_done(stem: Path, key: str) -> bool:
    doc = read_records(Path(stem).with_suffix(".json"))
    return bool(doc) and doc.get("key") == key


def evaluate_policy_group(
    policy_dir: str,
    policy_key_: str,
    group: str,
    items: Sequence[dict],
    config: BenchmarkConfig,
    *,
    method: str = "",
    train_songs: int = 0,
) -> dict:
    """Play a group's items with a saved policy and write its records (or reuse them)."""
    from agents.common.io import load_policy

    stem = records_stem(config.reports_dir, policy_key_, group)
    key = group_evaluation_key(policy_key_, items, config)
    if evaluation_done(stem, key):
        doc = read_records(stem.with_suffix(".json"))
        return {"records": str(stem.with_suffix(".json")), "reused": True, **summarize(doc["episodes"])}
    policy = load_policy(Path(policy_dir))
    started = time.perf_counter()
    results = evaluate_episodes(policy, [EvalItem.from_dict(i) for i in items], config.env_config(), config.eval)
    seconds = time.perf_counter() - started
    path = save_records(stem, results, key=key, policy_key=policy_key_, extra={
        "group": group, "method": method, "train_songs": train_songs, "eval": config.eval.as_dict(),
        "env": config.env_config().as_dict(), "seconds": round(seconds, 2),
    })
    steps = sum(r.n_steps for r in results)
    log.info("%s on %s: %d episodes, %d steps in %.1f s (%.0f steps/s)", method or policy_key_, group,
             len(results), steps, seconds, steps / max(seconds, 1e-9))
    doc = read_records(path)
    return {"records": str(path), "reused": False, "seconds": round(seconds, 2), **summarize(doc["episodes"])}


# ----------------------------------------------------------------------------- reports


def write_plan(reports_dir: str | Path, plan: dict, cells: list[dict], config: BenchmarkConfig) -> Path:
    """plan.json: the table's layout, each cell pointing at its evaluation record and key."""
    path = Path(reports_dir) / "plan.json"
    _write_json(path, {
        "format": PLAN_FORMAT,
        "methods": [m.as_dict() for m in config.methods],
        "profile": config.profile,
        "steps": config.train_steps,
        "seed": config.seed,
        "eval": config.eval.as_dict(),
        "train_sets": [[Path(d).name for d in s] for s in plan["train_sets"]],
        "groups": {g: {"songs": plan["group_songs"][g], "episodes": len(items)} for g, items in plan["groups"].items()},
        "cells": cells,
    })
    return path


def build_table(reports_dir: str | Path) -> dict:
    """The benchmark table rebuilt from plan.json and the saved evaluation episodes.

    Every cell's precision/recall/F1 are recomputed from the stored per-step
    goal and pressed keys (`recompute_episodes`, which also checks them against
    the stored per-episode figures) and averaged over the group's episodes.
    A cell whose record is missing or stale (key mismatch) is None.
    """
    reports_dir = Path(reports_dir)
    plan = _read_json(reports_dir / "plan.json")
    if plan is None or plan.get("format") != PLAN_FORMAT:
        raise FileNotFoundError(f"{reports_dir}: no benchmark plan.json (run `pianoset benchmark`)")
    labels = [m["label"] for m in plan["methods"]]
    rows: dict[tuple[str, int], dict] = {}
    for group in GROUPS:
        if group not in plan["groups"]:
            continue
        for train_set in plan["train_sets"]:
            rows[(group, len(train_set))] = {
                "group": group, "title": GROUP_TITLES[group], "train_songs": len(train_set),
                "eval_songs": len(plan["groups"][group]["songs"]), "episodes": plan["groups"][group]["episodes"],
                "cells": {label: None for label in labels},
            }
    for cell in plan["cells"]:
        row = rows.get((cell["group"], cell["train_songs"]))
        if row is None:
            continue
        path = reports_dir / cell["records"]
        doc = read_records(path)
        if doc is None or doc.get("key") != cell["key"]:
            continue
        row["cells"][cell["method"]] = {**summarize(recompute_episodes(path)), "policy_key": cell["policy_key"]}
    return {"methods": labels, "profile": plan["profile"], "steps": plan["steps"], "seed": plan["seed"],
            "eval": plan["eval"], "rows": list(rows.values())}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def table_markdown(table: dict) -> str:
    labels = table["methods"]
    ev = table["eval"]
    lines = [
        "# Policy benchmark (RP1M Table 2)",
        "",
        f"F1 of one multi-song policy per method and training set, averaged over the evaluation episodes of each "
        f"group (per-step key-press F1 averaged over an episode's steps). Training: profile `{table['profile']}`, "
        f"{table['steps']:,} steps, seed {table['seed']}. Evaluation: "
        f"{'every' if ev['max_chunks_per_song'] is None else 'the first ' + str(ev['max_chunks_per_song'])} "
        f"chunk(s) per song, {ev['episodes_per_chunk']} episode(s) per chunk, "
        f"{'whole chunks' if ev['max_steps'] is None else 'the first ' + str(ev['max_steps']) + ' steps of each'}.",
        "Precision and recall: `table.csv`; every episode: `episodes/<policy_key>/<group>.json`.",
        "",
        "| Task | #songs | eval songs / episodes | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    for row in table["rows"]:
        cells = [_fmt(c["f1"] if c else None) for c in row["cells"].values()]
        lines.append(f"| {row['title']} | {row['train_songs']} | {row['eval_songs']} / {row['episodes']} | "
                     + " | ".join(cells) + " |")
    rp1m = [m.label for m in RP1M_METHODS]
    lines += ["", "RP1M Table 2 (reference; trained 1M steps on 50/150/300 RP1M songs):", "",
              "| Task | #songs | " + " | ".join(rp1m) + " |", "|---|---|" + "---|" * len(rp1m)]
    for group, by_size in RP1M_TABLE2.items():
        for size, values in by_size.items():
            lines.append(f"| {GROUP_TITLES[group]} | {size} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += ["", "![F1 per group and method](bars.png)", ""]
    return "\n".join(lines)


def table_csv(table: dict) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["group", "train_songs", "eval_songs", "episodes"]
    for label in table["methods"]:
        header += [f"{label} f1", f"{label} precision", f"{label} recall"]
    writer.writerow(header)
    for row in table["rows"]:
        line = [row["group"], row["train_songs"], row["eval_songs"], row["episodes"]]
        for cell in row["cells"].values():
            line += ["" if cell is None else repr(cell[k]) for k in ("f1", "precision", "recall")]
        writer.writerow(line)
    return buffer.getvalue()


def _bars_figure(table: dict):
    from matplotlib.figure import Figure

    labels, rows = table["methods"], table["rows"]
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) * max(1, len(labels)) * 0.35 + 2), 4.0), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(rows))
    for k, label in enumerate(labels):
        values = [(row["cells"][label] or {}).get("f1") for row in rows]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (k - (len(labels) - 1) / 2) * width, heights, width, label=label)
        for bar, value in zip(bars, values):
            if value is None:
                bar.set_hatch("//")
                bar.set_alpha(0.3)
    ax.set_xticks(x, [f"{row['title']}\n{row['train_songs']} songs" for row in rows])
    ax.set_ylabel("F1 (mean over episodes)")
    ax.set_ylim(0, 1)
    ax.set_title(f"Multi-song imitation ({table['profile']}, {table['steps']:,} steps)", fontsize=10)
    ax.legend(fontsize=8, ncols=min(3, len(labels)))
    return fig


def write_reports(reports_dir: str | Path) -> list[Path]:
    """table.md, table.csv and bars.png rebuilt from the saved records (each written atomically)."""
    reports_dir = Path(reports_dir)
    table = build_table(reports_dir)
    texts = {"table.md": table_markdown(table), "table.csv": table_csv(table)}
    written = []
    for name, text in texts.items():
        written.append(atomic.write_text(reports_dir / name, text))
    figure = _bars_figure(table)
    written.append(atomic.write_with(reports_dir / "bars.png", lambda tmp: figure.savefig(tmp, format="png", dpi=110)))
    return written


# ----------------------------------------------------------------------------- Prefect tasks

plan_task = task(plan_benchmark, name="plan-benchmark", cache_policy=NONE)
train_policy_task = task(train_policy, name="train-policy", cache_policy=NONE)
evaluate_task = task(evaluate_policy_group, name="evaluate-policy", cache_policy=NONE)
report_task = task(write_reports, name="benchmark-report", cache_policy=NONE)
