"""Specialist training throughput (issues 3, 19): the DroQ loop on the dm_control env (old)
and on the lean path (new), side by side, against plain robopianist stepping.

In one run, on one chunk (`tasks.specialist.train_specialist`, RP1M Table 4 sizes):
  plain         robopianist's own env (suite.load), random actions
  collect_only  the loop during warm-up (random actions, no learning): env + replay inserts
  training      the loop after warm-up: one DroQ update every 2 env steps
  updates       droq.update alone on a fixed replay buffer (updates/s)
  act           the loop's per-step policy call: old `sample_actions(.., fold_in(key, step))`
                (two compiled calls) and new `sample_actions_at` (one)
"old" is main's loop before issue 19 (`make_specialist_env(lean=False)`: dm_control, and the
per-step action as `sample_actions(.., fold_in(key, step))`), "new" this branch's (the lean
path, `sample_actions_at`); the loop code is otherwise the same. Each phase is the
difference of two runs, so set-up and the final evaluation cancel; old and new runs take
turns and the best of --repeats is kept. Rates per core are work / process CPU time
(all threads), wall rates beside them. `--curve-steps N` also trains both for N steps
with the same seed and prints their learning curves and the largest difference.
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

ENGINES = ("old", "new")


def _old_act(state, obs, key, step):
    """main's per-step policy call before issue 19: fold_in and the sampler, two compiled calls."""
    import jax

    from agents import droq

    return droq.sample_actions(state, obs, jax.random.fold_in(key, step))


def _train(chunk, work: Path, profile, engine: str, seed: int = 0):
    """train_specialist as main's loop ran it ("old": the dm_control env, the two-call policy
    step) or as this branch does ("new": the lean path, one call); (manifest, cpu s, wall s)."""
    from agents.droq import agent as droq  # what agents.droq.train calls
    from tasks import specialist

    original, act = specialist.make_specialist_env, droq.sample_actions_at
    if engine == "old":
        specialist.make_specialist_env = lambda *a, **k: original(*a, **{**k, "lean": False})
        droq.sample_actions_at = _old_act
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        manifest = specialist.train_specialist(chunk, work, profile, seed=seed)
        return manifest, time.process_time() - cpu, time.perf_counter() - wall
    finally:
        specialist.make_specialist_env, droq.sample_actions_at = original, act


def _profile(name: str, total: int, warmup: int, buffer: int, eval_every: int | None = None):
    from agents import droq
    from tasks.specialist import TrainProfile

    eval_every = eval_every or 10 * total
    return TrainProfile(name, total_steps=total, eval_every=eval_every, checkpoint_every=10 * total,
                        agent=droq.DroQConfig(warmup_steps=warmup, buffer_size=buffer))


def loop_rates(chunk, steps: int, repeats: int, tmp: Path) -> dict:
    """{engine: {phase: (per-core rate, wall rate)}} for collect_only and training.

    Runs of S, 2S and 3S steps with the same agent config (2S warm-up steps): 2S - S is
    S warm-up steps, 3S - 2S is S training steps. One config for all runs: it is a static
    field of the jitted update, and each new one would compile it again inside a run.
    """
    best = {e: {"collect_only": (0.0, 0.0), "training": (0.0, 0.0)} for e in ENGINES}
    for engine in ENGINES:  # untimed: compiles, env templates, first touches
        _train(chunk, tmp / f"warm-{engine}", _profile("warm", 3 * steps, 2 * steps, 3 * steps), engine)
    for rep in range(repeats):
        for engine in ENGINES:
            runs = {}
            for n in (1, 2, 3):
                _, cpu, wall = _train(chunk, tmp / f"{engine}-{n}-{rep}",
                                      _profile(f"r{n}", n * steps, 2 * steps, 3 * steps), engine)
                runs[n] = (cpu, wall)
            for phase, (lo, hi) in (("collect_only", (1, 2)), ("training", (2, 3))):
                rate = tuple(steps / max(runs[hi][i] - runs[lo][i], 1e-9) for i in (0, 1))
                best[engine][phase] = tuple(max(a, b) for a, b in zip(best[engine][phase], rate))
    return best


def act_and_update_rates(repeats: int) -> dict:
    import jax

    from agents import droq
    from agents.common import ReplayBuffer

    rng = np.random.default_rng(0)
    state = droq.init(jax.random.PRNGKey(0), 1144, 39)
    n = 5000
    buffer = ReplayBuffer(1144, 39, n)
    buffer.insert_many(rng.normal(size=(n, 1144)).astype(np.float32), rng.uniform(-1, 1, (n, 39)).astype(np.float32),
                       rng.normal(size=n), np.ones(n), rng.normal(size=(n, 1144)).astype(np.float32))
    key, obs = jax.random.PRNGKey(1), rng.normal(size=1144).astype(np.float32)
    calls = {
        "act_old": (lambda i: np.asarray(droq.sample_actions(state, obs, jax.random.fold_in(key, i))), 300),
        "act_new": (lambda i: np.asarray(droq.sample_actions_at(state, obs, key, i)), 300),
        "update": (lambda i: jax.block_until_ready(droq.update(state, buffer.sample(rng, 256))), 20),
    }
    best = {}
    for name, (fn, count) in calls.items():
        fn(0)
        for _ in range(repeats):
            cpu = time.process_time()
            for i in range(count):
                fn(i)
            best[name] = max(best.get(name, 0.0), count / (time.process_time() - cpu))
    return best


def curves(chunk, total: int, tmp: Path) -> dict:
    profile = _profile("curve", total, min(5000, total // 4), total, eval_every=max(1, total // 4))
    return {engine: _train(chunk, tmp / f"curve-{engine}", profile, engine)[0]["curve"] for engine in ENGINES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--song", default="robopianist:TwinkleTwinkleRousseau")
    parser.add_argument("--steps", type=int, default=300, help="env steps per measured phase")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--curve-steps", type=int, default=0, help="also compare learning curves over N steps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from benchmarks.baseline import plain_robopianist_env
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig

    song = load_song(args.song)
    chunk = replace(make_chunks(song)[0], n_steps=100)  # short episodes: the final eval costs little
    tmp = Path(tempfile.mkdtemp(prefix="train_bench_"))

    env = plain_robopianist_env(chunk, EnvConfig())
    spec = env.action_spec()
    actions = np.random.default_rng(0).uniform(spec.minimum, spec.maximum, size=(args.steps,) + spec.shape)
    plain = (0.0, 0.0)
    for _ in range(args.repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        timestep = env.reset()
        for action in actions:
            if timestep.last():
                timestep = env.reset()
            timestep = env.step(action)
        rate = (len(actions) / (time.process_time() - cpu), len(actions) / (time.perf_counter() - wall))
        plain = tuple(max(a, b) for a, b in zip(plain, rate))

    loop = loop_rates(chunk, args.steps, args.repeats, tmp)
    calls = act_and_update_rates(args.repeats)
    result = {
        "plain_robopianist": {"per_core": plain[0], "wall": plain[1]},
        "loop": {e: {p: {"per_core": r[0], "wall": r[1]} for p, r in phases.items()} for e, phases in loop.items()},
        "calls_per_cpu_s": calls,
    }
    if args.curve_steps:
        result["curves"] = curves(chunk, args.curve_steps, tmp)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{song.ref} chunk 0 cut to {chunk.n_steps} steps; {args.steps} env steps per phase, best of {args.repeats}")
    print(f"{'env steps/s':14s} {'old per core':>12s} {'new per core':>12s} {'new/old':>8s} "
          f"{'old wall':>9s} {'new wall':>9s} {'new/old':>8s}   (per core / plain robopianist: old, new)")
    for phase in ("collect_only", "training"):
        o, n = loop["old"][phase], loop["new"][phase]
        print(f"{phase:14s} {o[0]:12.1f} {n[0]:12.1f} {n[0] / o[0]:8.2f} {o[1]:9.1f} {n[1]:9.1f} {n[1] / o[1]:8.2f}"
              f"   {o[0] / plain[0]:.3f}, {n[0] / plain[0]:.3f}")
    print(f"{'plain':14s} {plain[0]:12.1f} {'':12s} {'':8s} {plain[1]:9.1f}")
    print(f"calls per CPU second: act old {calls['act_old']:.0f}, act new {calls['act_new']:.0f}; "
          f"droq.update {calls['update']:.1f}")
    train_new = loop["new"]["training"][0]
    print(f"CPU-hours for 8M training steps at the new rate: {8e6 / train_new / 3600:.1f} (old "
          f"{8e6 / loop['old']['training'][0] / 3600:.1f})")
    if args.curve_steps:
        old, new = result["curves"]["old"], result["curves"]["new"]
        print(f"\nlearning curves, seed 0 ({args.curve_steps} steps): step, F1 old / new, return old / new")
        for a, b in zip(old, new):
            print(f"  {a['step']:7d}  {a['f1']:.4f} / {b['f1']:.4f}   {a['return']:.4f} / {b['return']:.4f}")
        diff = max(max(abs(a[k] - b[k]) for k in ("precision", "recall", "f1", "return")) for a, b in zip(old, new))
        print(f"  largest difference of any figure: {diff:.3g}")


if __name__ == "__main__":
    main()
