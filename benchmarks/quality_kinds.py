"""Specialist kinds of the quality benchmark, and the evaluation of one (kind, chunk).

A kind is a `fit(job) -> Fitted` function registered under a name
(`register_kind`). `pipeline_fit(name, ...)` makes one for any kind the
project's pipeline knows (`tasks.specialist.KINDS`: trained or planned by
`train_specialist`, rolled out by `tasks.rollouts`); a new pipeline kind plugs
in at the registration block below with one call, e.g. a kind whose
noise-free play is its stored trajectory (`nominal.npz`, zero residual)::

    register_kind("mpc", pipeline_fit("mpc", noise_free="nominal",
                                      train_kwargs=lambda job: {"mpc_config": None}))

`noise_free` is ``"nominal"`` (the specialist folder's `nominal.npz` actions and
`manifest["final"]` metrics) or ``"policy"`` (the trained DroQ policy's mode,
played in the specialist's env); `nominal_plans` adds the IK nominal's
planned-press flags; `train_kwargs(job)` gives extra `train_specialist`
keywords. A kind outside the pipeline returns its stored episodes in
`Fitted.episodes` instead of a specialist folder.

`evaluate(job)` fits (or reuses) the specialist, rolls it out `n_rollouts`
times with the real rollout code (seeds 0..n-1, the episodes as they are
stored), replays every stored episode's actions and the noise-free policy's
actions in the simulator to classify the missed notes (`envs.piano.failure`), and
returns a JSON-ready result plus the noise-free trace's arrays.
CPU-seconds are process CPU time (`time.process_time`, all threads):
`fit_cpu_s` is planning + training (for ``ik``: the nominal search and one
evaluation episode), rollouts and analysis are counted apart.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

QUALITY_VERSION = "quality-4"  # bump when a change alters results
NOISE_FREE_SOURCES = ("nominal", "policy")  # where a pipeline kind's noise-free actions come from
PLAN_NAMES = ("assigned", "scheduled", "commanded", "ik")  # planned-press masks of nominal-based kinds (envs.piano.failure flags)


@dataclass
class KindJob:
    kind: str
    chunk: object  # envs.music.chunks.Chunk
    work_dir: Path  # this (kind, chunk)'s folder
    env_config: object  # envs.piano.config.EnvConfig
    profile: object | None  # tasks.specialist.TrainProfile of trained kinds
    n_rollouts: int
    seed: int = 0


@dataclass
class Fitted:
    fit_cpu_s: float
    noise_free_actions: np.ndarray  # (T, 39): what the piano receives from the noise-free policy
    noise_free_metrics: dict  # P/R/F1 of the kind's own noise-free evaluation
    specialist_dir: Path | None = None  # a finished tasks.specialist folder, rolled out by tasks.rollouts
    episodes: list | None = None  # or the stored episodes: [{seed, actions (T, 39), pressed (T, 88), f1, ...}]
    plans: dict = field(default_factory=dict)  # name -> (T, 88) bool planned presses (envs.piano.failure flags)
    extra: dict = field(default_factory=dict)
    reused: bool = False


KINDS: dict[str, Callable[[KindJob], Fitted]] = {}


def register_kind(name: str, fit: Callable[[KindJob], Fitted]) -> None:
    """Make `name` available to `--kind`."""
    KINDS[name] = fit


def pipeline_fit(kind: str, *, noise_free: str = "policy", nominal_plans: bool = True,
                 train_kwargs: Callable[[KindJob], dict] | None = None) -> Callable[[KindJob], Fitted]:
    """The fit function of a `tasks.specialist` kind (train_specialist, then rolled out by tasks.rollouts).

    noise_free: "nominal" (the folder's nominal.npz actions, manifest["final"] P/R/F1) or "policy"
    (the DroQ policy's mode in the specialist's env); nominal_plans: classify against the IK nominal's
    planned presses; train_kwargs(job): extra keywords of `train_specialist` (e.g. a kind's config)."""
    if noise_free not in NOISE_FREE_SOURCES:
        raise ValueError(f"pipeline_fit({kind!r}): noise_free={noise_free!r}, expected one of {NOISE_FREE_SOURCES}")

    def fit(job: KindJob) -> Fitted:
        from envs.control.nominal import clear_nominal_cache
        from tasks.specialist import read_manifest, train_specialist

        spec_dir = job.work_dir / "specialist"
        cpu_file = job.work_dir / "fit_cpu.json"
        clear_nominal_cache()  # each kind pays for its own nominal plan
        before = read_manifest(spec_dir)
        started = time.process_time()
        manifest = train_specialist(job.chunk, spec_dir, job.profile or "smoke", job.env_config, seed=job.seed,
                                    kind=kind, **(train_kwargs(job) if train_kwargs else {}))
        cpu = time.process_time() - started
        reused = before is not None and before.get("run_key") == manifest["run_key"]
        if reused and cpu_file.exists():
            cpu = json.loads(cpu_file.read_text())["fit_cpu_s"]
        elif not reused:
            _write_json(cpu_file, {"run_key": manifest["run_key"], "fit_cpu_s": cpu})
        if noise_free == "nominal":
            from tasks.names import NOMINAL_FILE

            with np.load(spec_dir / NOMINAL_FILE) as data:
                actions = np.array(data["actions"])
            metrics = {k: manifest["final"][k] for k in ("precision", "recall", "f1")}
        else:
            actions, metrics = _deterministic_run(spec_dir, job.chunk)
        plans, extra = {}, {"specialist_id": manifest["specialist_id"], "steps_trained": manifest["steps"]}
        if nominal_plans:
            plans, extra["nominal_search"] = _nominal_plans(job, spec_dir, manifest)
        extra["specialist_manifest_final"] = manifest.get("final")
        return Fitted(fit_cpu_s=round(cpu, 2), noise_free_actions=actions, noise_free_metrics=metrics,
                      specialist_dir=spec_dir, plans=plans, extra=extra, reused=reused)

    return fit


def _deterministic_run(spec_dir: Path, chunk) -> tuple[np.ndarray, dict]:
    """Actions the piano receives from a trained specialist's deterministic policy, and its P/R/F1."""
    from agents import droq
    from agents.common import to_env_action
    from envs.piano.metrics import key_press_metrics
    from envs.control.residual import flat_observation_fn
    from tasks.specialist import load_specialist, specialist_env

    state, manifest = load_specialist(spec_dir)
    env = specialist_env(manifest, chunk, work_dir=spec_dir)
    try:
        featurize, spec = flat_observation_fn(env), env.action_spec()
        timestep, actions, goal, pressed = env.reset(), [], [], []
        while not timestep.last():
            action = to_env_action(np.asarray(droq.eval_actions(state, featurize(timestep.observation))),
                                   spec.minimum, spec.maximum)
            timestep = env.step(action)
            info = env.step_info()
            actions.append(np.asarray(info.get("applied_action", action), dtype=np.float64))
            goal.append(info["goal_keys"])
            pressed.append(info["pressed_keys"])
    finally:
        env.close()
    return np.array(actions), key_press_metrics(np.array(goal), np.array(pressed)).as_dict()


def _nominal_plans(job: KindJob, spec_dir: Path, manifest: dict) -> tuple[dict, list]:
    """Planned presses of the nominal controller: assigned a finger (goal timing), scheduled
    (`envs.control.nominal.schedule_presses`), commanded down (targets given to the IK: a scheduled
    press stays at hover until the IK has the finger over its key) and put down by the IK
    solution; and the nominal search's candidates. Cached in the work folder (`plans.npz`, by the specialist's run key): a rerun
    does not plan again."""
    cache = job.work_dir / "plans.npz"
    if cache.exists():
        with np.load(cache) as data:
            if str(data["run_key"]) == manifest["run_key"] and all(k in data.files for k in PLAN_NAMES):
                return {k: data[k] for k in PLAN_NAMES}, json.loads(str(data["search"]))
    plans, search = _solve_nominal_plans(job, manifest)
    tmp = cache.with_name(f".plans.tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, run_key=np.array(manifest["run_key"]), search=np.array(json.dumps(search)), **plans)
    os.replace(tmp, cache)
    return plans, search


def _solve_nominal_plans(job: KindJob, manifest: dict) -> tuple[dict, list]:
    from envs.piano.failure import planned_presses
    from envs.piano.trace import KeyLayout
    from envs.piano.env import make_env
    from envs.control.nominal import nominal_trajectory
    from tasks.specialist import ResidualSpecialistConfig

    config = ResidualSpecialistConfig.from_dict(manifest.get("residual_config")).task.nominal
    trajectory = nominal_trajectory(job.chunk, job.env_config, config)  # in memory after a fresh fit
    env = make_env(job.chunk, job.env_config, seed=0)
    try:
        env.reset()
        layout = KeyLayout.from_env(env)
    finally:
        env.close()
    assigned = np.zeros((len(trajectory.plan.key), 88), dtype=bool)
    steps, fingers = np.nonzero(trajectory.plan.key >= 0)
    assigned[steps, trajectory.plan.key[steps, fingers]] = True
    scheduled = np.zeros_like(assigned)
    steps, fingers = np.nonzero(trajectory.command >= 0)
    scheduled[steps, trajectory.command[steps, fingers]] = True
    plans = {"assigned": assigned, "scheduled": scheduled,
             "commanded": planned_presses(trajectory.command_targets, layout),
             "ik": planned_presses(trajectory.ik_fingertips, layout)}
    return plans, [[o, None if f is None else round(f, 4)] for o, f in trajectory.search]


# The registration point: one line per kind (see the module docstring).
register_kind("ik", pipeline_fit("ik", noise_free="nominal"))
register_kind("residual", pipeline_fit("residual"))
register_kind("droq", pipeline_fit("droq", nominal_plans=False))
# Predictive sampling around the IK nominal (tasks.specialist_mpc); its default MPCSpecialistConfig.
register_kind("mpc", pipeline_fit("mpc", noise_free="nominal", train_kwargs=lambda job: {"mpc_config": None}))


# ----------------------------------------------------------------------------------


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def _stored_episodes(job: KindJob, fitted: Fitted) -> tuple[list[dict], float | None]:
    """The stored episodes (seed, actions, pressed, P/R/F1) and the CPU-seconds of the rollouts
    (as measured when they were made; None when reused rollouts carry no measurement)."""
    if fitted.episodes is not None:
        return fitted.episodes, 0.0
    from tasks.rollouts import iter_rollout_episodes, rollout_chunk

    out_dir = job.work_dir / "rollouts"
    cpu_file = job.work_dir / "rollout_cpu.json"
    existed = (out_dir / "rollouts.json").exists()
    started = time.process_time()
    rollout_chunk(job.chunk, job.chunk.song_id, fitted.specialist_dir, out_dir, n_rollouts=job.n_rollouts,
                  workers=1, base_seed=job.seed, env_config=job.env_config)
    cpu = time.process_time() - started
    if not existed:
        _write_json(cpu_file, {"n_rollouts": job.n_rollouts, "rollout_cpu_s": cpu})
    elif cpu_file.exists() and json.loads(cpu_file.read_text())["n_rollouts"] == job.n_rollouts:
        cpu = json.loads(cpu_file.read_text())["rollout_cpu_s"]
    else:
        cpu = None
    episodes = []
    for episode in iter_rollout_episodes(out_dir):
        md = episode.metadata
        episodes.append({"seed": md["rollout_seed"], "actions": np.asarray(episode.steps["action"]),
                         "pressed": np.asarray(episode.steps["pressed_keys"], dtype=bool),
                         **{k: md[k] for k in ("precision", "recall", "f1")}})
    return episodes, cpu


def evaluate(job: KindJob) -> tuple[dict, dict]:
    """Fit, roll out, replay and classify one (kind, chunk); (result, noise-free trace arrays)."""
    from envs.piano.failure import classify_missed_notes, sum_reports
    from envs.piano.trace import replay_actions
    from envs.piano.metrics import key_press_metrics

    if job.kind not in KINDS:
        raise ValueError(f"unknown kind {job.kind!r}: registered kinds are {sorted(KINDS)}")
    wall = time.perf_counter()
    fitted = KINDS[job.kind](job)
    episodes, rollout_cpu = _stored_episodes(job, fitted)
    started = time.process_time()
    dt = job.chunk.control_timestep
    stored_reports, per_seed = [], []
    for ep in episodes:
        trace = replay_actions(job.chunk, job.env_config, ep["actions"])
        report = classify_missed_notes(trace, dt, plans=fitted.plans)
        stored_reports.append(report)
        per_seed.append({"seed": int(ep["seed"]), **{k: round(float(ep[k]), 4) for k in ("precision", "recall", "f1")},
                         "replay_f1": round(key_press_metrics(trace.goal, trace.pressed).f1, 4),
                         "replay_pressed_agreement": round(float(np.mean(trace.pressed == ep["pressed"])), 5),
                         "missed": report.n_missed})
    trace = replay_actions(job.chunk, job.env_config, fitted.noise_free_actions)
    noise_free_report = classify_missed_notes(trace, dt, plans=fitted.plans)
    replayed = key_press_metrics(trace.goal, trace.pressed).as_dict()
    analysis_cpu = time.process_time() - started
    f1s = np.array([e["f1"] for e in per_seed])

    def mean(name: str) -> float:
        return round(float(np.mean([e[name] for e in per_seed])), 4)

    result = {
        "kind": job.kind,
        "steps": int(job.chunk.n_steps),
        "physics_timestep": job.env_config.physics_timestep,
        "stored": {"n": len(per_seed), "precision": mean("precision"), "recall": mean("recall"), "f1": mean("f1"),
                   "f1_sd": round(float(f1s.std()), 4), "per_seed": per_seed},
        "noise_free": {**{k: round(v, 4) for k, v in replayed.items()},
                       "kind_reported_f1": round(float(fitted.noise_free_metrics["f1"]), 4)},
        "cpu_s": {"fit": fitted.fit_cpu_s, "rollouts": None if rollout_cpu is None else round(rollout_cpu, 2), "analysis": round(analysis_cpu, 2)},
        "fit_reused": fitted.reused,
        "failures": {"noise_free": noise_free_report.as_dict(), "stored": sum_reports(stored_reports)},
        "extra": fitted.extra,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    arrays = {name: getattr(trace, name) for name in ("actions", "goal", "pressed", "key_qpos", "fingertips",
                                                      "hand_hand", "edge_contact", "key_touch", "n_contacts",
                                                      "hand_hand_parts")}
    return result, arrays
