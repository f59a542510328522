"""The collection flow's own cost at RP1M size: planning and submission with the work stubbed.

    python -m benchmarks.collect_scale [--songs 2089] [--sizes 100,500] [--catalog-dir DIR] [--json]

Runs the real `flows.collect.collect_flow` (its temporary Prefect server, the local thread-pool
runner, the done checks, the futures and waits, the status records) over N songs whose chunk
counts come from the catalog (rows sampled with replacement, seeded, when the catalog has fewer
playable songs than N; RP1M: 2,089 songs), with the four Prefect tasks replaced by tasks that
return at once (same names, same signatures, no files but the status records). Per size it
reports wall time, task runs, peak RSS of the flow process and of the Prefect server, and time
and memory per 1,000 chunks. The baseline is the smallest size, measured in the same run: the
ratio column says how far each size is from linear.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np
import psutil


def chunk_counts(n_songs: int, catalog_dir: str | None, rng: np.random.Generator) -> tuple[list[int], str]:
    from envs.music.catalog import load_catalog

    rows = []
    if catalog_dir and Path(catalog_dir).is_dir():
        rows = [r.n_chunks for r in load_catalog(catalog_dir) if r.playable and r.n_chunks > 0]
    if not rows:
        raise SystemExit(f"{catalog_dir}: no playable catalog rows (build one with `pianoset songs`)")
    if len(rows) >= n_songs:
        return [int(c) for c in rng.permutation(rows)[:n_songs]], f"{n_songs} of {len(rows)} catalog songs"
    return [int(c) for c in rng.choice(rows, size=n_songs)], f"{n_songs} sampled with replacement from {len(rows)} catalog songs"


def stub_tasks(chunks_of: dict[str, int]):
    """The flow's four tasks, returning at once (what `tasks.collect`'s steps return, no work)."""
    from prefect import task
    from prefect.cache_policies import NONE

    def prepare(ref: str, work_dir: str) -> dict:
        song_id = ref.replace(":", "_")
        return {"ref": ref, "song_id": song_id, "title": ref, "chunks": [
            {"chunk_id": f"{song_id}-{i:03d}", "index": i, "n_steps": 550, "file": f"/nonexistent/{song_id}/{i}"}
            for i in range(chunks_of[ref])]}

    def train(chunk_file, chunk_work, config) -> dict:
        return {"chunk_id": chunk_file, "specialist_id": chunk_file, "kind": "ik", "f1": 1.0, "steps": 0,
                "executor": "stub"}

    def rollout(song_id, chunk_file, chunk_work, config) -> dict:
        return {"chunk_id": chunk_file, "n_rollouts": config.rollouts, "mean_f1": 1.0, "executor": "stub"}

    def write(song_id, chunk_works, chunk_ids, config) -> dict:
        return {"song_id": song_id, "n_episodes": len(chunk_ids), "n_steps": 0, "reused": False}

    return {"prepare_song_task": task(prepare, name="prepare-song", cache_policy=NONE),
            "train_chunk_task": task(train, name="train-specialist", cache_policy=NONE),
            "rollout_chunk_task": task(rollout, name="rollout", cache_policy=NONE),
            "write_song_task": task(write, name="write-shards", cache_policy=NONE)}


class PeakRss:
    """Peak RSS (MB) of this process and, separately, of its child processes, sampled."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.own, self.children = every_s, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.own = max(self.own, me.memory_info().rss / 2 ** 20)
            kids = 0.0
            for child in me.children(recursive=True):
                try:
                    kids += child.memory_info().rss / 2 ** 20
                except psutil.Error:
                    pass
            self.children = max(self.children, kids)
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_size(n_songs: int, counts: list[int], scratch: Path) -> dict:
    import flows.collect as flow_module
    from flows.server import prefect_server, run_in_thread
    from tasks.collect import CollectConfig

    refs = [f"sim:{i:05d}" for i in range(n_songs)]
    chunks_of = dict(zip(refs, counts[:n_songs]))
    for name, stub in stub_tasks(chunks_of).items():
        setattr(flow_module, name, stub)
    work = scratch / f"work-{n_songs}"
    config = CollectConfig(songs=tuple(refs), specialist="ik", n_rollouts=1, workers=1, parallel_chunks=2,
                           register=False, work_dir=str(work), shards_dir=str(scratch / "shards"),
                           specialists_dir=str(scratch / "specialists"))
    n_chunks = sum(chunks_of.values())
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with PeakRss() as rss, prefect_server():
        started = time.perf_counter()
        summary = run_in_thread(flow_module.run_collection, config)
        wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    task_runs = n_songs + sum(summary["tasks_run"].values())
    return {"songs": n_songs, "chunks": n_chunks, "task_runs": task_runs, "wall_s": round(wall, 1),
            "flow_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            "peak_rss_mb": round(rss.own, 0), "server_peak_rss_mb": round(rss.children, 0),
            "s_per_1000_chunks": round(wall / n_chunks * 1000, 1),
            "failed": summary["counts"]["failed"], "done": summary["counts"]["done"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=2089)  # RP1M's song count
    parser.add_argument("--sizes", default="50", help="smaller sizes first, comma-separated (the baseline)")
    parser.add_argument("--catalog-dir", default="datasets/catalog")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # the first start of a fresh Prefect home migrates its database: slow on a loaded machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | {args.songs})
    counts, source = chunk_counts(max(sizes), args.catalog_dir, np.random.default_rng(args.seed))
    scratch = Path(tempfile.mkdtemp(prefix="collect-scale-"))
    results = []
    for n in sizes:
        results.append(run_size(n, counts, scratch))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # each size as it ends
    base = results[0]
    for r in results:
        r["per_chunk_over_baseline"] = round(r["s_per_1000_chunks"] / base["s_per_1000_chunks"], 2)
    report = {"command": " ".join(["python -m benchmarks.collect_scale", *sys.argv[1:]]), "source": source,
              "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['command']}: {source}")
    for r in results:
        print(f"  {r['songs']:5d} songs {r['chunks']:6d} chunks {r['task_runs']:6d} task runs: {r['wall_s']:7.1f} s "
              f"({r['s_per_1000_chunks']} s / 1000 chunks, x{r['per_chunk_over_baseline']} of the baseline), "
              f"flow CPU {r['flow_cpu_s']} s, peak RSS flow {r['peak_rss_mb']:.0f} MB, server {r['server_peak_rss_mb']:.0f} MB"
              + (f", {r['failed']} FAILED" if r["failed"] else ""))


if __name__ == "__main__":
    main()
