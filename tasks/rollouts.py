"""N rollouts of a trained specialist (RP1M section 4.3: 500 per specialist)
(over 400 lines: the worker pool, per-episode resume and the atomic shard hand-off are one protocol).

Seeds: rollout i of a chunk uses seed `base_seed + i`. The seed drives the
policy's action noise (a `np.random.Generator(seed)` draws the Gaussian noise
of the tanh-Gaussian policy at every step) and seeds the env's own random state
(the default task has no randomisation: every episode starts from the same
pose, so trajectories differ through the stochastic policy only).

Parallelism: rollouts are grouped in fixed lanes of `LANES`; one worker
process steps the lanes of a group in lockstep and runs one batched policy
forward pass per step for the whole group. Engine "lean" (the default, for the
kinds of `tasks.lean_rollouts.LEAN_KINDS`): the lanes are one raw-MuJoCo
`LeanPiano`; engine "env": one dm_control env per lane (the reference the lean
path is tested equal to, and the path of any other kind). Groups are spread over `workers`
processes: `workers - 1` spawned children and the calling process itself (warm
already, so only the children pay the start-up). Because a group's batch composition and every rollout's noise
stream are fixed, the episodes (and their order) are identical whatever the
number of workers.

Output (resumable): `<out_dir>/group-00000.npz` ... one file per group,
written atomically, then `<out_dir>/rollouts.json` (counts, seeds, per-episode
P/R/F1) last. A rerun keeps the groups already written with the same key.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from envs import atomic
from envs.piano.config import EnvConfig
from envs.piano.metrics import key_press_metrics
from envs.piano.spec import OBSERVATION_KEYS
from tasks.names import ROLLOUTS_MANIFEST as MANIFEST
from tasks.stop import STOP, check_stop

log = logging.getLogger(__name__)

LANES = 8  # rollouts per batched policy call; fixed so results don't depend on the worker count
ROLLOUT_VERSION = "rollouts-1"
ENGINES = ("lean", "env")


@dataclass(frozen=True)
class RolloutJob:
    chunk: object  # envs.music.chunks.Chunk (picklable)
    song_id: str
    specialist_dir: str
    specialist_id: str
    env_config: EnvConfig
    base_seed: int
    n_rollouts: int
    key: str
    engine: str = "lean"  # "lean" or "env": same episodes (tested), the lean one is cheaper


def rollout_key(specialist_id: str, n_rollouts: int, base_seed: int, env_config: EnvConfig) -> str:
    blob = f"{specialist_id}|{n_rollouts}|{base_seed}|{env_config.digest()}|{ROLLOUT_VERSION}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --- worker side -----------------------------------------------------------------------

_WORKER: dict = {}


def _policy(specialist_dir: str):
    """(forward(obs_batch) -> (mean, log_std)) of a trained specialist, jitted, and its manifest.

    The ik and mpc specialists have no network: their mean residual is zero and
    their log-std the fixed `IK_ROLLOUT_NOISE` (ik) or their config's `rollout_noise` (mpc).
    """
    import jax

    from tasks.specialist import IK_ROLLOUT_NOISE, load_specialist

    state, manifest = load_specialist(Path(specialist_dir))
    if state is None:
        action_dim = manifest["action_dim"]
        log_std = np.log(IK_ROLLOUT_NOISE)
        if manifest.get("kind") == "mpc":  # closed loop: the rollout noise is in the nominal (`_worker_setup`)
            mpc = manifest["mpc_config"]
            log_std = -np.inf if mpc["rollout_mode"] == "closed_loop" else np.log(mpc["rollout_noise"])

        def forward(obs):
            n = len(obs)
            return np.zeros((n, action_dim)), np.full((n, action_dim), log_std)

        return forward, manifest
    apply_fn, params = state.actor.apply_fn, state.actor.params
    forward = jax.jit(lambda obs: apply_fn({"params": params}, obs))
    return forward, manifest


def _worker_setup(job: RolloutJob) -> dict:
    if _WORKER.get("key") != (job.key, job.engine):
        from envs.control.residual import flat_observation_fn, observation_dim
        from tasks.lean_rollouts import LEAN_KINDS, make_group_sim
        from tasks.specialist import make_specialist_env

        _WORKER.clear()
        forward, manifest = _policy(job.specialist_dir)
        kind = manifest.get("kind", "droq")
        residual = None
        if kind != "droq":
            from tasks.specialist import ResidualSpecialistConfig

            residual = ResidualSpecialistConfig.from_dict(manifest.get("residual_config"))
        _WORKER.update(key=(job.key, job.engine), forward=forward, nominal_for_seed=None)
        if job.engine == "lean" and kind in LEAN_KINDS:
            _WORKER["sim"] = make_group_sim(job, kind, residual, LANES)
        else:  # each env seeds its own rollout: fewer lanes, same episodes
            envs = [make_specialist_env(job.chunk, kind, job.env_config, residual, work_dir=Path(job.specialist_dir),
                                        lean=False) for _ in range(min(LANES, job.n_rollouts))]
            _WORKER.update(envs=envs, featurize=flat_observation_fn(envs[0]), obs_dim=observation_dim(envs[0]))
            if kind == "mpc":
                from tasks.specialist_mpc import closed_loop_nominals

                _WORKER["nominal_for_seed"] = closed_loop_nominals(job.chunk, job.env_config, manifest,
                                                                    Path(job.specialist_dir))
    return _WORKER


def _run_group(job: RolloutJob, group: int) -> list[dict]:
    """Roll out rollouts [group * LANES, ...) in lockstep; returns storage-ready episodes."""
    worker = _worker_setup(job)
    indices = list(range(group * LANES, min((group + 1) * LANES, job.n_rollouts)))
    seeds = [job.base_seed + i for i in indices]
    if "sim" in worker:
        from tasks.lean_rollouts import run_group_lean

        records = run_group_lean(worker["sim"], worker["forward"], indices, seeds, LANES)
    else:
        records = _run_group_env(worker, seeds)
    episodes = []
    for index, seed, steps in zip(indices, seeds, records):
        metrics = key_press_metrics(np.array([s.pop("_goal") for s in steps]),
                                    np.array([s["pressed_keys"] for s in steps]))
        episodes.append({"index": index, "seed": seed, "steps": steps, "metrics": metrics.as_dict()})
    return episodes


def _run_group_env(worker: dict, seeds: list[int]) -> list[list[dict]]:
    """The env path of `_run_group`: one dm_control env per lane; per lane, its step records."""
    from agents.common import to_env_action

    envs, forward, featurize = worker["envs"], worker["forward"], worker["featurize"]
    active = envs[: len(seeds)]
    noise_rngs = [np.random.default_rng(seed) for seed in seeds]
    for env, seed in zip(active, seeds):
        env.random_state_seed(seed)
        if worker["nominal_for_seed"] is not None:  # the mpc kind's closed-loop rollouts
            env.set_nominal(worker["nominal_for_seed"](seed))
    timesteps = [env.reset() for env in active]
    spec = active[0].action_spec()
    n_steps = active[0].episode_steps
    records = [{"steps": []} for _ in active]
    obs_batch = np.zeros((LANES, worker["obs_dim"]), np.float32)
    for t in range(n_steps):
        for lane, ts in enumerate(timesteps):
            obs_batch[lane] = featurize(ts.observation)
        mean, log_std = (np.asarray(x, np.float64) for x in forward(obs_batch))
        for lane, env in enumerate(active):
            noise = noise_rngs[lane].standard_normal(mean.shape[1])
            action = np.tanh(mean[lane] + np.exp(log_std[lane]) * noise)
            env_action = to_env_action(action, spec.minimum, spec.maximum)
            obs = timesteps[lane].observation
            ts = env.step(env_action)
            info = env.step_info()
            terms = info["reward_terms"]
            records[lane]["steps"].append({
                "observation": {k: obs[k] for k in OBSERVATION_KEYS},
                # What the piano received (a residual specialist's nominal + residual).
                "action": info.get("applied_action", env_action),
                "reward": ts.reward,
                "discount": ts.discount,
                "is_first": t == 0,
                "is_last": t == n_steps - 1,
                "is_terminal": False,  # episodes end on the chunk's time limit
                "ot_key_for_finger": info["ot_key_for_finger"],
                "pressed_keys": info["pressed_keys"],
                "sustain_pressed": info["sustain_pressed"],
                # The fingering term of the configured mode (OT, or human labels;
                # episode metadata `fingering_mode`) and the residual's mimic term.
                "reward_fingering": terms.get("ot", terms.get("fingering", 0.0)),
                "reward_mimic": terms.get("mimic", 0.0),
                "reward_press": terms["press"],
                "reward_sustain": terms["sustain"],
                "reward_collision": terms["collision"],
                "reward_energy": terms["energy"],
                "_goal": info["goal_keys"],
            })
            timesteps[lane] = ts
    return [record["steps"] for record in records]


def _run_and_save_group(args: tuple[RolloutJob, int, str]) -> int:
    """Worker entry: roll out one group and write its file (compression runs in the worker too)."""
    job, group, out_dir = args
    start = time.perf_counter()
    _save_group(_group_path(Path(out_dir), group), job, _run_group(job, group))
    log.debug("group %d took %.1f s in process %d", group, time.perf_counter() - start, os.getpid())
    return group


# --- parent side -----------------------------------------------------------------------


def _group_path(out_dir: Path, group: int) -> Path:
    return out_dir / f"group-{group:05d}.npz"


def _save_group(path: Path, job: RolloutJob, episodes: list[dict]) -> None:
    from tasks.rlds import Episode

    arrays: dict[str, np.ndarray] = {"key": np.array(job.key)}
    for ep in episodes:
        episode = Episode.from_steps(ep["steps"], _episode_metadata(job, ep))
        prefix = f"ep{ep['index']:06d}"
        for name, value in _flatten(episode.steps):
            arrays[f"{prefix}/{name}"] = value
        arrays[f"{prefix}/_metadata"] = np.array(json.dumps(episode.metadata))
    atomic.write_with(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def _flatten(tree: dict, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _episode_metadata(job: RolloutJob, ep: dict) -> dict:
    return {
        "song_id": job.song_id,
        "chunk_id": job.chunk.chunk_id,
        "chunk_index": job.chunk.index,
        "rollout_seed": ep["seed"],
        "specialist_id": job.specialist_id,
        "fingering_mode": job.env_config.reward.fingering,
        **ep["metrics"],
        "n_steps": len(ep["steps"]),
    }


def load_group(path: Path) -> list:
    """Episodes (tasks.rlds.Episode) stored in one group file, in rollout order."""
    from tasks.rlds import Episode

    with np.load(path) as data:
        prefixes = sorted({name.split("/")[0] for name in data.files if name.startswith("ep")})
        episodes = []
        for prefix in prefixes:
            steps: dict = {}
            for name in data.files:
                if not name.startswith(prefix + "/") or name.endswith("/_metadata"):
                    continue
                parts = name[len(prefix) + 1:].split(".")
                node = steps
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                node[parts[-1]] = data[name]
            episodes.append(Episode(steps=steps, metadata=json.loads(str(data[f"{prefix}/_metadata"]))))
    return episodes


def _group_key(path: Path) -> str | None:
    try:
        with np.load(path) as data:
            return str(data["key"])
    except Exception:  # a damaged file counts as missing
        return None


def _run_groups_parallel(args: list[tuple[RolloutJob, int, str]], workers: int, label: str) -> None:
    """Runs the groups on `workers` processes: `workers - 1` spawned children plus
    this process, which is already warm (imports done, envs cached in `_WORKER`)
    and would otherwise sit idle. Groups are handed out one at a time, so a fast
    worker takes more of them; results don't depend on who runs which group.
    """
    pending = collections.deque(args)
    lock = threading.Lock()
    in_flight: set[int] = set()
    errors: list[BaseException] = []
    finished = threading.Event()
    total, done = len(args), [0]

    def take() -> tuple | None:
        with lock:
            if errors or not pending or STOP.is_set():  # a stopping run starts no new group
                return None
            return pending.popleft()

    def record(group: int) -> None:
        with lock:
            done[0] += 1
            count = done[0]
        log.info("%s: group %d written (%d/%d)", label, group, count, total)

    context = mp.get_context("spawn")  # JAX and MuJoCo are not fork-safe
    children = min(workers - 1, max(len(args) - 1, 1))
    with context.Pool(processes=children) as pool:

        def submit() -> None:
            arg = take()
            if arg is None:
                with lock:
                    if not in_flight:
                        finished.set()
                return
            with lock:
                in_flight.add(arg[1])
            pool.apply_async(_run_and_save_group, (arg,), callback=on_done, error_callback=on_error)

        def on_done(group: int) -> None:
            with lock:
                in_flight.discard(group)
            record(group)
            submit()

        def on_error(exc: BaseException) -> None:
            with lock:
                errors.append(exc)
                in_flight.clear()
            finished.set()

        for _ in range(children):
            submit()
        while (arg := take()) is not None:  # the parent works too
            record(_run_and_save_group(arg))
        finished.wait()
        if errors:
            raise errors[0]
    check_stop(label)


def rollout_chunk(
    chunk,
    song_id: str,
    specialist_dir: Path,
    out_dir: Path,
    *,
    n_rollouts: int = 500,
    workers: int = 1,
    base_seed: int = 0,
    env_config: EnvConfig | None = None,
    engine: str = "lean",
) -> dict:
    """Roll a trained specialist out `n_rollouts` times into `out_dir` (resumable).
    `engine` ("lean" or "env") changes the cost, not the episodes."""
    from tasks.specialist import read_manifest

    if engine not in ENGINES:
        raise ValueError(f"{chunk.chunk_id}: rollout engine {engine!r}, expected one of {ENGINES}")
    if n_rollouts < 1:
        raise ValueError(f"{chunk.chunk_id}: n_rollouts must be >= 1, got {n_rollouts}")
    specialist = read_manifest(Path(specialist_dir))
    if specialist is None:
        raise FileNotFoundError(f"{specialist_dir}: no finished specialist to roll out")
    env_config = env_config or EnvConfig.from_dict(specialist["env_config"])
    out_dir = Path(out_dir)
    key = rollout_key(specialist["specialist_id"], n_rollouts, base_seed, env_config)
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key:
            return manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    job = RolloutJob(chunk, song_id, str(specialist_dir), specialist["specialist_id"], env_config,
                     base_seed, n_rollouts, key, engine)
    n_groups = -(-n_rollouts // LANES)
    todo = [g for g in range(n_groups) if _group_key(_group_path(out_dir, g)) != key]
    log.info("%s: %d rollouts in %d groups, %d to run on %d workers", chunk.chunk_id, n_rollouts,
             n_groups, len(todo), workers)
    if todo:
        args = [(job, g, str(out_dir)) for g in todo]
        if workers <= 1:
            for done, arg in enumerate(args, 1):
                check_stop(chunk.chunk_id)
                _run_and_save_group(arg)
                log.info("%s: group %d/%d written", chunk.chunk_id, done, len(todo))
        else:
            _run_groups_parallel(args, workers, chunk.chunk_id)
    episodes = []
    for group in range(n_groups):
        for episode in load_group(_group_path(out_dir, group)):
            md = episode.metadata
            episodes.append({"seed": md["rollout_seed"], "precision": md["precision"],
                             "recall": md["recall"], "f1": md["f1"]})
    manifest = {
        "key": key,
        "song_id": song_id,
        "chunk_id": chunk.chunk_id,
        "specialist_id": specialist["specialist_id"],
        "n_rollouts": n_rollouts,
        "n_groups": n_groups,
        "base_seed": base_seed,
        "mean_f1": float(np.mean([e["f1"] for e in episodes])),
        "episodes": episodes,
    }
    atomic.write_json(manifest_path, manifest)
    return manifest


def iter_rollout_episodes(out_dir: Path) -> Iterator:
    """Stream the episodes of a finished `rollout_chunk` folder, in rollout order."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST).read_text())
    for group in range(manifest["n_groups"]):
        yield from load_group(_group_path(out_dir, group))
