"""Open-loop OT-IK nominal controller: key-press precision/recall/F1 and IK cost.

For each chunk, `envs.control.nominal` plans the fingertips from the notes (OT
fingering), solves the IK along the chunk and the resulting actions are played
open loop (no feedback, no training) in the RP1M env. Printed per chunk:
steps, precision, recall, F1 (robopianist's per-step means, `envs.piano.metrics`),
IK solve time per control step (`HandsIK.solve`, all iterations), the
planning time (plan + IK + servo feedforward, for every candidate of the
open-loop search) and the search's chosen config variant. Baseline on the same chunk:
the zero action (hands at rest: F1 1 on silent steps, 0 elsewhere).

Target (issue 6): F1 >= 0.6 on the easy chunks with zero training
(PianoMime section 4.1: IK from human fingertips alone reaches F1 0.70).

    python benchmarks/ik_open_loop.py                # default chunks, table
    python benchmarks/ik_open_loop.py --json out.json
    python benchmarks/ik_open_loop.py --chunk robopianist:TwinkleTwinkleRousseau:0 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")
# Small dense QPs: one BLAS thread is fastest (and does not fight a busy machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

# Easy to hard: a scale in both hands (one note per hand at a time), a
# children's song with chords, a Chopin nocturne (fast, wide, polyphonic).
DEFAULT_CHUNKS = (
    "robopianist:CMajorScaleTwoHands:0",
    "robopianist:TwinkleTwinkleLittleStar:0",
    "robopianist:TwinkleTwinkleRousseau:0",
    "robopianist:NocturneRousseau:0",
)


def parse_chunk(spec: str) -> tuple[str, int]:
    ref, _, index = spec.rpartition(":")
    if not ref or not index.isdigit():
        raise SystemExit(
            f"--chunk {spec!r}: expected <song ref>:<chunk index>, e.g. robopianist:TwinkleTwinkleRousseau:0"
        )
    return ref, int(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk", action="append", help="<song ref>:<chunk index> (repeatable); default: four chunks")
    parser.add_argument("--steps", type=int, default=None, help="play only the first N steps of each chunk")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = parser.parse_args()

    from dataclasses import replace

    from envs.control.nominal import NominalConfig, NominalController, nominal_trajectory
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env
    from envs.piano.rollout import run_episode, zero_controller

    env_config, config = EnvConfig(), NominalConfig()
    rows = []
    for spec in args.chunk or DEFAULT_CHUNKS:
        ref, index = parse_chunk(spec)
        chunks = make_chunks(load_song(ref))
        if index >= len(chunks):
            raise SystemExit(f"{ref}: chunk {index} does not exist, the song has {len(chunks)} chunks")
        chunk = chunks[index]
        if args.steps:
            chunk = replace(chunk, n_steps=min(args.steps, chunk.n_steps))
        start = time.perf_counter()
        trajectory = nominal_trajectory(chunk, env_config, config)
        plan_s = time.perf_counter() - start
        env = make_env(chunk, env_config, seed=0)
        controller = NominalController(trajectory)
        record = run_episode(env, controller.act, np.random.default_rng(0))
        zero = run_episode(env, zero_controller(env), np.random.default_rng(0))
        env.close()
        n = len(trajectory.actions)
        rows.append({
            "chunk": f"{ref}:{index}",
            "steps": n,
            "precision": round(record.metrics.precision, 4),
            "recall": round(record.metrics.recall, 4),
            "f1": round(record.metrics.f1, 4),
            "zero_action_f1": round(zero.metrics.f1, 4),
            "ik_ms_per_step": round(1e3 * trajectory.ik_seconds / n, 2),
            "plan_s": round(plan_s, 2),
            "unassigned_keys": int(trajectory.plan.unassigned.sum()),
            "goal_keys": int(record.goal_keys.sum()),
            "chosen": trajectory.search[0][0] if trajectory.search else "{}",
            "candidates_f1": {o: round(f, 4) for o, f in trajectory.search},
        })
    result = {"config": config.as_dict(), "env_config": env_config.as_dict(), "chunks": rows}
    header = ("chunk", "steps", "P", "R", "F1", "F1(0)", "IK ms/step", "plan s", "chosen")
    print(f"{header[0]:44s} {header[1]:>5s} {header[2]:>6s} {header[3]:>6s} {header[4]:>6s} {header[5]:>6s} "
          f"{header[6]:>10s} {header[7]:>7s}  {header[8]}")
    for row in rows:
        print(f"{row['chunk']:44s} {row['steps']:5d} {row['precision']:6.3f} {row['recall']:6.3f} {row['f1']:6.3f} "
              f"{row['zero_action_f1']:6.3f} {row['ik_ms_per_step']:10.1f} {row['plan_s']:7.1f}  {row['chosen']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=list)


if __name__ == "__main__":
    main()
