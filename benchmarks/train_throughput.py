"""Specialist training throughput (issue 3), against plain robopianist stepping.

In one run, on one chunk:
  plain         robopianist's own env (suite.load), random actions
  collect_only  tasks.specialist.train_specialist during warm-up (random actions,
                no learning): our env + replay inserts
  training      the same loop after warm-up: DroQ with RP1M Table 4 sizes,
                one update every 2 env steps
  updates       droq.update alone on a fixed replay buffer (updates/s)
Ratios are against `plain`.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--steps", type=int, default=1000, help="env steps per measured phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import jax

    from agents import droq
    from agents.common import ReplayBuffer
    from benchmarks.baseline import plain_robopianist_env, steps_per_second
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig
    from tasks.specialist import TrainProfile, train_specialist

    song = load_song(args.song)
    chunk = replace(make_chunks(song)[0], n_steps=100)  # short episodes: the final eval costs little
    tmp = Path(tempfile.mkdtemp(prefix="train_bench_"))
    config = EnvConfig()

    plain_rate = steps_per_second(plain_robopianist_env(chunk, config), args.steps)
    rng = np.random.default_rng(0)

    def run(total: int, warmup: int, name: str) -> float:
        profile = TrainProfile(name, total_steps=total, eval_every=10 * total, checkpoint_every=10 * total,
                               agent=droq.DroQConfig(warmup_steps=warmup, buffer_size=total))
        start = time.perf_counter()
        train_specialist(chunk, tmp / name, profile)
        return time.perf_counter() - start

    # Same fixed costs (env build, final eval) in each run; the differences are the measured
    # phases. A first throwaway run pays the one-time costs (imports, jit compiles).
    run(2 * args.steps, args.steps, "warm")
    base = run(args.steps, args.steps, "base")
    collect = run(2 * args.steps, 2 * args.steps, "collect")
    learn = run(2 * args.steps, args.steps, "learn")
    collect_rate = args.steps / max(collect - base, 1e-9)
    train_rate = args.steps / max(learn - base, 1e-9)

    state = droq.init(jax.random.PRNGKey(0), 1144, 39)
    buffer = ReplayBuffer(1144, 39, 5000)
    n = 5000
    buffer.insert_many(rng.normal(size=(n, 1144)).astype(np.float32), rng.uniform(-1, 1, (n, 39)).astype(np.float32),
                       rng.normal(size=n), np.ones(n), rng.normal(size=(n, 1144)).astype(np.float32))
    state, _ = droq.update(state, buffer.sample(rng, 256))
    jax.block_until_ready(state)
    n_updates = 100
    start = time.perf_counter()
    for _ in range(n_updates):
        state, _ = droq.update(state, buffer.sample(rng, 256))
    jax.block_until_ready(state)
    update_rate = n_updates / (time.perf_counter() - start)

    result = {
        "steps_per_s": {"plain_robopianist": round(plain_rate, 1), "collect_only": round(collect_rate, 1),
                        "training": round(train_rate, 1)},
        "updates_per_s": round(update_rate, 1),
        "ratios": {"collect_only / plain": round(collect_rate / plain_rate, 3),
                   "training / plain": round(train_rate / plain_rate, 3)},
        "hours_for_8M_steps_at_this_rate": round(8e6 / train_rate / 3600, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for section, values in result.items():
        print(f"{section}: {values}")


if __name__ == "__main__":
    main()
