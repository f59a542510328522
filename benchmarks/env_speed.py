"""Env speed: our RP1M env (OT reward on) vs robopianist's own env vs raw MuJoCo.

All three run on the same song chunk, with the same physics/control timesteps
and the same random actions, in this one process:

  ours_ot      envs.piano.env.make_env, fingering="ot" (the default)
  ours_no_ot   the same env with fingering="none": no OT matching, no OT reward
               (isolates the OT cost)
  robopianist  robopianist.suite.load(...) with matching task kwargs
  mj_step      raw mujoco.mj_step on the same compiled model, counted in
               control steps (physics steps / substeps): the physics limit

Prints steps/s and ratios; `--json` prints one JSON object instead.
Target (issue 2): the OT reward costs no more than 10% of env speed,
i.e. ours_ot / ours_no_ot >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import mujoco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--song", default="robopianist:TwinkleTwinkleRousseau")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from benchmarks.baseline import plain_robopianist_env, steps_per_second
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env

    config = EnvConfig()
    chunk = make_chunks(load_song(args.song))[0]
    ours_ot = make_env(chunk, config, seed=0)
    ours_no_ot = make_env(chunk, config.with_reward(fingering="none"), seed=0)
    theirs = plain_robopianist_env(chunk, config)

    substeps = int(round(config.control_timestep / config.physics_timestep))
    model, data = ours_ot.physics.model.ptr, ours_ot.physics.data.ptr

    def mj_rate() -> float:
        n = args.steps * substeps
        mujoco.mj_resetData(model, data)
        start = time.perf_counter()
        for _ in range(n):
            mujoco.mj_step(model, data)
        return args.steps / (time.perf_counter() - start)

    best = {"ours_ot": 0.0, "ours_no_ot": 0.0, "robopianist": 0.0, "mj_step": 0.0}
    for rep in range(args.repeats):
        best["ours_ot"] = max(best["ours_ot"], steps_per_second(ours_ot, args.steps, rep))
        best["ours_no_ot"] = max(best["ours_no_ot"], steps_per_second(ours_no_ot, args.steps, rep))
        best["robopianist"] = max(best["robopianist"], steps_per_second(theirs, args.steps, rep))
        best["mj_step"] = max(best["mj_step"], mj_rate())
    result = {
        "song": args.song,
        "chunk_steps": chunk.n_steps,
        "substeps_per_control_step": substeps,
        "steps_per_s": {k: round(v, 1) for k, v in best.items()},
        "ratios": {
            "ours_ot / ours_no_ot (OT cost; target >= 0.90)": round(best["ours_ot"] / best["ours_no_ot"], 3),
            "ours_ot / robopianist": round(best["ours_ot"] / best["robopianist"], 3),
            "ours_ot / mj_step (fraction of the physics limit)": round(best["ours_ot"] / best["mj_step"], 3),
            "robopianist / mj_step": round(best["robopianist"] / best["mj_step"], 3),
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"song {args.song}, chunk of {chunk.n_steps} steps, {substeps} physics steps per control step")
    for name, rate in result["steps_per_s"].items():
        print(f"  {name:12s} {rate:9.1f} control steps/s")
    for name, ratio in result["ratios"].items():
        print(f"  {ratio:6.3f}  {name}")


if __name__ == "__main__":
    main()
