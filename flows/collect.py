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

Runners: `local` runs up to `parallel_chunks` tasks at once in threads of the
flow process (the heavy work runs in child processes); `ray` submits every
task to a Ray cluster through prefect-ray's RayTaskRunner, each training task
asking for 1 CPU and each rollout task for `workers` CPUs. Across machines the
work folder and the shards folder must be on storage every node sees, and the
flow must report to a real Prefect server (PREFECT_API_URL), not the
ephemeral one.
"""

from __future__ import annotations

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

    # 2. chunks: train -> rollout, submitted only where the manifests say it is missing
    chunk_futures: dict[str, list] = {}
    for ref, plan in plans.items():
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
        chunk_futures[ref] = entries

    # 3. songs: write shards after all the song's rollouts
    write_futures = {}
    for ref, plan in plans.items():
        chunk_ids = [c["chunk_id"] for c in plan["chunks"]]
        rollouts = [f for _, _, f in chunk_futures[ref] if f is not None]
        if not rollouts and song_done(plan["song_id"], chunk_ids, config):
            counts["write"][1] += 1
            continue
        counts["write"][0] += 1
        chunk_works = [str(work / plan["song_id"] / c) for c in chunk_ids]
        write_futures[ref] = write_song_task.submit(plan["song_id"], chunk_works, chunk_ids, config,
                                                    wait_for=rollouts or None)

    # 4. outcome per song, from the futures (a failed stage names itself)
    pending = [f for entries in chunk_futures.values() for _, t, r in entries for f in (t, r) if f is not None]
    pending += list(write_futures.values())
    for ref, plan in plans.items():
        song_id = plan["song_id"]
        record = {"ref": ref, "song_id": song_id, "title": plan["title"], "chunks": len(plan["chunks"])}
        failure = None
        for chunk, train_future, rollout_future in chunk_futures[ref]:
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
        if ref in write_futures:
            wait([write_futures[ref]])
            if failure is None and failed(write_futures[ref]):
                failure = {"stage": "write", "error": error_of(write_futures[ref])}
        if failure:
            record.update(status="failed", **failure)
            logger.warning("%s: failed at %s: %s", ref, failure["stage"], failure["error"][:300])
        else:
            ran_anything = ref in write_futures or any(t or r for _, t, r in chunk_futures[ref])
            record.update(status="done" if ran_anything else "cached",
                          shards=str(Path(config.shards_dir) / song_id))
        record_status(config.work_dir, song_id, {**record, "finished": time.time()})
        songs[ref] = record
        emit("song", **record)
    wait(pending)

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
