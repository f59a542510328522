"""CPU cost of each collection step per stored step, for `pianoset collect --plan` (tasks/plan.py).

    python -m benchmarks.collect_cost [--specialist ik] [--rollouts 4] [--song REF ...] [--json]

Runs the real steps of `tasks.collect` one after the other on a few songs in a scratch work
folder (prepare, train-specialist in its child process, rollouts with one worker, write-shards)
and measures the CPU seconds (user + system, this process and its children) of each call. Per
stage it fits `cpu = task_s + per_step_s * steps` by least squares over the chunks (steps: the
chunk's steps for training, steps x rollouts for rollouts, the song's stored steps for writing),
and reads the bytes per stored step from the written shards' manifests. The baseline is the
stage's total measured CPU; each fit prints its ratio to it. Paste the printed table into
`tasks.plan.MEASURED` with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

SONGS = ("robopianist:CMajorScaleTwoHands", "robopianist:TwinkleTwinkleRousseau",
         "robopianist:NocturneRousseau")


def cpu_now() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, *args):
    start = cpu_now()
    result = fn(*args)
    return result, cpu_now() - start


def fit(points: list[tuple[float, float]]) -> dict:
    """Least squares cpu = task_s + per_step_s * steps (per_step_s alone with one point)."""
    steps = np.array([p[0] for p in points], dtype=float)
    cpu = np.array([p[1] for p in points], dtype=float)
    if len(points) >= 2 and np.ptp(steps) > 0:
        per_step, task = np.polyfit(steps, cpu, 1)
        if task < 0:  # noise: a fixed cost cannot be negative
            task, per_step = 0.0, cpu.sum() / steps.sum()
        elif per_step < 0:  # nor a cost per step
            task, per_step = cpu.mean(), 0.0
    else:
        task, per_step = 0.0, cpu.sum() / steps.sum()
    predicted = task * len(points) + per_step * steps.sum()
    return {"task_s": round(float(task), 3), "per_step_s": float(f"{per_step:.4g}"), "n": len(points),
            "measured_cpu_s": round(float(cpu.sum()), 2), "fit_over_measured": round(float(predicted / cpu.sum()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specialist", default="ik")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--song", action="append", help="song refs (default: three robopianist songs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tasks.collect import (CollectConfig, prepare_song, rollout_chunk_step, train_chunk,
                               write_song)
    from tasks.rlds import read_manifest

    from tasks.specialist import get_profile

    train_steps = get_profile(args.profile).total_steps
    scratch = Path(tempfile.mkdtemp(prefix="collect-cost-"))
    config = CollectConfig(songs=tuple(args.song or SONGS), profile=args.profile, specialist=args.specialist,
                           n_rollouts=args.rollouts, workers=1, parallel_chunks=1, register=False,
                           work_dir=str(scratch / "work"), shards_dir=str(scratch / "shards"),
                           specialists_dir=str(scratch / "specialists"))
    points = {"prepare": [], "train": [], "rollout": [], "write": []}
    stored_bytes = stored_steps = 0
    started = time.time()
    for ref in config.songs:
        plan, cpu = timed(prepare_song, ref, config.work_dir)
        song_steps = sum(c["n_steps"] for c in plan["chunks"])
        points["prepare"].append((song_steps, cpu))
        works = []
        for chunk in plan["chunks"]:
            work = str(Path(config.work_dir) / plan["song_id"] / chunk["chunk_id"])
            works.append(work)
            _, cpu = timed(train_chunk, chunk["file"], work, config)
            # ik "trains" by evaluating its controller over the chunk; droq/residual over the budget's steps
            points["train"].append((chunk["n_steps"] if args.specialist == "ik" else train_steps, cpu))
            _, cpu = timed(rollout_chunk_step, plan["song_id"], chunk["file"], work, config)
            points["rollout"].append((chunk["n_steps"] * config.rollouts, cpu))
        _, cpu = timed(write_song, plan["song_id"], works, [c["chunk_id"] for c in plan["chunks"]], config)
        manifest = read_manifest(Path(config.shards_dir) / plan["song_id"])
        points["write"].append((manifest.n_steps, cpu))
        stored_bytes += manifest.tfrecord_bytes
        stored_steps += manifest.n_steps
    report = {
        "command": " ".join(["python -m benchmarks.collect_cost", *sys.argv[1:]]),
        "specialist": args.specialist, "profile": args.profile, "rollouts": args.rollouts,
        "songs": list(config.songs), "chunks": len(points["train"]),
        "stages": {stage: fit(p) for stage, p in points.items()},
        "bytes_per_step": round(stored_bytes / stored_steps, 1), "stored_steps": stored_steps,
        "wall_s": round(time.time() - started, 1), "scratch": str(scratch),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['command']}: {report['chunks']} chunks of {len(config.songs)} songs, {report['wall_s']} s wall")
    for stage, f in report["stages"].items():
        print(f"  {stage:8s} task_s {f['task_s']:8.3f}  per_step_s {f['per_step_s']:.4g}  "
              f"(fit / measured CPU {f['fit_over_measured']:.2f} of {f['measured_cpu_s']} s, {f['n']} points)")
    print(f"  bytes per stored step {report['bytes_per_step']} ({stored_steps} steps)")


if __name__ == "__main__":
    main()
