"""Training one DroQ specialist on one chunk (RP1M section 4, Appendix A.2).

`train_specialist(chunk, work_dir, profile)` runs the off-policy loop:
uniform random actions for the warm-up (small Gaussian residuals for the
residual kind, whose critic then also learns alone for a burn-in), then the DroQ policy with one
gradient update every `update_interval` env steps (RP1M Table 4), a
deterministic evaluation episode (P/R/F1) every `eval_every` steps, and a
checkpoint every `checkpoint_every` steps.

Work folder of a chunk (everything written atomically):

    <work_dir>/chunk.json                   the chunk it plays
    <work_dir>/checkpoints/step_00001000/   agent state (actor, critics, target,
                                            temperature, optimizers, rng), replay
                                            buffer, numpy rng, step counter, curve
    <work_dir>/learning_curve.json          [{step, precision, recall, f1, return}]
    <work_dir>/specialist/                  the final agent state (orbax)
    <work_dir>/specialist.json              the manifest; written last = done

Run again after a kill, it restarts from the latest complete checkpoint: the
step counter, buffer, optimizer state and random streams continue; only the
episode that was in progress starts over from its first step. A finished
specialist whose manifest matches the run key is returned without training.

Budgets are named profiles: `smoke` (seconds, for tests), `cpu` (about an hour
on a 2-core machine), `paper` (RP1M's 8M steps).

Kinds of specialist (`KINDS`):

- ``droq``: RP1M's DroQ from scratch on the piano env (the default).
- ``residual``: DroQ learning a bounded residual around the OT-IK nominal
  controller (PianoMime section 3.2; `envs.control.residual.ResidualEnv`): the agent
  sees the RP1M observation plus the nominal action (1183 dims) and outputs
  the residual; everything else (profiles, checkpoints, resume) is the same.
- ``ik``: the OT-IK nominal controller alone, no training (`envs.control.nominal`).
  Its "policy" is a zero residual; rollouts add Gaussian noise of
  `IK_ROLLOUT_NOISE` to it so that the episodes differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from agents import droq
from agents.common import ReplayBuffer, latest_checkpoint, restore, save_checkpoint, to_env_action
from envs import atomic
from envs.piano.config import EnvConfig
from envs.piano.env import make_env
from envs.piano.metrics import key_press_metrics
from tasks.names import NOMINAL_FILE
from tasks.names import SPECIALIST_KINDS as KINDS
from tasks.names import SPECIALIST_MANIFEST as MANIFEST

log = logging.getLogger(__name__)

CODE_VERSION = "specialist-1"  # bump when a change alters trained specialists
# Std of the pre-tanh Gaussian noise on the ik specialist's zero residual in
# rollouts: about 0.1 * ResidualConfig.scale of each actuator's half range.
IK_ROLLOUT_NOISE = 0.1


@dataclass(frozen=True)
class TrainProfile:
    """A named training budget."""

    name: str
    total_steps: int
    eval_every: int
    checkpoint_every: int
    agent: droq.DroQConfig = field(default_factory=droq.DroQConfig)
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for name in ("total_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainProfile {self.name!r}: {name} must be positive, got {getattr(self, name)}")

    def digest(self) -> str:
        payload = dataclasses.asdict(self)
        for name, neutral in _LATER_AGENT_FIELDS.items():  # keep earlier specialists' keys
            if payload["agent"].get(name) == neutral:
                del payload["agent"][name]
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# DroQConfig fields added after specialists were trained and cached, with the
# value that leaves training unchanged: at that value a field is left out of
# `TrainProfile.digest`, so adding it does not invalidate finished specialists.
_LATER_AGENT_FIELDS = {"actor_prior_weight": 0.0}


PROFILES: dict[str, TrainProfile] = {
    # Seconds on a laptop: a small network, a short warm-up; exercises every code path.
    "smoke": TrainProfile(
        "smoke", total_steps=240, eval_every=120, checkpoint_every=80,
        agent=droq.DroQConfig(hidden_dims=(64, 64), batch_size=32, warmup_steps=80, buffer_size=240),
    ),
    # About an hour on this project's 2-core CI machine (measured: see README).
    # RP1M hyperparameters except the step budget and a buffer sized to it.
    "cpu": TrainProfile(
        "cpu", total_steps=60_000, eval_every=5_000, checkpoint_every=10_000,
        agent=droq.DroQConfig(warmup_steps=5_000, buffer_size=60_000),
    ),
    # RP1M Table 4: 8M steps, 1M buffer, 5k warm-up.
    "paper": TrainProfile("paper", total_steps=8_000_000, eval_every=100_000, checkpoint_every=100_000),
}


def get_profile(name: str) -> TrainProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown training profile {name!r}: expected one of {sorted(PROFILES)}")
    return PROFILES[name]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown specialist kind {kind!r}: expected one of {list(KINDS)}")
    return kind


def run_key(chunk_id: str, profile: TrainProfile, env_config: EnvConfig, seed: int, kind: str = "droq",
            residual_config=None) -> str:
    """Run-independent identity of a specialist: chunk, budget, task config, seed, kind, code."""
    blob = f"{chunk_id}|{profile.digest()}|{env_config.digest()}|{seed}|{CODE_VERSION}"
    if check_kind(kind) != "droq":  # droq keys are unchanged from before kinds existed
        from envs.control.residual import ResidualConfig

        residual_config = residual_config or ResidualConfig()
        budget = "none" if kind == "ik" else profile.digest()
        blob = f"{chunk_id}|{kind}|{budget}|{env_config.digest()}|{residual_config.digest()}|{seed}|{CODE_VERSION}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]




def make_specialist_env(chunk, kind: str, env_config: EnvConfig | None = None, residual_config=None,
                        *, seed: int | None = None, work_dir: Path | None = None):
    """The env a specialist of `kind` acts in: a `PianoEnv` (droq) or a `ResidualEnv`
    (residual, ik; its nominal trajectory is cached in `work_dir/nominal.npz`)."""
    if check_kind(kind) == "droq":
        return make_env(chunk, env_config, seed=seed)
    from envs.control.residual import make_residual_env

    nominal_file = Path(work_dir) / NOMINAL_FILE if work_dir is not None else None
    return make_residual_env(chunk, env_config, residual_config, seed=seed, nominal_file=nominal_file)


def _residual_config(manifest: dict):
    from envs.control.residual import ResidualConfig

    return ResidualConfig.from_dict(manifest.get("residual_config"))


def specialist_env(manifest: dict, chunk, *, seed: int | None = None, work_dir: Path | None = None):
    """The env of a finished specialist, from its manifest (and its folder's cached nominal trajectory)."""
    kind = manifest.get("kind", "droq")
    residual = _residual_config(manifest) if kind != "droq" else None
    return make_specialist_env(chunk, kind, EnvConfig.from_dict(manifest["env_config"]), residual, seed=seed,
                               work_dir=work_dir)


def evaluate_policy(env, state: droq.DroQState | None) -> dict:
    """One deterministic episode (tanh of the mean action; a zero residual when
    `state` is None, the ik specialist): P/R/F1 and return."""
    from envs.control.residual import flat_observation_fn

    featurize = flat_observation_fn(env)
    spec = env.action_spec()
    timestep = env.reset()
    goal, pressed, episode_return = [], [], 0.0
    while not timestep.last():
        if state is None:
            action = np.zeros(spec.shape, np.float32)
        else:
            action = np.asarray(droq.eval_actions(state, featurize(timestep.observation)))
        timestep = env.step(to_env_action(action, spec.minimum, spec.maximum))
        info = env.step_info()
        goal.append(info["goal_keys"])
        pressed.append(info["pressed_keys"])
        episode_return += float(timestep.reward)
    metrics = key_press_metrics(np.array(goal), np.array(pressed))
    return {**metrics.as_dict(), "return": episode_return}


def read_manifest(work_dir: Path) -> dict | None:
    path = Path(work_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load_specialist(work_dir: Path) -> tuple[droq.DroQState | None, dict]:
    """The trained agent state of a finished specialist and its manifest
    (state None for the ik kind, which has no network)."""
    manifest = read_manifest(work_dir)
    if manifest is None:
        raise FileNotFoundError(f"{work_dir}: no finished specialist ({MANIFEST} missing)")
    if manifest.get("kind", "droq") == "ik":
        return None, manifest
    agent_config = droq.DroQConfig(**manifest["agent_config"])
    template = droq.init(jax.random.PRNGKey(0), manifest["obs_dim"], manifest["action_dim"], agent_config)
    checkpoint = restore(Path(work_dir) / "specialist", template)
    return checkpoint.pytree, manifest


def train_specialist(
    chunk,
    work_dir: Path,
    profile: TrainProfile | str = "smoke",
    env_config: EnvConfig | None = None,
    seed: int = 0,
    *,
    kind: str = "droq",
    residual_config=None,
    on_progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train (or resume, or reuse) the specialist of `chunk`; returns its manifest.

    `kind` is one of `KINDS`; `residual_config` (`envs.control.residual.ResidualConfig`)
    shapes the residual and ik kinds.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    env_config = env_config or EnvConfig()
    work_dir = Path(work_dir)
    check_kind(kind)
    if kind != "droq":
        from envs.control.residual import ResidualConfig

        residual_config = residual_config or ResidualConfig()
    key = run_key(chunk.chunk_id, profile, env_config, seed, kind, residual_config)
    existing = read_manifest(work_dir)
    if existing is not None and existing.get("run_key") == key:
        log.info("%s: specialist already trained (%s), reusing it", chunk.chunk_id, key)
        return existing
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_root = work_dir / "checkpoints"
    from envs.music.chunks import save_chunk

    save_chunk(chunk, work_dir / "chunk.json")  # the specialist's task, for rollouts and rendering

    from envs.control.residual import flat_observation_fn, observation_dim

    env = make_specialist_env(chunk, kind, env_config, residual_config, seed=seed, work_dir=work_dir)
    flatten_observation = flat_observation_fn(env)
    obs_dim = observation_dim(env)
    spec = env.action_spec()
    action_dim = spec.shape[0]
    identity = {
        "run_key": key,
        "specialist_id": f"{chunk.chunk_id}-{key[:8]}",
        "chunk_id": chunk.chunk_id,
        "kind": kind,
        "profile": profile.name,
        "seed": seed,
    }
    extras = {
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "env_config": env_config.as_dict(),
        "residual_config": residual_config.as_dict() if residual_config is not None else None,
        "code_version": CODE_VERSION,
    }
    if kind == "ik":  # nothing to train: evaluate the nominal controller once
        started = time.perf_counter()
        point = {"step": 0, **evaluate_policy(env, None)}
        manifest = {**identity, "steps": 0, "final": point, "curve": [point], "resumed_from_step": None,
                    "train_seconds_this_run": round(time.perf_counter() - started, 1), **extras}
        atomic.write_json(work_dir / "learning_curve.json", [point])
        atomic.write_json(work_dir / MANIFEST, manifest)
        log.info("%s: ik specialist F1 %.3f", chunk.chunk_id, point["f1"])
        return manifest
    cfg = profile.agent
    if kind == "residual":
        cfg = dataclasses.replace(cfg, init_temperature=residual_config.init_temperature,
                                  actor_prior_weight=residual_config.prior_weight)
    state = droq.init(jax.random.PRNGKey(seed), obs_dim, action_dim, cfg)
    actor_from = cfg.warmup_steps  # first env step at which the actor learns
    if kind == "residual":  # start from the nominal: a zero residual (restored checkpoints replace it)
        state = droq.zero_mean_head(state, std=residual_config.warmup_noise)
        actor_from += residual_config.critic_burn_in
    buffer = ReplayBuffer(obs_dim, action_dim, capacity=min(cfg.buffer_size, profile.total_steps))
    rng = np.random.default_rng(seed)
    step, curve, resumed_from = 0, [], None

    latest = latest_checkpoint(ckpt_root)
    if latest is not None:
        checkpoint = restore(latest, state)
        if checkpoint.metadata.get("run_key") != key:
            raise RuntimeError(
                f"{ckpt_root}: checkpoints belong to another run ({checkpoint.metadata.get('run_key')} != {key}); "
                "remove the folder or use another work dir"
            )
        state = checkpoint.pytree
        buffer.load_state_dict(checkpoint.arrays)
        rng.bit_generator.state = checkpoint.metadata["numpy_rng"]
        step = int(checkpoint.metadata["step"])
        curve = list(checkpoint.metadata["curve"])
        resumed_from = step
        log.info("%s: resumed from checkpoint at step %d", chunk.chunk_id, step)

    def checkpoint_now() -> None:
        save_checkpoint(
            ckpt_root, step, state, arrays=buffer.state_dict(),
            metadata={"run_key": key, "step": step, "numpy_rng": rng.bit_generator.state, "curve": curve},
            keep=profile.keep_checkpoints,
        )

    if kind == "residual":  # explore around the nominal, not over the whole action range

        def warmup_action(rng, n):
            return np.clip(rng.normal(0.0, residual_config.warmup_noise, n), -1.0, 1.0).astype(np.float32)
    else:

        def warmup_action(rng, n):
            return rng.uniform(-1.0, 1.0, size=n).astype(np.float32)

    policy_key = jax.random.PRNGKey(seed + 1)
    timestep = env.reset()
    obs = flatten_observation(timestep.observation)
    started, steps_at_start = time.perf_counter(), step
    last_metrics: dict = {}
    while step < profile.total_steps:
        if step < cfg.warmup_steps:
            action = warmup_action(rng, action_dim)
        else:
            action = np.asarray(droq.sample_actions(state, obs, jax.random.fold_in(policy_key, step)))
        timestep = env.step(to_env_action(action, spec.minimum, spec.maximum))
        next_obs = flatten_observation(timestep.observation)
        # Episodes end by time limit only, so the bootstrap discount stays 1 (robopianist).
        buffer.insert(obs, action, timestep.reward, timestep.discount, next_obs)
        obs = next_obs
        step += 1
        if step >= cfg.warmup_steps and step % cfg.update_interval == 0:
            n = cfg.num_updates_per_call
            batch = buffer.sample(rng, cfg.batch_size, num_batches=n if n > 1 else None)
            state, metrics = droq.update(state, batch, train_actor=step >= actor_from)
            last_metrics = metrics
        if timestep.last():
            timestep = env.reset()
            obs = flatten_observation(timestep.observation)
        if step % profile.eval_every == 0 or step == profile.total_steps:
            point = {"step": step, **evaluate_policy(env, state)}
            curve.append(point)
            atomic.write_json(work_dir / "learning_curve.json", curve)
            timestep = env.reset()
            obs = flatten_observation(timestep.observation)
            rate = (step - steps_at_start) / max(time.perf_counter() - started, 1e-9)
            log.info("%s: step %d/%d F1 %.3f (%.1f steps/s) %s", chunk.chunk_id, step, profile.total_steps,
                     point["f1"], rate, {k: round(float(v), 3) for k, v in last_metrics.items()})
            if on_progress:
                on_progress(step, profile.total_steps, point)
        if step % profile.checkpoint_every == 0 and step < profile.total_steps:
            checkpoint_now()

    elapsed = time.perf_counter() - started
    save_checkpoint(work_dir / "specialist", step, state, metadata={"run_key": key}, keep=1)
    manifest = {
        **identity,
        "steps": step,
        "final": curve[-1] if curve else None,
        "curve": curve,
        "resumed_from_step": resumed_from,
        "train_seconds_this_run": round(elapsed, 1),
        "agent_config": dataclasses.asdict(cfg),
        **extras,
    }
    atomic.write_json(work_dir / MANIFEST, manifest)
    return manifest


def main(argv: list[str] | None = None) -> None:
    """`python -m tasks.specialist CHUNK_FILE WORK_DIR --profile smoke` (used by the kill/resume test)."""
    parser = argparse.ArgumentParser(description="Train one specialist on one chunk file.")
    parser.add_argument("chunk_file", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-config", default="{}", help="EnvConfig fields as JSON (defaults: RP1M)")
    parser.add_argument("--kind", default="droq", choices=KINDS)
    parser.add_argument("--residual-config", default="{}", help="ResidualConfig fields as JSON (residual, ik)")
    args = parser.parse_args(argv)
    # absl (imported by dm_control) owns the root logger; give ours its own handler.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    package_log = logging.getLogger("tasks")
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    package_log.propagate = False
    from envs.music.chunks import load_chunk

    env_config = EnvConfig.from_dict(json.loads(args.env_config))
    residual_config = None
    if args.kind != "droq":
        from envs.control.residual import ResidualConfig

        residual_config = ResidualConfig.from_dict(json.loads(args.residual_config))
    manifest = train_specialist(load_chunk(args.chunk_file), args.work_dir, args.profile, env_config, seed=args.seed,
                                kind=args.kind, residual_config=residual_config)
    print(json.dumps({k: manifest[k] for k in ("specialist_id", "kind", "steps", "final", "resumed_from_step")}))


if __name__ == "__main__":
    main()
