"""The collection flow: songs -> chunks -> specialists -> rollouts -> RLDS shards -> DVC.

One Prefect flow run over a song selection and a budget profile:

    prepare-song (per song)  load, validate, write chunk files
    train-specialist (per chunk, child process, resumes from checkpoints)
    rollout (per chunk, N seeds, worker processes)
    write-shards (per song, after all its chunks' rollouts)
    register (once, serialized: DVC records the new shard/specialist folders)

Work already done (per the file manifests, see tasks/collect.py) is not
submitted at all, so rerunning the same command is the resume: only missing
or failed work runs. A failure stops only its song: the others go on, and the
summary lists every song as done, cached or failed (with stage and error).

Songs are submitted in a window of at most `in_flight_limit` chunks (4 per task
slot): the oldest song in flight is waited for, recorded and dropped before the
next songs are submitted, so the flow's memory follows the window, not the size
of the collection.

Runners: `local` runs up to `parallel_chunks` tasks at once in threads of the
flow process (the heavy work runs in child processes); `ray` submits every
task to a Ray cluster through prefect-ray's RayTaskRunner, each training task
asking for 1 CPU and each rollout task for `workers` CPUs. Across machines the
work folder and the shards folder must be on storage every node sees, and the
flow must report to a real Prefect server (PREFECT_API_URL), not the
ephemeral one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import emit, error_of, failed
from tasks.collect import (
    CollectConfig,
    prepare_song_task,
    record_status,
    rollout_chunk_task,
    rollouts_done,
    song_done,
    specialist_done,
    train_chunk_task,
    write_song_task,
)


@flow(name="collect", log_prints=False)
def collect_flow(config: CollectConfig) -> dict:
    logger = get_run_logger()
    started = time.time()
    work = Path(config.work_dir)
    counts = {"train": [0, 0], "rollout": [0, 0], "write": [0, 0]}  # [ran, reused]
    songs: dict[str, dict] = {}
    executors: list[dict] = []  # where each train/rollout task ran

    # 1. plans (cheap, all at once)
    plan_futures = {ref: prepare_song_task.submit(ref, config.work_dir) for ref in config.songs}
    wait(list(plan_futures.values()))
    plans = {}
    for ref, future in plan_futures.items():
        if failed(future):
            songs[ref] = {"ref": ref, "status": "failed", "stage": "prepare", "error": error_of(future)}
            logger.warning("%s: cannot be prepared: %s", ref, songs[ref]["error"])
        else:
            plans[ref] = future.result()
    emit("planned", songs=len(config.songs), chunks=sum(len(p["chunks"]) for p in plans.values()))

    # 2-4. per song, in a bounded window: submit its chunks (train -> rollout, only where the
    # manifests say it is missing) and its shard writing; then, oldest song first, wait for it,
    # record its outcome and drop its futures before more songs are submitted.
    # The tasks get the config without the song list (one ref stays: the field may not be empty).
    # Prefect links every object inside a task's result to that task run and looks up each object
    # in a later task's parameters by id; the preparation results hold the song refs themselves,
    # so the whole list in every task's parameters gave each task run one input link per song
    # (issue 22: 317k TaskRunResult objects and 1 GB of flow memory at 400 songs).
    task_config = dataclasses.replace(config, songs=config.songs[:1])
    queue = list(plans.items())
    in_flight: dict[str, tuple[dict, dict]] = {}
    chunks_in_flight, limit = 0, in_flight_limit(config)
    while queue or in_flight:
        while queue and (not in_flight or chunks_in_flight + len(queue[0][1]["chunks"]) <= limit):
            ref, plan = queue.pop(0)
            in_flight[ref] = (plan, _submit_song(plan, task_config, work, counts))
            chunks_in_flight += len(plan["chunks"])
        ref = next(iter(in_flight))
        plan, submitted = in_flight.pop(ref)
        chunks_in_flight -= len(plan["chunks"])
        songs[ref] = _resolve_song(ref, plan, submitted, config, executors, logger)

    # 5. one serialized registration of everything new
    registered = None
    new_songs = [r for r in songs.values() if r["status"] == "done"]
    if config.register and new_songs:
        from tasks.registry import register

        try:
            registered = register(Path.cwd())
        except Exception as exc:  # noqa: BLE001 - the data stays; the summary says so
            registered = {"error": f"{type(exc).__name__}: {exc}"}
            logger.warning("DVC registration failed: %s", registered["error"])

    summary = {
        "songs": songs,
        "counts": {s: sum(1 for r in songs.values() if r["status"] == s) for s in ("done", "cached", "failed")},
        "tasks_run": {k: v[0] for k, v in counts.items()},
        "tasks_reused": {k: v[1] for k, v in counts.items()},
        "registered": registered,
        "executors": executors,
        "seconds": round(time.time() - started, 1),
        "shards_dir": config.shards_dir,
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "last_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


# Chunks submitted at once per task slot (local: `parallel_chunks`); the oldest song is resolved
# before more are submitted, so the flow holds the futures of a window, not of the whole collection
# (issue 22, benchmarks/reports/many_song_run.md).
IN_FLIGHT_PER_SLOT = 4
RAY_IN_FLIGHT = 512  # a cluster's slots are not known ahead


def in_flight_limit(config: CollectConfig) -> int:
    """Most chunks submitted and not yet resolved (a song bigger than this goes alone)."""
    return RAY_IN_FLIGHT if config.runner == "ray" else IN_FLIGHT_PER_SLOT * config.parallel_chunks


def _submit_song(plan: dict, config: CollectConfig, work: Path, counts: dict) -> dict:
    """Submit what a song still needs: {"chunks": [(chunk, train future, rollout future)],
    "write": write future or None}; `counts` gets the tasks run and reused."""
    song_id = plan["song_id"]
    entries = []
    for chunk in plan["chunks"]:
        chunk_work = str(work / song_id / chunk["chunk_id"])
        train_future = None
        if specialist_done(Path(chunk_work), chunk["chunk_id"], config):
            counts["train"][1] += 1
        else:
            counts["train"][0] += 1
            with _resources(config, num_cpus=1):
                train_future = train_chunk_task.submit(chunk["file"], chunk_work, config)
        rollout_future = None
        if train_future is None and rollouts_done(Path(chunk_work), chunk["chunk_id"], config):
            counts["rollout"][1] += 1
        else:
            counts["rollout"][0] += 1
            with _resources(config, num_cpus=config.workers):
                rollout_future = rollout_chunk_task.submit(
                    song_id, chunk["file"], chunk_work, config,
                    wait_for=[train_future] if train_future is not None else None)
        entries.append((chunk, train_future, rollout_future))
    chunk_ids = [c["chunk_id"] for c in plan["chunks"]]
    rollouts = [f for _, _, f in entries if f is not None]
    write_future = None
    if not rollouts and song_done(song_id, chunk_ids, config):
        counts["write"][1] += 1
    else:
        counts["write"][0] += 1
        chunk_works = [str(work / song_id / c) for c in chunk_ids]
        write_future = write_song_task.submit(song_id, chunk_works, chunk_ids, config, wait_for=rollouts or None)
    return {"chunks": entries, "write": write_future}


def _resolve_song(ref: str, plan: dict, submitted: dict, config: CollectConfig, executors: list,
                  logger) -> dict:
    """Wait for a song's futures and record its outcome (a failed stage names itself)."""
    song_id = plan["song_id"]
    record = {"ref": ref, "song_id": song_id, "title": plan["title"], "chunks": len(plan["chunks"])}
    failure = None
    for chunk, train_future, rollout_future in submitted["chunks"]:
        for stage, future in (("train", train_future), ("rollout", rollout_future)):
            if future is None:
                continue
            wait([future])
            if failure is None and failed(future) and future.state.name != "NotReady":
                failure = {"stage": stage, "chunk_id": chunk["chunk_id"], "error": error_of(future)}
            elif future.state.is_completed():
                executors.append({"stage": stage, "chunk_id": chunk["chunk_id"],
                                  "executor": future.result().get("executor")})
        emit("chunk", ref=ref, chunk_id=chunk["chunk_id"])
    write_future = submitted["write"]
    if write_future is not None:
        wait([write_future])
        if failure is None and failed(write_future):
            failure = {"stage": "write", "error": error_of(write_future)}
    if failure:
        record.update(status="failed", **failure)
        logger.warning("%s: failed at %s: %s", ref, failure["stage"], failure["error"][:300])
    else:
        ran_anything = write_future is not None or any(t or r for _, t, r in submitted["chunks"])
        record.update(status="done" if ran_anything else "cached", shards=str(Path(config.shards_dir) / song_id))
    record_status(config.work_dir, song_id, {**record, "finished": time.time()})
    emit("song", **record)
    return record


def _resources(config: CollectConfig, num_cpus: int):
    if config.runner != "ray":
        return nullcontext()
    from prefect_ray.context import remote_options

    return remote_options(num_cpus=num_cpus)


def run_collection(config: CollectConfig) -> dict:
    """Run the flow with the task runner the config asks for."""
    if config.runner == "ray":
        from prefect_ray import RayTaskRunner

        runner = RayTaskRunner(address=config.ray_address) if config.ray_address else RayTaskRunner()
    else:
        runner = ThreadPoolTaskRunner(max_workers=config.parallel_chunks)
    os.makedirs(config.work_dir, exist_ok=True)
    return collect_flow.with_options(task_runner=runner)(config)
