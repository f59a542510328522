"""`pianoset collect --plan`: what a collection would run or reuse, its CPU-hours and its disk, before the spend.

`collection_plan(config)` runs nothing: per song it finds the chunks (the catalog row when the
song was never prepared, else the chunk files under the work folder, else it loads and cuts
the song in memory), asks the same file manifests as the flow (`tasks.collect.*_done`) what is
done, and prices what is not with `MEASURED`: CPU seconds per task and per step of each stage,
measured by `benchmarks/collect_cost.py` (command and machine below), and the bytes per
stored step of the shards it wrote. CPU-hours are CPU time (user + system) of the whole
process tree; on a machine of C free cores the wall time is about CPU-hours / C.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tasks.collect import CollectConfig, rollouts_done, song_done, specialist_done
from tasks.specialist import get_profile

logger = logging.getLogger(__name__)

# CPU seconds (user + system, children included), fitted as task_s + per_step_s * steps over the
# chunks of three robopianist songs (CMajorScaleTwoHands, TwinkleTwinkleRousseau, NocturneRousseau:
# 4 chunks, 1037 chunk steps), measured on the project's shared 2-core machine (2026-12-02) by
#   nice -n 10 python -m benchmarks.collect_cost --specialist ik --rollouts 4
# Rollout steps are chunk steps x rollouts; write steps are the stored steps. `train.per_step_s`
# of ik is per chunk step (the controller's evaluation, 12.8 s of it the child's imports), of
# droq/residual per training step (the budget's total_steps). Kinds and budgets not measured here
# (`measured` False in the plan; the CLI says so) are priced with ik's rollout costs and an
# assumed training cost: RP1M-size networks cost more per step than smoke's.
MEASURED = {
    "flow_s": 25.0,  # per run: the temporary Prefect server and the imports (assumed)
    "prepare": {"task_s": 0.015, "per_step_s": 0.0},
    "train": {
        "ik": {"task_s": 12.8, "per_step_s": 0.08914, "profiles": ("smoke", "cpu", "paper")},  # no training
        "droq": {"task_s": 15.0, "per_step_s": 0.5, "profiles": ()},  # assumed, not measured
        "residual": {"task_s": 15.0, "per_step_s": 0.5, "profiles": ()},  # assumed, not measured
        # mpc: per chunk step, the default MPCConfig's fit on the 8 holdout chunks' first 200 steps
        # (238.8-310.9 CPU-s, mean 1.32 s/step; benchmarks/reports/specialist_quality_200_reach.md)
        "mpc": {"task_s": 12.8, "per_step_s": 1.32, "profiles": ("smoke", "cpu", "paper")},  # no training
    },
    "rollout": {
        "ik": {"task_s": 9.755, "per_step_s": 0.01196, "measured": True},
        "droq": {"task_s": 9.755, "per_step_s": 0.01196, "measured": False},  # ik's: a network policy costs more
        "residual": {"task_s": 9.755, "per_step_s": 0.01196, "measured": False},
        # closed-loop rollouts tracked around the optimised trajectory: 66-104 CPU-s per 2 x 200 steps
        # on the same holdout run (mean 0.22 s per rollout step)
        "mpc": {"task_s": 9.755, "per_step_s": 0.22, "measured": True},
    },
    "write": {"task_s": 1.281, "per_step_s": 0.0},
    "bytes_per_step": 930.6,  # TFRecord bytes per stored step (the manifests of the 3 songs' shards)
}
SHARD_OVERHEAD_BYTES = 40_000  # per song: dataset_info.json, features.json, manifest.json


def _song_chunks(ref: str, config: CollectConfig, catalog: dict[str, dict]) -> dict:
    """song_id, title and chunks [(chunk_id or None, n_steps)] of a song, without running anything."""
    from envs.music.chunks import load_chunk, make_chunks, song_steps

    row = catalog.get(ref)
    work = Path(config.work_dir)
    if row is not None and row["id"] and not (work / row["id"]).is_dir():
        if not row["playable"]:
            raise ValueError(row["reason"] or f"{ref}: not playable")
        from envs.music.chunks import chunk_lengths

        lengths = chunk_lengths(song_steps(row["duration_s"]))
        return {"song_id": row["id"], "title": row["title"], "chunks": [(None, n) for n in lengths],
                "from": "catalog"}
    if row is not None and row["id"]:
        files = sorted((work / row["id"]).glob("chunk-*.json"))
        if files:
            chunks = [load_chunk(f) for f in files]
            return {"song_id": row["id"], "title": row["title"], "from": "work",
                    "chunks": [(c.chunk_id, c.n_steps) for c in chunks]}
    from envs.music.songs import load_song

    song = load_song(ref)
    return {"song_id": song.song_id, "title": song.title, "from": "song",
            "chunks": [(c.chunk_id, c.n_steps) for c in make_chunks(song)]}


def _catalog_rows(catalog_dir: str | Path | None) -> dict[str, dict]:
    if catalog_dir is None or not Path(catalog_dir).is_dir():
        return {}
    rows = {}
    for path in sorted(Path(catalog_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["ref"]] = row
    return rows


def collection_plan(config: CollectConfig, catalog_dir: str | Path | None = "datasets/catalog",
                    costs: dict | None = None) -> dict:
    """What `run_collection(config)` would run and reuse, and what it would cost (module docstring)."""
    costs = costs or MEASURED
    kind = config.specialist
    profile = get_profile(config.profile)
    train_cost, rollout_cost = costs["train"][kind], costs["rollout"][kind]
    catalog = _catalog_rows(catalog_dir)
    tasks = {stage: {"run": 0, "reuse": 0} for stage in ("train", "rollout", "write")}
    cpu = {"flow": costs["flow_s"], "prepare": 0.0, "train": 0.0, "rollout": 0.0, "write": 0.0}
    songs, new_steps, failed = [], 0, 0
    for ref in config.songs:
        try:
            info = _song_chunks(ref, config, catalog)
        except Exception as exc:  # noqa: BLE001 - the flow would fail this song at prepare; say so
            songs.append({"ref": ref, "status": "unloadable", "error": f"{type(exc).__name__}: {exc}"})
            failed += 1
            continue
        song_id = info["song_id"]
        cpu["prepare"] += costs["prepare"]["task_s"]
        entry = {"ref": ref, "song_id": song_id, "title": info["title"], "chunks": len(info["chunks"]),
                 "steps": sum(n for _, n in info["chunks"]), "train": 0, "rollout": 0, "from": info["from"]}
        chunk_ids = [c for c, _ in info["chunks"]]
        for chunk_id, n_steps in info["chunks"]:
            chunk_work = Path(config.work_dir) / song_id / (chunk_id or "")
            trained = chunk_id is not None and specialist_done(chunk_work, chunk_id, config)
            rolled = trained and rollouts_done(chunk_work, chunk_id, config)
            if trained:
                tasks["train"]["reuse"] += 1
            else:
                tasks["train"]["run"] += 1
                entry["train"] += 1
                train_steps = n_steps if kind in ("ik", "mpc") else profile.total_steps
                cpu["train"] += train_cost["task_s"] + train_cost["per_step_s"] * train_steps
            if rolled:
                tasks["rollout"]["reuse"] += 1
            else:
                tasks["rollout"]["run"] += 1
                entry["rollout"] += 1
                cpu["rollout"] += rollout_cost["task_s"] + rollout_cost["per_step_s"] * n_steps * config.rollouts
        written = None not in chunk_ids and not entry["rollout"] and song_done(song_id, chunk_ids, config)
        stored = entry["steps"] * config.rollouts
        if written:
            tasks["write"]["reuse"] += 1
        else:
            tasks["write"]["run"] += 1
            new_steps += stored
            cpu["write"] += costs["write"]["task_s"] + costs["write"]["per_step_s"] * stored
        entry["status"] = "reuse" if written else "run"
        songs.append(entry)
    planned = [s for s in songs if s["status"] != "unloadable"]
    bytes_new = new_steps * costs["bytes_per_step"] + SHARD_OVERHEAD_BYTES * tasks["write"]["run"]
    total_steps = sum(s["steps"] for s in planned) * config.rollouts
    return {
        "specialist": kind, "profile": config.profile, "rollouts": config.rollouts,
        "songs": songs,
        "totals": {"songs": len(config.songs), "unloadable": failed, "chunks": sum(s["chunks"] for s in planned),
                   "episodes": sum(s["chunks"] for s in planned) * config.rollouts,
                   "stored_steps": total_steps, "new_stored_steps": new_steps, "tasks": tasks},
        "estimate": {
            "cpu_hours": round(sum(cpu.values()) / 3600, 3),
            "cpu_s_by_stage": {k: round(v, 1) for k, v in cpu.items()},
            "wall_hours_at": {f"{c}_cores": round(sum(cpu.values()) / 3600 / c, 3) for c in (2, 16, 64)},
            "disk_bytes_new": int(bytes_new),
            "disk_bytes_total": int(total_steps * costs["bytes_per_step"] + SHARD_OVERHEAD_BYTES * len(planned)),
            "bytes_per_step": costs["bytes_per_step"],
            "measured": config.profile in train_cost.get("profiles", ()) and rollout_cost.get("measured", False),
            "costs_from": "tasks.plan.MEASURED (benchmarks/collect_cost.py)",
        },
    }
