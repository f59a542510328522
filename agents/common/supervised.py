"""The supervised training loop and policy base shared by BC, IBC and BC-RNN.

`train_supervised` fits the normalizer, builds the `TrainingState` pytree and
runs `fit`, the sampling / normalizing / logging loop; the algorithm lives in
the jitted `update_fn` each policy gives it. `SupervisedPolicy` holds what
every trained policy keeps (spec, config, params, normalizer) and checks that
the spec matches the config.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, ClassVar, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

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


# ------------------------------------------------------------------------------ training


def train_supervised(
    owner: str,
    dataset: Any,
    config: Any,
    *,
    steps: int,
    seed: int,
    init_params: Callable[[jax.Array, Any, PolicySpec], Any],
    optimizer: optax.GradientTransformation,
    make_update: Callable[[PolicySpec], UpdateFn],
    on_progress: Optional[ProgressFn] = None,
) -> tuple[PolicySpec, Normalizer, Any, list[dict]]:
    """Fits a normalizer on `dataset`, initializes the parameters and trains them for `steps` steps.

    `dataset` is a `tasks.rlds.reader.WindowDataset` built with
    `config.spec_for(...)`'s horizons. Returns (spec, normalizer, params,
    history); see `fit` for the history.
    """
    spec = config.spec_for(int(dataset.obs_dim), int(dataset.action_dim))
    check_dataset(owner, dataset, spec)
    check_steps(owner, steps)
    normalizer = Normalizer.from_dataset(dataset, seed=seed)
    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))
    state = init_training_state(init_params(init_key, config, spec), optimizer)
    state, history = fit(
        dataset,
        normalizer,
        state,
        make_update(spec),
        batch_size=config.batch_size,
        steps=steps,
        seed=seed,
        key=loop_key,
        on_progress=on_progress,
        owner=owner,
    )
    return spec, normalizer, state.params, history


class SupervisedPolicy:
    """Spec, config, parameters and normalizer of a trained policy (`agents.common.policy.Policy`)."""

    name: ClassVar[str]

    def __init__(self, spec: PolicySpec, config: Any, params: Any, normalizer: Normalizer):
        check_spec(type(self).__name__, spec, config.spec_for(spec.obs_dim, spec.action_dim))
        self.spec = spec
        self.config = config
        self.params = to_device(params)
        self.normalizer = normalizer

    @classmethod
    def from_parts(cls, *, spec: PolicySpec, config: Any, params: Any, normalizer: Normalizer):
        return cls(spec, config, params, normalizer)
