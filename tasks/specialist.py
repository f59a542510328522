"""One specialist per chunk: budgets, run keys, kinds, and the manifest that marks it done.

`train_specialist(chunk, work_dir, profile, kind=...)` trains (`agents.droq.train`),
resumes or reuses the specialist of a chunk. Work folder of a chunk (everything
written atomically):

    <work_dir>/chunk.json                   the chunk it plays
    <work_dir>/checkpoints/step_00001000/   agent state, replay buffer, rng, curve
    <work_dir>/learning_curve.json          [{step, precision, recall, f1, return}]
    <work_dir>/specialist/                  the final agent state (orbax)
    <work_dir>/specialist.json              the manifest; written last = done

Budgets are named profiles: `smoke` (seconds, for tests), `cpu` (about an hour
on a 2-core machine), `paper` (RP1M's 8M steps). Kinds (`KINDS`):

- ``droq``: RP1M's DroQ from scratch on the piano env (the default).
- ``residual``: DroQ learning a bounded residual around the OT-IK nominal
  controller (PianoMime section 3.2; `envs.control.residual.ResidualEnv`): the agent
  sees the RP1M observation plus the nominal action (1183 dims) and outputs
  the residual; everything else (profiles, checkpoints, resume) is the same.
- ``ik``: the OT-IK nominal controller alone, no training (`envs.control.nominal`).
  Its "policy" is a zero residual; rollouts add Gaussian noise of
  `IK_ROLLOUT_NOISE` to it so that the episodes differ.
- ``mpc``: the OT-IK nominal optimised by sampling MPC (`envs.control.mpc`), no
  network; its rollouts run the MPC along the optimised trajectory under the
  rollout noise, or replay it with noise like ``ik`` (`tasks.specialist_mpc`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import jax

from agents import droq
from agents.common import restore, save_checkpoint
from agents.droq.config import ResidualLearning
from agents.droq.train import LoopConfig, TrainingStopped, evaluate, train
from envs import atomic
from envs.piano.config import EnvConfig
from envs.piano.env import make_env
from tasks.names import NOMINAL_FILE
from tasks.names import SPECIALIST_KINDS as KINDS
from tasks.names import SPECIALIST_MANIFEST as MANIFEST

if TYPE_CHECKING:
    from envs.control.residual import ResidualConfig

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

    @property
    def loop(self) -> LoopConfig:
        return LoopConfig(self.total_steps, self.eval_every, self.checkpoint_every, self.keep_checkpoints)

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


@dataclass(frozen=True)
class ResidualSpecialistConfig:
    """What `params.yaml`'s `residual:` section sets for the residual and ik kinds: the task
    around the nominal (`envs.control.residual.ResidualConfig`) and how DroQ learns in it
    (`agents.droq.ResidualLearning`), one flat dict on disk."""

    task: "ResidualConfig" = field(default_factory=lambda: _residual_task_config())
    learning: ResidualLearning = field(default_factory=ResidualLearning)

    def as_dict(self) -> dict:
        return {**self.task.as_dict(), **dataclasses.asdict(self.learning)}

    @classmethod
    def from_dict(cls, payload: dict | None) -> "ResidualSpecialistConfig":
        from envs.control.residual import ResidualConfig

        payload = dict(payload or {})
        learning_names = {f.name for f in dataclasses.fields(ResidualLearning)}
        task_names = {f.name for f in dataclasses.fields(ResidualConfig)}
        unknown = sorted(set(payload) - learning_names - task_names)
        if unknown:
            raise ValueError(f"residual: unknown fields {unknown}; allowed: {sorted(learning_names | task_names)}")
        learning = ResidualLearning(**{k: v for k, v in payload.items() if k in learning_names})
        return cls(ResidualConfig.from_dict({k: v for k, v in payload.items() if k in task_names}), learning)

    def digest(self) -> str:
        blob = json.dumps({**self.task.digest_doc(), **dataclasses.asdict(self.learning)}, sort_keys=True,
                          default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _residual_task_config():
    from envs.control.residual import ResidualConfig

    return ResidualConfig()


def run_key(chunk_id: str, profile: TrainProfile, env_config: EnvConfig, seed: int, kind: str = "droq",
            residual_config=None, mpc_config=None) -> str:
    """Run-independent identity of a specialist: chunk, budget, task config, seed, kind, code
    (and, for the mpc kind, the `tasks.specialist_mpc.MPCSpecialistConfig`)."""
    blob = f"{chunk_id}|{profile.digest()}|{env_config.digest()}|{seed}|{CODE_VERSION}"
    if check_kind(kind) != "droq":  # droq keys are unchanged from before kinds existed
        residual_config = residual_config or ResidualSpecialistConfig()
        budget = profile.digest() if kind == "residual" else "none"
        blob = f"{chunk_id}|{kind}|{budget}|{env_config.digest()}|{residual_config.digest()}|{seed}|{CODE_VERSION}"
        if kind == "mpc":
            from tasks.specialist_mpc import config_digest

            blob += f"|{config_digest(mpc_config)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]




def make_specialist_env(chunk, kind: str, env_config: EnvConfig | None = None, residual_config=None,
                        *, seed: int | None = None, work_dir: Path | None = None, lean: bool = True):
    """The env a specialist of `kind` acts in: the piano task (droq) or a `ResidualEnv`
    (residual, ik; its nominal trajectory is cached in `work_dir/nominal.npz`; mpc: around
    the optimised trajectory its training wrote there), on the lean path (`envs.piano.lean_env`:
    the same steps, cheaper) unless `lean` is False (mpc: always the dm_control env)."""
    if check_kind(kind) == "droq":
        if lean:
            from envs.piano.lean_env import make_lean_env

            return make_lean_env(chunk, env_config)
        return make_env(chunk, env_config, seed=seed)
    from envs.control.residual import make_residual_env

    nominal_file = Path(work_dir) / NOMINAL_FILE if work_dir is not None else None
    task = (residual_config or ResidualSpecialistConfig()).task
    if kind == "mpc":
        from tasks.specialist_mpc import mpc_env

        return mpc_env(chunk, env_config, task, work_dir=work_dir, seed=seed)
    return make_residual_env(chunk, env_config, task, seed=seed, nominal_file=nominal_file, lean=lean)


def _residual_config(manifest: dict) -> ResidualSpecialistConfig:
    return ResidualSpecialistConfig.from_dict(manifest.get("residual_config"))


def specialist_env(manifest: dict, chunk, *, seed: int | None = None, work_dir: Path | None = None,
                   lean: bool = True):
    """The env of a finished specialist, from its manifest (and its folder's cached nominal trajectory);
    `lean=False` for the dm_control env (what a renderer needs: its `physics`)."""
    kind = manifest.get("kind", "droq")
    residual = _residual_config(manifest) if kind != "droq" else None
    return make_specialist_env(chunk, kind, EnvConfig.from_dict(manifest["env_config"]), residual, seed=seed,
                               work_dir=work_dir, lean=lean)


def read_manifest(work_dir: Path) -> dict | None:
    path = Path(work_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load_specialist(work_dir: Path) -> tuple[droq.DroQState | None, dict]:
    """The trained agent state of a finished specialist and its manifest
    (state None for the ik and mpc kinds, which have no network)."""
    manifest = read_manifest(work_dir)
    if manifest is None:
        raise FileNotFoundError(f"{work_dir}: no finished specialist ({MANIFEST} missing)")
    if manifest.get("kind", "droq") in ("ik", "mpc"):
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
    mpc_config=None,
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train (or resume, or reuse) the specialist of `chunk`; returns its manifest.

    `kind` is one of `KINDS`; `residual_config` (`ResidualSpecialistConfig`) shapes the
    residual, ik and mpc kinds, `mpc_config` (`tasks.specialist_mpc.MPCSpecialistConfig`)
    the mpc kind's planner and rollout noise.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    env_config = env_config or EnvConfig()
    work_dir = Path(work_dir)
    check_kind(kind)
    if kind != "droq":
        residual_config = residual_config or ResidualSpecialistConfig()
    if kind == "mpc":
        from tasks.specialist_mpc import MPCSpecialistConfig

        mpc_config = mpc_config or MPCSpecialistConfig()
    elif mpc_config is not None:
        raise ValueError(f"{chunk.chunk_id}: an mpc config is for the mpc kind, not {kind!r}")
    key = run_key(chunk.chunk_id, profile, env_config, seed, kind, residual_config, mpc_config)
    existing = read_manifest(work_dir)
    if existing is not None and existing.get("run_key") == key:
        log.info("%s: specialist already trained (%s), reusing it", chunk.chunk_id, key)
        return existing
    work_dir.mkdir(parents=True, exist_ok=True)
    from envs.music.chunks import save_chunk

    save_chunk(chunk, work_dir / "chunk.json")  # the specialist's task, for rollouts and rendering

    from envs.control.residual import observation_dim

    mpc_fields = None
    if kind == "mpc":  # plan and optimise first: the env plays the optimised trajectory
        from tasks.specialist_mpc import train_mpc

        mpc_fields = train_mpc(chunk, work_dir, env_config, residual_config, mpc_config, seed, on_progress=on_progress,
                               should_stop=should_stop)

    env = make_specialist_env(chunk, kind, env_config, residual_config, seed=seed, work_dir=work_dir)
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
    if mpc_fields is not None:
        manifest = {**identity, "steps": 0, "final": mpc_fields["final"], "curve": mpc_fields["curve"],
                    "resumed_from_step": mpc_fields["mpc"]["resumed_from_step"],
                    "train_seconds_this_run": mpc_fields["train_seconds_this_run"], **extras,
                    "mpc_config": mpc_config.as_dict(), "mpc": mpc_fields["mpc"]}
        atomic.write_json(work_dir / "learning_curve.json", mpc_fields["curve"])
        atomic.write_json(work_dir / MANIFEST, manifest)
        return manifest
    if kind == "ik":  # nothing to train: evaluate the nominal controller once
        started = time.perf_counter()
        point = {"step": 0, **evaluate(env, None)}
        manifest = {**identity, "steps": 0, "final": point, "curve": [point], "resumed_from_step": None,
                    "train_seconds_this_run": round(time.perf_counter() - started, 1), **extras}
        atomic.write_json(work_dir / "learning_curve.json", [point])
        atomic.write_json(work_dir / MANIFEST, manifest)
        log.info("%s: ik specialist F1 %.3f", chunk.chunk_id, point["f1"])
        return manifest

    def save_curve(point: dict, curve: list) -> None:
        atomic.write_json(work_dir / "learning_curve.json", curve)
        if on_progress:
            on_progress(point["step"], profile.total_steps, point)

    result = train(env, profile.agent, profile.loop, work_dir / "checkpoints", run_key=key, seed=seed,
                   residual=residual_config.learning if kind == "residual" else None, on_evaluation=save_curve,
                   should_stop=should_stop, name=chunk.chunk_id)
    curve, step = result.curve, result.steps
    save_checkpoint(work_dir / "specialist", step, result.state, metadata={"run_key": key}, keep=1)
    manifest = {
        **identity,
        "steps": step,
        "final": curve[-1] if curve else None,
        "curve": curve,
        "resumed_from_step": result.resumed_from_step,
        "train_seconds_this_run": round(result.seconds, 1),
        "agent_config": dataclasses.asdict(result.agent_config),
        **extras,
    }
    atomic.write_json(work_dir / MANIFEST, manifest)
    return manifest


def main(argv: list[str] | None = None) -> None:
    """`python -m tasks.specialist CHUNK_FILE WORK_DIR --profile smoke` (used by the kill/resume test)."""
    from tasks.stop import die_with_parent_from_start

    die_with_parent_from_start()  # started by tasks.collect.train_chunk: die with the run
    parser = argparse.ArgumentParser(description="Train one specialist on one chunk file.")
    parser.add_argument("chunk_file", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-config", default="{}", help="EnvConfig fields as JSON (defaults: RP1M)")
    parser.add_argument("--kind", default="droq", choices=KINDS)
    parser.add_argument("--residual-config", default="{}", help="ResidualSpecialistConfig fields as JSON (residual, ik, mpc)")
    parser.add_argument("--mpc-config", default="{}", help="MPCSpecialistConfig fields as JSON (mpc)")
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
    residual_config = mpc_config = None
    if args.kind != "droq":
        residual_config = ResidualSpecialistConfig.from_dict(json.loads(args.residual_config))
    if args.kind == "mpc":
        from tasks.specialist_mpc import MPCSpecialistConfig

        mpc_config = MPCSpecialistConfig.from_dict(json.loads(args.mpc_config))
    # SIGTERM (the run stopping, or its parent dying: tasks.stop.die_with_parent) saves a checkpoint
    # at the next step and exits 143; the next run resumes from it.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        manifest = train_specialist(load_chunk(args.chunk_file), args.work_dir, args.profile, env_config,
                                    seed=args.seed, kind=args.kind, residual_config=residual_config,
                                    mpc_config=mpc_config, should_stop=stop.is_set)
    except TrainingStopped as exc:
        log.info("%s: %s", args.chunk_file, exc)
        raise SystemExit(128 + signal.SIGTERM) from None
    print(json.dumps({k: manifest[k] for k in ("specialist_id", "kind", "steps", "final", "resumed_from_step")}))


if __name__ == "__main__":
    main()
