"""Sections of `benchmarks.cost` that price a collection: rollouts, and each specialist kind.

  rollouts  lane-steps/s per core of one rollout group (LANES lanes, a droq
            specialist at RP1M Table 4 sizes, policy calls and step records
            included) on each engine of `tasks.rollouts` ("lean", "env"), against
            raw mj_step replaying the group's own actions (the same physics):
            the overhead of everything but the physics.
  kinds     per kind of `tasks.names.SPECIALIST_KINDS`, on the chunk: the CPU
            seconds of its specialist (training or planning; measured with two
            short budgets and extended to RP1M's 8M steps and 80 evaluations),
            of its rollouts per stored step (1 and 2 groups: their difference is
            one group) and of writing them as a shard; their sum per stored step
            (RP1M: 500 rollouts of the chunk per specialist); its ratios to raw
            mj_step and to plain robopianist stepping measured in the same run;
            and the bill of an RP1M-size collection in CPU-hours beside RP1M's
            43,869 GPU-hours.

Both run at the first --dts value. CPU seconds are process CPU time (every
thread: XLA's too). The chunks per song of the bill come from --catalog when
it holds a built catalog, else from robopianist's songs plus a music21 sample
(--music21-sample files); the report says which.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mujoco
import numpy as np

RP1M_AGENTS = 2089  # RP1M A.3: "21 hours * 2089 agents = 43,869 GPU hours"
RP1M_GPU_HOURS = 43_869
RP1M_ROLLOUTS = 500  # RP1M 4.3: 500 expert trajectories per trained agent


def cpu_of(fn):
    """(result, CPU seconds of this process, wall seconds) of fn()."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def _work(ctx) -> Path:
    if "work" not in ctx.extra:
        ctx.extra["work"] = Path(tempfile.mkdtemp(prefix="cost_"))
    return ctx.extra["work"]


def _profile(total: int, warmup: int, buffer: int):
    from agents.droq import DroQConfig
    from tasks.specialist import TrainProfile

    # RP1M Table 4 sizes; one evaluation (at the end), no checkpoint. The agent config is
    # the same for every run (a static field of the jitted update: another one recompiles).
    return TrainProfile(f"cost-{total}", total_steps=total, eval_every=10**9, checkpoint_every=10**9,
                        agent=DroQConfig(warmup_steps=warmup, buffer_size=buffer))


def _fresh_caches() -> None:
    from envs.control.nominal import clear_nominal_cache

    clear_nominal_cache()


# ----------------------------------------------------------------------------- rollouts


def section_rollouts(ctx) -> list:
    from benchmarks.cost import Row, interleaved
    from envs.piano.config import EnvConfig
    from envs.piano.lean_env import lean_piano
    from envs.piano.lean_rollout import _controls
    from tasks import rollouts
    from tasks.lean_rollouts import run_group_lean
    from tasks.specialist import train_specialist

    dt = ctx.args.dts[0]
    config = EnvConfig(physics_timestep=dt)
    chunk = replace(ctx.chunk, n_steps=min(ctx.args.rollout_steps, ctx.chunk.n_steps))
    work = _work(ctx) / f"rollouts-{dt}"
    manifest = train_specialist(chunk, work / "droq", _profile(1, 1, 1), config)  # an untrained RP1M-size actor
    lanes = rollouts.LANES
    workers = {}
    for engine in rollouts.ENGINES:
        job = rollouts.RolloutJob(chunk, chunk.song_id, str(work / "droq"), manifest["specialist_id"], config, 0,
                                  lanes, f"cost-{engine}", engine)
        workers[engine] = dict(rollouts._worker_setup(job))  # a copy: the module keeps one worker
    seeds = list(range(lanes))

    def run_lean():
        return run_group_lean(workers["lean"]["sim"], workers["lean"]["forward"], seeds, seeds, lanes)

    records = run_lean()
    actions = np.stack([[step["action"] for step in lane] for lane in records])
    lean = lean_piano(chunk, config, 1)
    ctrl = _controls(lean, actions)
    datas = [mujoco.MjData(lean.model) for _ in range(lanes)]

    def replay():  # raw mj_step on the group's own controls, lanes round-robin
        for data in datas:
            mujoco.mj_copyData(data, lean.model, lean._initial)
        for t in range(ctrl.shape[1]):
            for lane, data in enumerate(datas):
                data.ctrl[:] = ctrl[lane, t]
                mujoco.mj_step(lean.model, data, lean.n_substeps)

    units = lanes * chunk.n_steps
    runners = {"mj_step": (replay, units), "rollout group, lean": (run_lean, units),
               "rollout group, env": (lambda: rollouts._run_group_env(workers["env"], seeds), units)}
    best = interleaved(runners, ctx.args.repeats)
    base = best["mj_step"][0]
    return [Row("rollouts", name, dt, cpu, wall, "lane-steps", cpu / base) for name, (cpu, wall) in best.items()]


# ----------------------------------------------------------------------------- kinds


def _specialist_cost(ctx, kind: str, chunk, config, work: Path) -> dict:
    """CPU seconds of a specialist of `kind` on `chunk` at RP1M's budget (see the module docstring)."""
    from agents.droq.train import evaluate
    from tasks.specialist import PROFILES, load_specialist, specialist_env, train_specialist

    warmup, (n1, n2) = ctx.args.warmup, ctx.args.train_steps
    paper = PROFILES["paper"]

    def profile(n):
        return _profile(warmup + n, warmup, warmup + n2)

    _fresh_caches()
    first = train_specialist(chunk, work / "warm", profile(n1), config, kind=kind)  # compiles
    _fresh_caches()
    a, cpu_a, _ = cpu_of(lambda: train_specialist(chunk, work / "a", profile(n1), config, kind=kind))
    out = {"trains": a["steps"] > 0, "run_a_cpu_s": cpu_a}
    if not out["trains"]:  # planning (and one evaluation) is the whole specialist
        out.update(per_step_s=0.0, eval_s=None, paper_s=cpu_a, measured_s=cpu_a, measured_steps=0)
        return out
    _fresh_caches()
    _, cpu_b, _ = cpu_of(lambda: train_specialist(chunk, work / "b", profile(n2), config, kind=kind))
    per_step = (cpu_b - cpu_a) / (n2 - n1)
    state, manifest = load_specialist(work / "a")
    env = specialist_env(manifest, chunk, work_dir=work / "a")
    _, eval_s, _ = cpu_of(lambda: evaluate(env, state))
    n_evals = paper.total_steps // paper.eval_every
    # the run measured holds one evaluation; warm-up steps are priced as training steps (5k of 8M)
    out.update(per_step_s=per_step, eval_s=eval_s, run_b_cpu_s=cpu_b, first_steps=first["steps"],
               measured_s=cpu_b, measured_steps=warmup + n2,  # the small budget, as run (one evaluation)
               paper_s=cpu_a + per_step * (paper.total_steps - (warmup + n1)) + (n_evals - 1) * eval_s)
    return out


def _collection_cost(kind: str, chunk, config, work: Path) -> dict:
    """CPU seconds per stored step of rollouts (one group) and of shard writing, and the rollout setup."""
    from tasks.rlds import write_song_dataset
    from tasks.rollouts import LANES, iter_rollout_episodes, rollout_chunk

    def roll(n, name):
        return cpu_of(lambda: rollout_chunk(chunk, chunk.song_id, work / "a", work / name, n_rollouts=n,
                                            env_config=config))[1]

    one, two = roll(LANES, "r1"), roll(2 * LANES, "r2")
    steps = LANES * chunk.n_steps
    per_step = (two - one) / steps
    episodes = list(iter_rollout_episodes(work / "r2"))
    write_song_dataset(work / "warm-shards", chunk.song_id, episodes[:1])  # untimed: TF / TFDS set-up
    _, shard_s, _ = cpu_of(lambda: write_song_dataset(work / "shards", chunk.song_id, episodes))
    return {"rollout_step_s": per_step, "rollout_setup_s": one - per_step * steps,
            "shard_step_s": shard_s / (len(episodes) * chunk.n_steps)}


def _plain_robopianist_rate(ctx, config) -> float:
    """Control steps per CPU second of robopianist's own env (random actions, no fingering reward)."""
    from benchmarks.baseline import plain_robopianist_env

    env = plain_robopianist_env(ctx.chunk, config)
    spec = env.action_spec()
    actions = np.random.default_rng(0).uniform(spec.minimum, spec.maximum, size=(ctx.args.steps,) + spec.shape)

    def run():
        env.reset()
        for action in actions:
            env.step(action)

    run()
    return max(len(actions) / cpu_of(run)[1] for _ in range(ctx.args.repeats))


def section_kinds(ctx) -> list:
    from benchmarks.cost import Row, interleaved, mj_step_runner
    from envs.piano.config import EnvConfig
    from tasks.names import SPECIALIST_KINDS

    dt = ctx.args.dts[0]
    config = EnvConfig(physics_timestep=dt)
    chunk = ctx.chunk
    kinds = [k for k in SPECIALIST_KINDS if not ctx.args.kinds or k in ctx.args.kinds]
    mj_step = interleaved({"mj_step": mj_step_runner(ctx, dt, ctx.actions(dt, ctx.args.steps))},
                          ctx.args.repeats)["mj_step"][0]
    plain = _plain_robopianist_rate(ctx, config)
    report = {"dt": dt, "chunk_id": chunk.chunk_id, "chunk_steps": chunk.n_steps, "mj_step_per_core": mj_step,
              "plain_robopianist_per_core": plain, "kinds": {}}
    rows = []
    for kind in kinds:
        work = _work(ctx) / f"kind-{kind}"
        try:
            cost = _specialist_cost(ctx, kind, chunk, config, work)
            cost.update(_collection_cost(kind, chunk, config, work))
        except Exception as exc:  # a kind that cannot be priced here is reported, the others go on
            report["kinds"][kind] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        stored = RP1M_ROLLOUTS * chunk.n_steps
        collect = cost["rollout_step_s"] + cost["shard_step_s"]
        for budget in ("measured", "paper"):  # the small budget run here, RP1M's extended from it
            cost[f"{budget}_per_stored_step_s"] = cost[f"{budget}_s"] / stored + collect
            cost[f"{budget}_per_specialist_cpu_h"] = (cost[f"{budget}_s"] + cost["rollout_setup_s"]
                                                      + stored * collect) / 3600
        report["kinds"][kind] = cost
        small = f"{cost['measured_steps']} steps" if cost["trains"] else "planning"
        for budget, label in (("measured", small), ("paper", "RP1M 8M steps")):
            if budget == "paper" and not cost["trains"]:
                continue
            rate = 1.0 / cost[f"{budget}_per_stored_step_s"]
            rows.append(Row("kinds", f"{kind} @ {label}", dt, rate, float("nan"), "stored steps", rate / mj_step))
    report["catalog"] = chunks_per_song(ctx)
    ctx.extra["kinds_report"] = report
    ctx.extra.setdefault("printers", []).append(print_kinds)
    return rows


# ----------------------------------------------------------------------------- the bill


def chunks_per_song(ctx) -> dict:
    """Mean 550-step chunks per playable song: from --catalog if built, else robopianist + a music21 sample."""
    from envs.music.catalog import load_catalog, row_for_song

    catalog = Path(ctx.args.catalog)
    rows = load_catalog(catalog) if list(catalog.glob("*.jsonl")) else []
    if rows:
        playable = [r for r in rows if r.playable]
        return {"source": f"catalog {catalog} ({len(rows)} songs)", "songs": len(playable),
                "mean_chunks": float(np.mean([r.n_chunks for r in playable]))}
    from envs.music.catalog_build import build_catalog
    from envs.music.scores import load_music21_file, music21_corpus_files

    robopianist = [r for r in build_catalog(["robopianist"], _work(ctx) / "catalog", workers=1) if r.playable]
    files = [p for p in music21_corpus_files() if p.stat().st_size < ctx.args.music21_max_bytes]
    sample = files[:: max(1, len(files) // ctx.args.music21_sample)][: ctx.args.music21_sample]
    music21 = []
    for path in sample:
        for _, song in load_music21_file(path):
            if not isinstance(song, Exception):
                row = row_for_song(song)
                if row.playable:
                    music21.append(row)
    pooled = robopianist + music21
    return {"source": (f"robopianist ({len(robopianist)} playable songs) + music21 sample "
                       f"(every {max(1, len(files) // ctx.args.music21_sample)}th of {len(files)} corpus files "
                       f"under {ctx.args.music21_max_bytes // 1000} kB: {len(music21)} playable songs)"),
            "songs": len(pooled), "mean_chunks": float(np.mean([r.n_chunks for r in pooled])),
            "mean_chunks_robopianist": float(np.mean([r.n_chunks for r in robopianist])),
            "mean_chunks_music21": float(np.mean([r.n_chunks for r in music21])) if music21 else None}


def print_kinds(ctx) -> None:
    report = ctx.extra["kinds_report"]
    catalog = report["catalog"]
    songs_chunks = RP1M_AGENTS * catalog["mean_chunks"]
    mj, plain = report["mj_step_per_core"], report["plain_robopianist_per_core"]
    print(f"\nspecialist kinds on {report['chunk_id']} ({report['chunk_steps']} steps), dt {report['dt']}; "
          f"{RP1M_ROLLOUTS} rollouts per specialist (RP1M 4.3); budgets: the small one run here "
          f"(--warmup + the 2nd --train-steps, one evaluation) and RP1M's (8M steps, 80 evaluations, "
          f"extended from the measured CPU-s per training step)")
    print(f"  baselines per core: mj_step {mj:.1f} control steps/s, plain robopianist {plain:.1f}")
    print(f"{'kind':9s} {'budget':>14s} {'specialist CPU-s':>16s} {'train ms/step':>13s} {'rollout ms/st':>13s} "
          f"{'shard ms/st':>11s} {'CPU-s/stored':>12s} {'vs mj_step':>10s} {'vs plain':>9s} "
          f"{'CPU-h/specialist':>16s}")
    rows = []  # (kind, budget label, CPU-h per specialist)
    for kind, c in report["kinds"].items():
        if "error" in c:
            print(f"{kind:9s} not priced: {c['error']}")
            continue
        for budget in ("measured", "paper") if c["trains"] else ("measured",):
            label = f"{c['measured_steps']} steps" if budget == "measured" else "RP1M 8M"
            label = label if c["trains"] else "planning"
            per = c[f"{budget}_per_stored_step_s"]
            print(f"{kind:9s} {label:>14s} {c[f'{budget}_s']:16.0f} {1e3 * c['per_step_s']:13.1f} "
                  f"{1e3 * c['rollout_step_s']:13.2f} {1e3 * c['shard_step_s']:11.3f} {per:12.4f} "
                  f"{1 / per / mj:10.4f} {1 / per / plain:9.4f} {c[f'{budget}_per_specialist_cpu_h']:16.2f}")
            rows.append((kind, label, c[f"{budget}_per_specialist_cpu_h"]))
    print(f"\nbill of an RP1M-size collection (CPU-hours; RP1M: {RP1M_GPU_HOURS:,} GPU-hours for {RP1M_AGENTS} "
          f"agents of 21 h each, A.3)")
    print(f"  chunks per song: {catalog['mean_chunks']:.2f} from {catalog['source']}")
    print(f"{'kind':9s} {'budget':>14s} {RP1M_AGENTS} specialists (RP1M's count)  {RP1M_AGENTS} songs x "
          f"{catalog['mean_chunks']:.2f} chunks = {songs_chunks:.0f} specialists")
    for kind, label, hours in rows:
        print(f"{kind:9s} {label:>14s} {RP1M_AGENTS * hours:>15,.0f} CPU-h {'':12s} {songs_chunks * hours:>14,.0f} CPU-h"
              f"   ({songs_chunks * hours / RP1M_GPU_HOURS:.3g}x RP1M's GPU-h)")
