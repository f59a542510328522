"""The flow-matching policy behind the policy contract (agents.common.policy).

    policy, history = train(dataset, FlowMatchingConfig(), steps=..., seed=0)
    actions = policy.predict_chunk(obs_window, key)           # (B, Ta, Da), env units

Training is RP1M's Diffusion Policy's (`agents.diffusion.agent`: the same
U-Net, normalizer, optimizer, schedule and EMA) with the flow-matching loss
(`losses`). Inference integrates the learned velocity from x0 ~ N(0, I) at
t = 0 to t = 1 with `num_inference_steps` Euler steps in one jitted loop (the
observation part of every FiLM computed once per call, the time part once per
policy), then clips to [-1, 1] and returns the Ta actions from the current step.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from agents.common.policy import Normalizer, PolicySpec
from agents.common.supervised import check_dataset, check_obs_window, check_spec, check_steps, to_device
from agents.diffusion.agent import ema_decay, ema_update, init_params, learning_rate, make_optimizer
from agents.diffusion.networks import make_unet
from agents.flow_matching import losses
from agents.flow_matching.config import FlowMatchingConfig

log = logging.getLogger(__name__)


def _optimizer(config: FlowMatchingConfig):
    return make_optimizer(config.adam_b1, config.adam_b2, config.adam_eps, config.weight_decay)


def init_state(key, config: FlowMatchingConfig, action_dim: int, global_cond_dim: int) -> dict:
    params = init_params(key, config, action_dim, global_cond_dim)
    return {"params": params, "ema_params": jax.tree_util.tree_map(jnp.copy, params),
            "opt_state": _optimizer(config).init(params), "step": jnp.zeros((), jnp.int32)}


@functools.partial(jax.jit, static_argnames=("config", "action_dim"), donate_argnums=(0,))
def update(state: dict, global_cond, actions, key, total_steps, *, config: FlowMatchingConfig, action_dim: int):
    """One gradient step on normalized data ((B, To*Do), (B, Tp, Da)), then the EMA."""
    net = make_unet(config, action_dim, global_cond.shape[-1])
    grads, info = jax.grad(losses.flow_matching_loss, has_aux=True)(
        state["params"], net.apply, global_cond, actions, jax.random.fold_in(key, state["step"]),
        time_scale=config.time_scale, sampling=config.time_sampling)
    updates, opt_state = _optimizer(config).update(grads, state["opt_state"], state["params"])
    lr = learning_rate(config, state["step"], total_steps)
    params = jax.tree_util.tree_map(lambda p, u: p - lr * u, state["params"], updates)
    ema = ema_update(state["ema_params"], params, ema_decay(config, state["step"]))
    return {"params": params, "ema_params": ema, "opt_state": opt_state, "step": state["step"] + 1}, info


@functools.partial(jax.jit, static_argnames=("config", "action_dim", "global_cond_dim"))
def time_films(params, *, config: FlowMatchingConfig, action_dim: int, global_cond_dim: int):
    """The time part of every block's FiLM at each Euler step's t (it depends on the weights only)."""
    net = make_unet(config, action_dim, global_cond_dim)
    times = jnp.arange(config.num_inference_steps, dtype=jnp.float32) / config.num_inference_steps
    return net.apply({"params": params}, times * config.time_scale, method="film_from_time")


@functools.partial(jax.jit, static_argnames=("config", "action_dim"))
def euler_sample(params, films_of_time, global_cond, key, *, config: FlowMatchingConfig, action_dim: int):
    """(B, G) condition -> (B, Tp, Da) normalized actions: x += dt * v(x, t) from t = 0 to 1."""
    net = make_unet(config, action_dim, global_cond.shape[-1])
    variables = {"params": params}
    obs_films = net.apply(variables, global_cond, method="film_from_obs")
    dt = 1.0 / config.num_inference_steps

    def step(i, x):
        films = [o + t[i][None, :] for o, t in zip(obs_films, films_of_time)]
        return x + dt * net.apply(variables, x, films, method="denoise")

    x = jax.random.normal(key, (global_cond.shape[0], config.pred_horizon, action_dim), jnp.float32)
    return jnp.clip(jax.lax.fori_loop(0, config.num_inference_steps, step, x), -1.0, 1.0)


class FlowMatchingPolicy:
    """A trained flow-matching policy: spec, config, EMA U-Net parameters, normalizer."""

    name: ClassVar[str] = "flow_matching"

    def __init__(self, spec: PolicySpec, config: FlowMatchingConfig, params: Any, normalizer: Normalizer):
        check_spec(type(self).__name__, spec, config.spec_for(spec.obs_dim, spec.action_dim))
        self.spec, self.config, self.normalizer = spec, config, normalizer
        self.params = to_device(params)
        self._films = None

    @classmethod
    def from_parts(cls, *, spec, config, params, normalizer):
        return cls(spec, config, params, normalizer)

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: the policy sees only its observation window."""

    def predict_chunk(self, obs: np.ndarray, key) -> np.ndarray:
        spec = self.spec
        obs = check_obs_window("FlowMatchingPolicy", spec, obs)
        cond = self.normalizer.normalize_obs(obs).reshape(len(obs), -1).astype(np.float32)
        if self._films is None:
            self._films = time_films(self.params, config=self.config, action_dim=spec.action_dim,
                                     global_cond_dim=cond.shape[-1])
        actions = euler_sample(self.params, self._films, cond, key, config=self.config, action_dim=spec.action_dim)
        start = spec.current_index
        return self.normalizer.unnormalize_action(np.asarray(actions[:, start:start + spec.action_horizon]))


def train(dataset, config: FlowMatchingConfig = FlowMatchingConfig(), *, steps: int, seed: int,
          on_progress: Callable[[int, int, dict], None] | None = None) -> tuple[FlowMatchingPolicy, list[dict]]:
    """`steps` updates on windows of a `tasks.rlds.reader.WindowDataset`; history {"step", "loss"} ~20 times."""
    owner = "flow_matching.train"
    spec = config.spec_for(int(dataset.obs_dim), int(dataset.action_dim))
    check_dataset(owner, dataset, spec)
    check_steps(owner, steps)
    normalizer = Normalizer.from_dataset(dataset, seed=seed)
    init_key, update_key = jax.random.split(jax.random.PRNGKey(seed))
    state = init_state(init_key, config, spec.action_dim, spec.obs_horizon * spec.obs_dim)
    rng = np.random.default_rng(seed)
    every, history, pending = max(1, steps // 20), [], []
    for step in range(1, steps + 1):
        obs, actions = dataset.sample(config.batch_size, rng)
        cond = normalizer.normalize_obs(obs).reshape(len(obs), -1).astype(np.float32)
        target = normalizer.normalize_action(actions).astype(np.float32)
        state, info = update(state, cond, target, update_key, steps, config=config, action_dim=spec.action_dim)
        pending.append(info["loss"])
        if step % every == 0 or step == steps:
            entry = {"step": step, "loss": float(np.mean(jax.device_get(pending)))}
            pending = []
            if not np.isfinite(entry["loss"]):
                raise FloatingPointError(f"{owner}: loss became {entry['loss']} at step {step}")
            history.append(entry)
            log.info("%s step %d/%d loss %.5g", owner, step, steps, entry["loss"])
            if on_progress is not None:
                on_progress(step, steps, entry)
    return FlowMatchingPolicy(spec, config, state["ema_params"], normalizer), history
