"""BC policy (RP1M B.1.1): train, predict, and the supervised loop shared with IBC and BC-RNN.

    spec = config.spec_for(obs_dim, action_dim)
    dataset = WindowDataset(songs, spec.obs_horizon, spec.pred_horizon, action_offset=spec.action_offset)
    policy, history = train_bc(dataset, config, steps=1000, seed=0)
    actions = policy.predict_chunk(obs_window, key)          # (B, Ta, action_dim), env units

The training state is a pytree (`TrainingState`); `update` is a module-level
jitted function with the config as a static argument. `fit` is the sampling /
normalizing / logging loop every supervised policy here uses; the algorithm
lives in the `update_fn` it is given.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable, ClassVar, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.bc import losses
from agents.bc.config import BCConfig
from agents.bc.networks import make_network
from agents.common.policy import Normalizer, PolicySpec

logger = logging.getLogger(__name__)

Metrics = dict[str, jax.Array]
UpdateFn = Callable[["TrainingState", jax.Array, jax.Array, jax.Array], tuple["TrainingState", Metrics]]
ProgressFn = Callable[[int, int, dict], None]

# Entries in the training history: about this many over a run (the contract's
# "every ~max(1, steps // 20) steps").
HISTORY_POINTS = 20


@flax.struct.dataclass
class TrainingState:
    """What changes during training: parameters, optimizer state, step count."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: gradient steps taken


def init_training_state(params: Any, optimizer: optax.GradientTransformation) -> TrainingState:
    return TrainingState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))


def apply_gradients(
    state: TrainingState, grads: Any, optimizer: optax.GradientTransformation
) -> TrainingState:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainingState(
        params=optax.apply_updates(state.params, updates), opt_state=opt_state, step=state.step + 1
    )


# ------------------------------------------------------------------------------ checks


def check_spec(owner: str, spec: PolicySpec, expected: PolicySpec) -> None:
    """`spec` must be what the config asks for (`config.spec_for(obs_dim, action_dim)`)."""
    if spec != expected:
        raise ValueError(f"{owner}: spec {spec} does not match the config's {expected}")


def check_dataset(owner: str, dataset: Any, spec: PolicySpec) -> None:
    """The WindowDataset must have been built with the spec's horizons."""
    got = (dataset.obs_horizon, dataset.action_horizon, dataset.action_offset)
    want = (spec.obs_horizon, spec.pred_horizon, spec.action_offset)
    if got != want:
        raise ValueError(
            f"{owner}: dataset windows (obs_horizon, action_horizon, action_offset) = {got}, "
            f"but the policy needs {want}; build it with WindowDataset(..., obs_horizon="
            f"{spec.obs_horizon}, action_horizon={spec.pred_horizon}, action_offset={spec.action_offset})"
        )
    if len(dataset) == 0:
        raise ValueError(f"{owner}: dataset has no steps")


def check_steps(owner: str, steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{owner}: steps must be a positive int, got {steps!r}")


def check_obs_window(owner: str, spec: PolicySpec, obs: Any) -> np.ndarray:
    """(B, To, obs_dim) float32, or a ValueError naming the shape that came instead."""
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 3 or obs.shape[1:] != (spec.obs_horizon, spec.obs_dim) or obs.shape[0] < 1:
        raise ValueError(
            f"{owner}.predict_chunk: obs has shape {obs.shape}, expected (B, {spec.obs_horizon}, {spec.obs_dim})"
        )
    return obs


def to_device(params: Any) -> Any:
    return jax.tree_util.tree_map(jnp.asarray, params)


# ------------------------------------------------------------------------------ loop


def fit(
    dataset: Any,
    normalizer: Normalizer,
    state: TrainingState,
    update_fn: UpdateFn,
    *,
    batch_size: int,
    steps: int,
    seed: int,
    key: jax.Array,
    on_progress: Optional[ProgressFn] = None,
    owner: str = "fit",
) -> tuple[TrainingState, list[dict]]:
    """`steps` updates on uniformly sampled, normalized dataset windows.

    Each step draws `batch_size` windows with `np.random.default_rng(seed)`,
    normalizes them and calls `update_fn(state, obs, actions, key)`; the
    update derives its per-step randomness from `key` and `state.step`.
    Every `max(1, steps // HISTORY_POINTS)` steps (and at the last) the
    metrics averaged over the steps since the previous entry are appended to
    the history as {"step", "loss", <other metrics>, "elapsed_s",
    "samples_per_s"}, logged, and passed to `on_progress(step, steps, entry)`.
    Metrics stay on the device between entries, so sampling the next batch
    overlaps with the running update.
    """
    check_steps(owner, steps)
    rng = np.random.default_rng(seed)
    log_every = max(1, steps // HISTORY_POINTS)
    history: list[dict] = []
    pending: list[Metrics] = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        obs, actions = dataset.sample(batch_size, rng)
        obs = normalizer.normalize_obs(obs).astype(np.float32, copy=False)
        actions = normalizer.normalize_action(actions).astype(np.float32, copy=False)
        state, metrics = update_fn(state, obs, actions, key)
        pending.append(metrics)
        if step % log_every == 0 or step == steps:
            values = jax.device_get(pending)
            entry: dict[str, Any] = {"step": step}
            for name in values[0]:
                entry[name] = float(np.mean([v[name] for v in values]))
            elapsed = time.perf_counter() - start
            entry["elapsed_s"] = elapsed
            entry["samples_per_s"] = step * batch_size / elapsed
            if not np.isfinite(entry["loss"]):
                raise FloatingPointError(f"{owner}: loss became {entry['loss']} at step {step}")
            history.append(entry)
            pending = []
            logger.info(
                "%s step %d/%d loss %.5g (%.0f samples/s)", owner, step, steps, entry["loss"], entry["samples_per_s"]
            )
            if on_progress is not None:
                on_progress(step, steps, entry)
    return state, history


# ------------------------------------------------------------------------------ BC


def make_optimizer(config: BCConfig) -> optax.GradientTransformation:
    """Adam with a constant step size (RP1M Table 5)."""
    return optax.adam(config.learning_rate, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)


def init_params(key: jax.Array, config: BCConfig, spec: PolicySpec) -> Any:
    obs = jnp.zeros((1, spec.obs_horizon, spec.obs_dim), jnp.float32)
    return make_network(config, spec.action_dim).init(key, obs)["params"]


@functools.partial(jax.jit, static_argnames=("config", "action_dim"))
def update(
    state: TrainingState,
    obs: jax.Array,
    actions: jax.Array,
    key: jax.Array,
    *,
    config: BCConfig,
    action_dim: int,
) -> tuple[TrainingState, Metrics]:
    """One Adam step on the MSE between predicted and expert (normalized) action chunks.

    obs (B, To, Do) and actions (B, Tp, Da) are normalized; `key` is unused
    (BC is deterministic) and kept for the shared `update_fn` signature.
    """
    del key
    apply_fn = make_network(config, action_dim).apply
    grads, metrics = jax.grad(losses.mse_loss, has_aux=True)(state.params, apply_fn, obs, actions)
    return apply_gradients(state, grads, make_optimizer(config)), metrics


@functools.partial(jax.jit, static_argnames=("config", "action_dim"))
def predict_normalized(params: Any, obs: jax.Array, *, config: BCConfig, action_dim: int) -> jax.Array:
    """Normalized obs windows (B, To, Do) -> normalized action chunks (B, Tp, Da)."""
    return make_network(config, action_dim).apply({"params": params}, obs)


class BCPolicy:
    """MLP behaviour cloning (RP1M B.1.1); implements `agents.common.policy.Policy`."""

    name: ClassVar[str] = "bc"

    def __init__(self, spec: PolicySpec, config: BCConfig, params: Any, normalizer: Normalizer):
        check_spec("BCPolicy", spec, config.spec_for(spec.obs_dim, spec.action_dim))
        self.spec = spec
        self.config = config
        self.params = to_device(params)
        self.normalizer = normalizer

    @classmethod
    def from_parts(cls, *, spec: PolicySpec, config: BCConfig, params: Any, normalizer: Normalizer) -> "BCPolicy":
        return cls(spec, config, params, normalizer)

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: BC has no memory between calls."""

    def predict_chunk(self, obs: np.ndarray, key: Optional[jax.Array] = None) -> np.ndarray:
        """(B, To, obs_dim) raw observations -> (B, Ta, action_dim) env-unit actions; `key` is unused."""
        obs = check_obs_window("BCPolicy", self.spec, obs)
        chunk = predict_normalized(
            self.params,
            self.normalizer.normalize_obs(obs),
            config=self.config,
            action_dim=self.spec.action_dim,
        )
        begin = self.spec.current_index
        chunk = np.asarray(chunk)[:, begin : begin + self.spec.action_horizon]
        return self.normalizer.unnormalize_action(chunk)


def train_bc(
    dataset: Any,
    config: BCConfig = BCConfig(),
    *,
    steps: int,
    seed: int,
    on_progress: Optional[ProgressFn] = None,
) -> tuple[BCPolicy, list[dict]]:
    """Fits a normalizer on `dataset` and trains a BC policy for `steps` gradient steps.

    `dataset` is a `tasks.reader.WindowDataset` built with
    `config.spec_for(...)`'s horizons. Returns the policy and the history
    (see `fit`).
    """
    spec = config.spec_for(int(dataset.obs_dim), int(dataset.action_dim))
    check_dataset("train_bc", dataset, spec)
    check_steps("train_bc", steps)
    normalizer = Normalizer.from_dataset(dataset, seed=seed)
    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))
    state = init_training_state(init_params(init_key, config, spec), make_optimizer(config))
    update_fn = functools.partial(update, config=config, action_dim=spec.action_dim)
    state, history = fit(
        dataset,
        normalizer,
        state,
        update_fn,
        batch_size=config.batch_size,
        steps=steps,
        seed=seed,
        key=loop_key,
        on_progress=on_progress,
        owner="train_bc",
    )
    return BCPolicy(spec, config, state.params, normalizer), history
