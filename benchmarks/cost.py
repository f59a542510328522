"""Simulation cost per core: raw MuJoCo, the dm_control env, the lean path.

Sections (all, or those named by --sections), each at every --dts timestep:

  physics    control steps/s per core of
               mj_step      raw `mujoco.mj_step(model, data, nstep=substeps)` on the
                            env's compiled model: the physics limit, the baseline
               mj_step_N    the same on --lanes MjData stepped round-robin (what
                            many lanes cost the physics itself: caches)
               env          `envs.piano.env.make_env` (robopianist / dm_control)
               lean_1       `envs.piano.lean.LeanPiano`, one lane, observation + reward
               lean_N       the same with --lanes lanes (rate per lane-step)
  open_loop  lane-steps/s per core of `envs.piano.lean_rollout.open_loop`, --lanes
             lanes from the episode start, drivers step / rollout / batch
             (--threads threads for the last two); its baseline mj_step is
             mj_step_N of the physics section
  rollouts   one rollout group per engine of `tasks.rollouts`, against mj_step
             replaying its actions (`benchmarks.cost_kinds`)
  kinds      CPU-seconds per stored step of each specialist kind and the bill of
             an RP1M-size collection (`benchmarks.cost_kinds`; about 15 minutes
             on a free 2-core machine at the default 550-step chunk)

Every lane of every variant plays the same seeded random actions, so that all
do the baseline's physics and the ratios (per core, against the section's
mj_step) show overhead only. "Per core" is work / process CPU time (all
threads of this process), which a busy machine disturbs less than wall time
(wall rates are in --json); pin for the cleanest numbers: `taskset -c 0
python -m benchmarks.cost`. Variants take turns, repeats keep the best.
A new section is a function `(Context) -> list[Row]` added to `SECTIONS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import mujoco
import numpy as np


@dataclass
class Row:
    section: str
    name: str
    dt: float
    per_core: float  # units / CPU second
    wall: float  # units / wall second
    unit: str = "control steps"
    ratio: float | None = None  # per_core / mj_step per_core at the same dt


@dataclass
class Context:
    args: argparse.Namespace
    chunk: object
    envs: dict = field(default_factory=dict)  # dt -> make_env env
    extra: dict = field(default_factory=dict)  # what sections keep: work folder, reports, "printers"

    def config(self, dt: float):
        from envs.piano.config import EnvConfig
        return EnvConfig(physics_timestep=dt)

    def env(self, dt: float):
        from envs.piano.env import make_env
        if dt not in self.envs:
            self.envs[dt] = make_env(self.chunk, self.config(dt), seed=0)
        return self.envs[dt]

    def actions(self, dt: float, n: int, seed: int = 0) -> np.ndarray:
        spec = self.env(dt).action_spec()
        return np.random.default_rng(seed).uniform(spec.minimum, spec.maximum, size=(n,) + spec.shape)


def interleaved(runners: dict, repeats: int) -> dict:
    """Best per-core (work / CPU s) and wall rate of each runner, `name -> (fn, units)`.
    After one untimed run each, the runners take turns, so that load changes on a
    shared machine hit them alike."""
    best = {name: (0.0, 0.0) for name in runners}
    for fn, _ in runners.values():
        fn()  # untimed: first touches of fresh MjData memory, caches
    for _ in range(repeats):
        for name, (fn, units) in runners.items():
            cpu, wall = time.process_time(), time.perf_counter()
            fn()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            best[name] = (max(best[name][0], units / max(cpu, 1e-9)), max(best[name][1], units / wall))
    return best


def mj_step_runner(ctx: Context, dt: float, actions: np.ndarray, lanes: int = 1):
    """Raw mj_step(nstep=substeps) from the env's reset state, `lanes` MjData stepped
    round-robin (as the lean path steps its lanes), each playing `actions`."""
    env = ctx.env(dt)
    env.reset()
    model = env.physics.model.ptr
    start = mujoco.MjData(model)
    mujoco.mj_copyData(start, model, env.physics.data.ptr)
    datas = [mujoco.MjData(model) for _ in range(lanes)]
    substeps = int(round(0.05 / dt))

    def run():
        for data in datas:
            mujoco.mj_copyData(data, model, start)
        for action in actions:
            for data in datas:
                data.ctrl[:] = action[:-1]
                mujoco.mj_step(model, data, substeps)

    return run, len(actions) * lanes


def rows_of(section: str, dt: float, best: dict, unit: str = "control steps") -> list[Row]:
    base = best["mj_step"][0]
    return [Row(section, name, dt, cpu, wall, unit, cpu / base) for name, (cpu, wall) in best.items()]


def section_physics(ctx: Context) -> list[Row]:
    from envs.piano.lean import LeanPiano

    n, lanes = ctx.args.steps, ctx.args.lanes
    rows = []
    for dt in ctx.args.dts:
        env = ctx.env(dt)
        actions = ctx.actions(dt, n)  # every variant, every lane plays these
        lean_1 = LeanPiano(ctx.chunk, ctx.config(dt), 1, env=env)
        lean_n = LeanPiano(ctx.chunk, ctx.config(dt), lanes, env=env)
        batch = np.repeat(actions[:, None], lanes, axis=1)

        def run_env():
            env.reset()
            for action in actions:
                env.step(action)

        def run_lean_1():
            lean_1.reset()
            for action in actions:
                lean_1.step(action[None])

        def run_lean_n():
            lean_n.reset()
            for step_actions in batch:
                lean_n.step(step_actions)

        runners = {"mj_step": mj_step_runner(ctx, dt, actions),
                   f"mj_step_{lanes}": mj_step_runner(ctx, dt, actions, lanes),
                   "env": (run_env, n), "lean_1": (run_lean_1, n), f"lean_{lanes}": (run_lean_n, n * lanes)}
        rows += rows_of("physics", dt, interleaved(runners, ctx.args.repeats))
    return rows


def section_open_loop(ctx: Context) -> list[Row]:
    from envs.piano.lean import LeanPiano
    from envs.piano.lean_rollout import METHODS, open_loop

    lanes, threads = ctx.args.lanes, ctx.args.threads
    rows = []
    for dt in ctx.args.dts:
        lean = LeanPiano(ctx.chunk, ctx.config(dt), 1, env=ctx.env(dt))
        one = ctx.actions(dt, min(ctx.args.steps, ctx.chunk.n_steps))
        actions = np.repeat(one[None], lanes, axis=0)  # the baseline's actions in each lane
        runners = {"mj_step": mj_step_runner(ctx, dt, one, lanes)}
        for method in METHODS:
            label = method if method == "step" or threads == 1 else f"{method} x{threads} threads"
            runners[label] = (lambda m=method: open_loop(lean, actions, method=m, nthread=threads),
                              actions.shape[0] * actions.shape[1])
        rows += rows_of("open_loop", dt, interleaved(runners, ctx.args.repeats), unit="lane-steps")
    return rows


from benchmarks.cost_kinds import section_kinds, section_rollouts  # noqa: E402 (they use the helpers above)

SECTIONS = {"physics": section_physics, "open_loop": section_open_loop, "rollouts": section_rollouts,
            "kinds": section_kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--song", default="robopianist:NocturneRousseau", help="its first chunk is used")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {list(SECTIONS)}")
    parser.add_argument("--dts", default="0.002,0.005", help="physics timesteps, comma-separated")
    parser.add_argument("--steps", type=int, default=200, help="control steps per measurement")
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="threads of the rollout / batch drivers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-steps", type=int, default=None, help="cut the chunk to this many steps (quick runs)")
    parser.add_argument("--rollout-steps", type=int, default=200, help="rollouts section: episode length")
    parser.add_argument("--kinds", default="", help="kinds section: these kinds only (comma-separated)")
    parser.add_argument("--warmup", type=int, default=100, help="kinds section: warm-up steps of the short budgets")
    parser.add_argument("--train-steps", default="100,300",
                        help="kinds section: training steps after the warm-up of the two short budgets")
    parser.add_argument("--catalog", default="datasets/catalog", help="kinds section: a built catalog, if any")
    parser.add_argument("--music21-sample", type=int, default=40, help="music21 files sampled without a catalog")
    parser.add_argument("--music21-max-bytes", type=int, default=60_000, help="...of at most this size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.dts = [float(x) for x in args.dts.split(",")]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.train_steps = tuple(int(x) for x in args.train_steps.split(","))
    if len(args.train_steps) != 2 or not 0 < args.train_steps[0] < args.train_steps[1]:
        parser.error(f"--train-steps wants two increasing counts, got {args.train_steps}")
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")

    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song

    chunk = make_chunks(load_song(args.song))[0]
    if args.chunk_steps:
        from dataclasses import replace

        chunk = replace(chunk, n_steps=min(args.chunk_steps, chunk.n_steps))
    ctx = Context(args, chunk)
    rows = [row for name in names for row in SECTIONS[name](ctx)]
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if args.json:
        print(json.dumps({"song": args.song, "chunk_steps": chunk.n_steps, "cpus": affinity,
                          "rows": [asdict(r) for r in rows], "kinds": ctx.extra.get("kinds_report")}))
        return
    print(f"song {args.song} chunk 0 ({chunk.n_steps} steps), {args.steps} control steps per measurement, "
          f"best of {args.repeats}; CPUs {affinity}")
    print(f"{'section':10s} {'dt':>6s} {'what':24s} {'per core /s':>12s} {'wall /s':>10s} {'vs mj_step':>10s}  unit")
    for r in rows:
        print(f"{r.section:10s} {r.dt:6.3f} {r.name:24s} {r.per_core:12.1f} {r.wall:10.1f} {r.ratio:10.3f}  {r.unit}")
    for printer in ctx.extra.get("printers", []):
        printer(ctx)


if __name__ == "__main__":
    main()
