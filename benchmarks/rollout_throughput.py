"""Rollout throughput and storage cost (issue 3 targets).

In one run, on one chunk:
  plain        robopianist's own env (suite.load) stepped with random actions,
               one process: the baseline
  workers=1    tasks.rollouts.rollout_chunk with one worker (in-process)
  workers=2    the same rollouts with two worker processes (spawn start-up,
               env builds and jit included: the wall time a user waits)
Then the rollouts are written as the song's RLDS shards and the stored bytes
per step are compared with naive float32 storage of every field.

Targets: workers=2 >= 1.7x workers=1; stored bytes/step <= 1/3 naive float32.

The default of 128 rollouts (16 groups of 8) is a quarter of RP1M's 500 per
specialist. A spawned worker first spends about 20 s importing, building its
8 envs and compiling the policy; at 32 rollouts (4 groups, ~100 s of work)
that start-up alone holds two workers to about 1.5x, while a real collection
(500 rollouts, 63 groups per chunk) amortises it as the default here does.
The specialist rolled out is a `smoke` one trained here first (the policy's
size, not its skill, sets the inference cost; pass --specialist to use another).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--song", default="robopianist:TwinkleTwinkleRousseau")
    parser.add_argument("--rollouts", type=int, default=128)
    parser.add_argument("--steps", type=int, default=550, help="episode length (the chunk is cut to it)")
    parser.add_argument("--specialist", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.baseline import plain_robopianist_env, steps_per_second
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig
    from tasks.rlds import bytes_per_step, naive_float32_bytes_per_step, write_song_dataset
    from tasks.rollouts import iter_rollout_episodes, rollout_chunk
    from tasks.specialist import PROFILES, train_specialist

    song = load_song(args.song)
    chunk = make_chunks(song)[0]
    chunk = replace(chunk, n_steps=min(args.steps, chunk.n_steps))
    tmp = Path(tempfile.mkdtemp(prefix="rollout_bench_"))
    specialist = args.specialist
    if specialist is None:
        specialist = tmp / "specialist"
        train_specialist(chunk, specialist, replace(PROFILES["smoke"], agent=replace(PROFILES["smoke"].agent, hidden_dims=(256, 256, 256))))

    plain_rate = steps_per_second(plain_robopianist_env(chunk, EnvConfig()), 1000)

    total_steps = args.rollouts * chunk.n_steps
    rates = {}
    for workers in (1, 2):
        start = time.perf_counter()
        rollout_chunk(chunk, song.song_id, specialist, tmp / f"rollouts_{workers}", n_rollouts=args.rollouts,
                      workers=workers)
        rates[workers] = total_steps / (time.perf_counter() - start)
    same = all(np.array_equal(a.steps["action"], b.steps["action"]) for a, b in
               zip(iter_rollout_episodes(tmp / "rollouts_1"), iter_rollout_episodes(tmp / "rollouts_2")))
    write_song_dataset(tmp / "shards", song.song_id, iter_rollout_episodes(tmp / "rollouts_1"))
    stored = bytes_per_step(tmp / "shards" / song.song_id)
    naive = naive_float32_bytes_per_step()
    result = {
        "rollouts": args.rollouts, "steps_per_episode": chunk.n_steps, "total_steps": total_steps,
        "steps_per_s": {"plain_robopianist": round(plain_rate, 1), "workers_1": round(rates[1], 1),
                        "workers_2": round(rates[2], 1)},
        "ratios": {"workers_2 / workers_1 (target >= 1.7)": round(rates[2] / rates[1], 3),
                   "workers_1 / plain_robopianist": round(rates[1] / plain_rate, 3)},
        "identical_episodes_1_vs_2_workers": same,
        "bytes_per_step": {"stored": round(stored, 1), "naive_float32": naive,
                           "stored / naive (target <= 0.333)": round(stored / naive, 3)},
    }
    if args.json:
        print(json.dumps(result))
        return
    for section, values in result.items():
        print(f"{section}: {values}")


if __name__ == "__main__":
    main()
