"""The DroQ env loop (RP1M section 4, Appendix A.2): warm-up, updates, evaluations, checkpoints, resume.

`train(env, config, loop, checkpoint_dir, run_key=..., seed=...)` acts in any
dm_env whose observation `flat_observation_fn` flattens: uniform random actions
for the warm-up (or small Gaussian residuals, `ResidualLearning`, whose critic
then also learns alone for a burn-in), then the DroQ policy with one gradient
update every `update_interval` env steps (RP1M Table 4), a deterministic
evaluation episode (P/R/F1) every `eval_every` steps and a checkpoint every
`checkpoint_every` steps. Run again after a kill, it restarts from the latest
complete checkpoint: the step counter, buffer, optimizer state and random
streams continue; only the episode that was in progress starts over.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from agents.common import ReplayBuffer, latest_checkpoint, restore, save_checkpoint, to_env_action
from agents.droq import agent as droq
from agents.droq.config import DroQConfig, ResidualLearning
from envs.control.residual import flat_observation_fn, observation_dim
from envs.piano.metrics import key_press_metrics

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How long to train and how often to evaluate and checkpoint (env steps)."""

    total_steps: int
    eval_every: int
    checkpoint_every: int
    keep_checkpoints: int = 2


class TrainingStopped(Exception):
    """`should_stop()` asked the loop to stop; a checkpoint of the step reached was saved."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step} (checkpoint saved)")
        self.step = step


@dataclasses.dataclass(frozen=True)
class TrainResult:
    state: droq.DroQState
    agent_config: DroQConfig
    steps: int
    curve: list  # [{step, precision, recall, f1, return}], one per evaluation
    resumed_from_step: int | None
    seconds: float  # wall time of this run


def evaluate(env, state: droq.DroQState | None) -> dict:
    """One deterministic episode (tanh of the mean action; a zero action when `state` is None,
    i.e. the nominal of a residual env): P/R/F1 and return."""
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


def train(
    env,
    config: DroQConfig,
    loop: LoopConfig,
    checkpoint_dir: Path,
    *,
    run_key: str,
    seed: int,
    residual: ResidualLearning | None = None,
    on_evaluation: Callable[[dict, list], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    name: str = "specialist",
) -> TrainResult:
    """Train (or resume from `checkpoint_dir`) a DroQ agent in `env`; `residual` starts it at the
    nominal of a residual env. `on_evaluation(point, curve)` is called after each evaluation;
    when `should_stop()` turns true the loop saves a checkpoint and raises `TrainingStopped`."""
    flatten = flat_observation_fn(env)
    obs_dim = observation_dim(env)
    spec = env.action_spec()
    action_dim = spec.shape[0]
    if residual is not None:
        config = residual.agent_config(config)
    state = droq.init(jax.random.PRNGKey(seed), obs_dim, action_dim, config)
    actor_from = config.warmup_steps  # first env step at which the actor learns
    if residual is not None:  # a zero residual (restored checkpoints replace it)
        state = droq.zero_mean_head(state, std=residual.warmup_noise)
        actor_from += residual.critic_burn_in
    buffer = ReplayBuffer(obs_dim, action_dim, capacity=min(config.buffer_size, loop.total_steps))
    rng = np.random.default_rng(seed)
    step, curve, resumed_from = 0, [], None

    latest = latest_checkpoint(checkpoint_dir)
    if latest is not None:
        checkpoint = restore(latest, state)
        if checkpoint.metadata.get("run_key") != run_key:
            raise RuntimeError(
                f"{checkpoint_dir}: checkpoints belong to another run ({checkpoint.metadata.get('run_key')} != "
                f"{run_key}); remove the folder or use another work dir"
            )
        state = checkpoint.pytree
        buffer.load_state_dict(checkpoint.arrays)
        rng.bit_generator.state = checkpoint.metadata["numpy_rng"]
        step = int(checkpoint.metadata["step"])
        curve = list(checkpoint.metadata["curve"])
        resumed_from = step
        log.info("%s: resumed from checkpoint at step %d", name, step)

    if residual is not None:  # explore around the nominal, not over the whole action range

        def warmup_action(n):
            return np.clip(rng.normal(0.0, residual.warmup_noise, n), -1.0, 1.0).astype(np.float32)
    else:

        def warmup_action(n):
            return rng.uniform(-1.0, 1.0, size=n).astype(np.float32)

    policy_key = jax.random.PRNGKey(seed + 1)
    timestep = env.reset()
    obs = flatten(timestep.observation)
    started, steps_at_start = time.perf_counter(), step
    last_metrics: dict = {}
    def checkpoint() -> None:
        save_checkpoint(
            checkpoint_dir, step, state, arrays=buffer.state_dict(),
            metadata={"run_key": run_key, "step": step, "numpy_rng": rng.bit_generator.state, "curve": curve},
            keep=loop.keep_checkpoints,
        )

    while step < loop.total_steps:
        if should_stop is not None and should_stop():
            if step > (resumed_from or 0):
                checkpoint()
            raise TrainingStopped(step)
        if step < config.warmup_steps:
            action = warmup_action(action_dim)
        else:
            action = np.asarray(droq.sample_actions_at(state, obs, policy_key, step))
        timestep = env.step(to_env_action(action, spec.minimum, spec.maximum))
        next_obs = flatten(timestep.observation)
        # Episodes end by time limit only, so the bootstrap discount stays 1 (robopianist).
        buffer.insert(obs, action, timestep.reward, timestep.discount, next_obs)
        obs = next_obs
        step += 1
        if step >= config.warmup_steps and step % config.update_interval == 0:
            n = config.num_updates_per_call
            batch = buffer.sample(rng, config.batch_size, num_batches=n if n > 1 else None)
            state, last_metrics = droq.update(state, batch, train_actor=step >= actor_from)
        if timestep.last():
            timestep = env.reset()
            obs = flatten(timestep.observation)
        if step % loop.eval_every == 0 or step == loop.total_steps:
            point = {"step": step, **evaluate(env, state)}
            curve.append(point)
            timestep = env.reset()
            obs = flatten(timestep.observation)
            rate = (step - steps_at_start) / max(time.perf_counter() - started, 1e-9)
            log.info("%s: step %d/%d F1 %.3f (%.1f steps/s) %s", name, step, loop.total_steps, point["f1"], rate,
                     {k: round(float(v), 3) for k, v in last_metrics.items()})
            if on_evaluation:
                on_evaluation(point, curve)
        if step % loop.checkpoint_every == 0 and step < loop.total_steps:
            checkpoint()
    return TrainResult(state=state, agent_config=config, steps=step, curve=curve, resumed_from_step=resumed_from,
                       seconds=time.perf_counter() - started)
