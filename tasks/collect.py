"""The steps of a collection, as Prefect tasks around plain functions.

Each step reads and writes files only (chunk files, specialist folders,
rollout folders, song shard folders), takes and returns small values (ids,
paths, counts, metrics) and is idempotent: the file manifests are the ground
truth of what is done, so the flow asks `*_done()` before submitting and a
task that finds its output complete returns at once. Prefect's own result
cache is not used (cache_policy=NONE): it is keyed by run and lost with its
result store, while the manifests carry over any run, any machine.

Layout under the work folder (git-ignored, not versioned):

    work/<song_id>/chunk-000.json           the chunk files of a song
    work/<song_id>/<chunk_id>/specialist/   training folder (checkpoints, final agent)
    work/<song_id>/<chunk_id>/rollouts/     rollout groups + rollouts.json
    work/<song_id>/shards.key               which rollouts the song's shards hold
    work/status/<song_id>.json              last outcome of the song (done / failed + stage)

and the versioned outputs (DVC):

    datasets/shards/<song_id>/              the song's RLDS/TFDS folder + manifest.json
    datasets/specialists/<chunk_id>/        the trained specialist (final agent, manifests)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from envs import atomic
from envs.piano.config import EnvConfig
from tasks.names import NOMINAL_FILE, SONG_MANIFEST, SPECIALIST_MANIFEST
from tasks.names import ROLLOUTS_MANIFEST as ROLLOUT_MANIFEST
from tasks.params import env_config_dict
from tasks.rollouts import rollout_key
from tasks.specialist import check_kind, get_profile, run_key
from tasks.stop import check_stop, child_env

REPO = Path(__file__).resolve().parents[1]
# Rollouts per specialist for each budget; RP1M section 4.3 uses 500.
PROFILE_ROLLOUTS = {"smoke": 16, "cpu": 100, "paper": 500}


@dataclass(frozen=True)
class CollectConfig:
    songs: tuple[str, ...] = ("robopianist:TwinkleTwinkleRousseau", "robopianist:CMajorScaleTwoHands")
    profile: str = "smoke"
    n_rollouts: int | None = None  # None: PROFILE_ROLLOUTS[profile]
    workers: int = 2  # rollout worker processes per chunk
    parallel_chunks: int = 2  # chunks trained at once (local runner)
    seed: int = 0
    env: dict = field(default_factory=dict)  # EnvConfig fields, e.g. {"reward": {"fingering": "ot"}}
    specialist: str = "droq"  # droq | residual | ik | mpc (tasks.specialist.KINDS)
    residual: dict = field(default_factory=dict)  # ResidualSpecialistConfig fields (residual, ik, mpc specialists)
    mpc: dict = field(default_factory=dict)  # tasks.specialist_mpc.MPCSpecialistConfig fields (mpc specialists)
    work_dir: str = "work"
    shards_dir: str = "datasets/shards"
    specialists_dir: str = "datasets/specialists"
    register: bool = True
    runner: str = "local"  # local | ray
    ray_address: str | None = None  # Ray cluster address (runner=ray)

    def __post_init__(self) -> None:
        get_profile(self.profile)  # names the bad profile
        if not self.songs:
            raise ValueError("collect: no songs selected")
        if self.n_rollouts is not None and self.n_rollouts < 1:
            raise ValueError(f"collect: n_rollouts={self.n_rollouts} must be >= 1")
        if self.workers < 1 or self.parallel_chunks < 1:
            raise ValueError(f"collect: workers={self.workers} and parallel_chunks={self.parallel_chunks} must be >= 1")
        if self.runner not in ("local", "ray"):
            raise ValueError(f"collect: runner={self.runner!r}: expected 'local' or 'ray'")
        self.env_config()  # validates
        check_kind(self.specialist)
        if self.specialist == "droq" and self.residual:
            raise ValueError("collect: `residual` settings need specialist 'residual', 'ik' or 'mpc', not 'droq'")
        if self.specialist != "mpc" and self.mpc:
            raise ValueError(f"collect: `mpc` settings need specialist 'mpc', not {self.specialist!r}")
        self.residual_config()  # validates
        self.mpc_config()

    @property
    def rollouts(self) -> int:
        return self.n_rollouts or PROFILE_ROLLOUTS[self.profile]

    def env_config(self) -> EnvConfig:
        return EnvConfig.from_dict(env_config_dict(self.env))

    def residual_config(self):
        """The `tasks.specialist.ResidualSpecialistConfig` of residual/ik specialists (None for droq)."""
        if self.specialist == "droq":
            return None
        from tasks.specialist import ResidualSpecialistConfig

        return ResidualSpecialistConfig.from_dict(self.residual)

    def mpc_config(self):
        """The `tasks.specialist_mpc.MPCSpecialistConfig` of mpc specialists (None for the other kinds)."""
        if self.specialist != "mpc":
            return None
        from tasks.specialist_mpc import MPCSpecialistConfig

        return MPCSpecialistConfig.from_dict(self.mpc)

    @classmethod
    def from_params(cls, params: dict, **overrides) -> "CollectConfig":
        """From a validated `collect:` section (`tasks.params.load_params`; `catalog_filter`
        already resolved to `songs`), command-line overrides (not None) on top."""
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known - {"catalog_filter"}
        if unknown:
            raise ValueError(f"params.yaml collect: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        values = {k: v for k, v in params.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "songs" in values:
            values["songs"] = tuple(values["songs"])
        return cls(**values)


# --- done checks (cheap; used by the flow before submitting) --------------------------


def specialist_key(chunk_id: str, config: CollectConfig) -> str:
    return run_key(chunk_id, get_profile(config.profile), config.env_config(), config.seed, config.specialist,
                   config.residual_config(), config.mpc_config())


def specialist_id(chunk_id: str, config: CollectConfig) -> str:
    return f"{chunk_id}-{specialist_key(chunk_id, config)[:8]}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def specialist_done(chunk_work: Path, chunk_id: str, config: CollectConfig) -> bool:
    manifest = _read_json(chunk_work / "specialist" / SPECIALIST_MANIFEST)
    return bool(manifest) and manifest.get("run_key") == specialist_key(chunk_id, config)


def rollouts_key(chunk_id: str, config: CollectConfig) -> str:
    return rollout_key(specialist_id(chunk_id, config), config.rollouts, config.seed, config.env_config())


def rollouts_done(chunk_work: Path, chunk_id: str, config: CollectConfig) -> bool:
    manifest = _read_json(chunk_work / "rollouts" / ROLLOUT_MANIFEST)
    return bool(manifest) and manifest.get("key") == rollouts_key(chunk_id, config)


def song_shards_key(chunk_ids: list[str], config: CollectConfig) -> str:
    blob = "|".join(rollouts_key(c, config) for c in sorted(chunk_ids))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def song_done(song_id: str, chunk_ids: list[str], config: CollectConfig) -> bool:
    from tasks.rlds import is_complete

    key_file = Path(config.work_dir) / song_id / "shards.key"
    return (
        key_file.exists()
        and key_file.read_text().strip() == song_shards_key(chunk_ids, config)
        and is_complete(Path(config.shards_dir) / song_id)
    )


# --- the steps -------------------------------------------------------------------------


def prepare_song(ref: str, work_dir: str) -> dict:
    """Load and validate a song, write its chunk files; returns its plan."""
    from envs.music.chunks import load_chunk, write_song_chunks
    from envs.music.songs import load_song

    song = load_song(ref)
    paths = write_song_chunks(song, Path(work_dir))
    chunks = []
    for path in paths:
        chunk = load_chunk(path)
        chunks.append({"chunk_id": chunk.chunk_id, "index": chunk.index, "n_steps": chunk.n_steps, "file": str(path)})
    return {"ref": ref, "song_id": song.song_id, "title": song.title, "chunks": chunks}


def executor() -> str:
    """Where this task runs: a Ray task id inside a Ray worker, else the local pid."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        task_id = ray.get_runtime_context().get_task_id()
        if task_id:
            return f"ray-task:{task_id}"
    return f"local-pid:{os.getpid()}"


def train_chunk(chunk_file: str, chunk_work: str, config: CollectConfig) -> dict:
    """Train (or resume) a chunk's specialist in a child process; publish the result
    to `specialists_dir/<chunk_id>`."""
    check_stop(f"training {chunk_file}")
    work = (Path(chunk_work) / "specialist").resolve()
    cmd = [sys.executable, "-m", "tasks.specialist", str(Path(chunk_file).resolve()), str(work), "--profile", config.profile,
           "--seed", str(config.seed), "--env-config", json.dumps(config.env_config().as_dict()), "--kind", config.specialist,
           "--residual-config", json.dumps(config.residual), "--mpc-config", json.dumps(config.mpc)]
    # No preexec_fn: the child asks for its parent-death signal itself (tasks.stop.die_with_parent_from_start);
    # a preexec_fn fork from this worker thread deadlocks against another thread's import.
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-1500:]
        raise RuntimeError(f"training {chunk_file} failed (exit {proc.returncode}): {tail}")
    manifest = json.loads((work / SPECIALIST_MANIFEST).read_text())
    publish_specialist(work, Path(config.specialists_dir) / manifest["chunk_id"])
    return {"chunk_id": manifest["chunk_id"], "specialist_id": manifest["specialist_id"],
            "kind": manifest.get("kind", "droq"), "f1": (manifest.get("final") or {}).get("f1"),
            "steps": manifest["steps"], "executor": executor()}


def publish_specialist(work: Path, dest: Path) -> None:
    """Copy the final agent and its manifests (not the training checkpoints) atomically."""
    manifest = _read_json(dest / SPECIALIST_MANIFEST)
    if manifest and manifest.get("run_key") == _read_json(work / SPECIALIST_MANIFEST)["run_key"]:
        return
    with atomic.staged_dir(dest) as staging:
        if (work / "specialist").exists():  # the ik and mpc kinds have no network
            shutil.copytree(work / "specialist", staging / "specialist")
        for name in ("chunk.json", "learning_curve.json", NOMINAL_FILE, SPECIALIST_MANIFEST):
            if (work / name).exists():
                shutil.copy2(work / name, staging / name)


def rollout_chunk_step(song_id: str, chunk_file: str, chunk_work: str, config: CollectConfig) -> dict:
    check_stop(f"rollouts of {chunk_file}")
    from envs.music.chunks import load_chunk
    from tasks.rollouts import rollout_chunk

    manifest = rollout_chunk(
        load_chunk(chunk_file), song_id, Path(chunk_work) / "specialist", Path(chunk_work) / "rollouts",
        n_rollouts=config.rollouts, workers=config.workers, base_seed=config.seed, env_config=config.env_config(),
    )
    return {"chunk_id": manifest["chunk_id"], "n_rollouts": manifest["n_rollouts"], "mean_f1": manifest["mean_f1"],
            "executor": executor()}


def write_song(song_id: str, chunk_works: list[str], chunk_ids: list[str], config: CollectConfig) -> dict:
    """Merge the song's chunk rollouts into its TFDS folder (atomic swap)."""
    check_stop(f"writing song {song_id}")
    from tasks.rlds import write_song_dataset
    from tasks.rollouts import iter_rollout_episodes

    if song_done(song_id, chunk_ids, config):
        manifest = _read_json(Path(config.shards_dir) / song_id / SONG_MANIFEST)
        return {"song_id": song_id, "n_episodes": manifest["n_episodes"], "reused": True}
    shards_dir = Path(config.shards_dir)
    # A writer killed mid-way leaves its hidden staging folder; one flow writes a song at a time.
    for stale in shards_dir.glob(f".{song_id}.staging-*") if shards_dir.exists() else []:
        shutil.rmtree(stale, ignore_errors=True)
    episodes = chain.from_iterable(iter_rollout_episodes(Path(w) / "rollouts") for w in chunk_works)
    manifest = write_song_dataset(shards_dir, song_id, episodes)
    atomic.write_text(Path(config.work_dir) / song_id / "shards.key", song_shards_key(chunk_ids, config))
    return {"song_id": song_id, "n_episodes": manifest.n_episodes, "n_steps": manifest.n_steps, "reused": False}


def record_status(work_dir: str, song_id: str, record: dict) -> None:
    atomic.write_json(Path(work_dir) / "status" / f"{song_id}.json", record)


def chunk_progress(work_dir: str | Path, song_id: str) -> dict:
    """{chunks, trained, rolled_out} of a song's work folder: its chunk files, and the chunks whose
    specialist / rollouts manifest is written (of any run's key: status reads no config)."""
    song_work = Path(work_dir) / song_id
    chunk_ids = [f"{song_id}-{p.stem.split('-')[-1]}" for p in sorted(song_work.glob("chunk-*.json"))]
    return {"chunks": len(chunk_ids),
            "trained": sum((song_work / c / "specialist" / SPECIALIST_MANIFEST).is_file() for c in chunk_ids),
            "rolled_out": sum((song_work / c / "rollouts" / ROLLOUT_MANIFEST).is_file() for c in chunk_ids)}


def collection_status(work_dir: str | Path, shards_dir: str | Path) -> list[dict]:
    """done / failed / pending per song, from the status records and the shard manifests, and
    `partial` for a song whose chunks are being (or were, before a kill) worked on: prepared by a
    run that has not recorded its outcome. Every row has its chunk progress (`chunk_progress`)."""
    from tasks.rlds import ShardError, read_manifest

    def stored(song_id: str) -> tuple[int, int]:
        try:
            manifest = read_manifest(Path(shards_dir) / song_id)
            return manifest.n_episodes, manifest.n_steps
        except (FileNotFoundError, ShardError):  # absent or incomplete folder
            return 0, 0

    rows = []
    status_dir = Path(work_dir) / "status"
    recorded = set()
    for path in sorted(status_dir.glob("*.json")) if status_dir.exists() else []:
        rec = json.loads(path.read_text())
        recorded.add(rec["song_id"])
        episodes, steps = stored(rec["song_id"])
        state = rec["status"]
        if state in ("done", "cached") and not episodes:
            state = "pending"  # the record says done but the shards are gone
        rows.append({"ref": rec.get("ref"), "song_id": rec["song_id"], "status": state, "stage": rec.get("stage"),
                     "error": rec.get("error"), "episodes": episodes, "steps": steps,
                     **chunk_progress(work_dir, rec["song_id"])})
    work = Path(work_dir)
    for song_work in sorted(work.iterdir()) if work.is_dir() else []:
        if song_work.name in recorded or not any(song_work.glob("chunk-*.json")):
            continue
        episodes, steps = stored(song_work.name)  # its shards may be written before the run records it
        rows.append({"ref": None, "song_id": song_work.name, "status": "partial", "stage": None, "error": None,
                     "episodes": episodes, "steps": steps, **chunk_progress(work_dir, song_work.name)})
    return rows


# --- Prefect task wrappers (coarse: one per song/chunk and stage) ----------------------

prepare_song_task = task(prepare_song, name="prepare-song", cache_policy=NONE)
train_chunk_task = task(train_chunk, name="train-specialist", cache_policy=NONE, retries=1, retry_delay_seconds=5)
rollout_chunk_task = task(rollout_chunk_step, name="rollout", cache_policy=NONE, retries=1, retry_delay_seconds=5)
write_song_task = task(write_song, name="write-shards", cache_policy=NONE, retries=1, retry_delay_seconds=5)
