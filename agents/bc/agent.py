"""BC policy (RP1M B.1.1): train and predict.

    spec = config.spec_for(obs_dim, action_dim)
    dataset = WindowDataset(songs, spec.obs_horizon, spec.pred_horizon, action_offset=spec.action_offset)
    policy, history = train_bc(dataset, config, steps=1000, seed=0)
    actions = policy.predict_chunk(obs_window, key)          # (B, Ta, action_dim), env units

The training state is a pytree (`agents.common.supervised.TrainingState`);
`update` is a module-level jitted function with the config as a static
argument, run by the shared loop `agents.common.supervised.fit`.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.bc import losses
from agents.bc.config import BCConfig
from agents.bc.networks import make_network
from agents.common.policy import PolicySpec
from agents.common.supervised import (
    Metrics,
    ProgressFn,
    SupervisedPolicy,
    TrainingState,
    apply_gradients,
    check_obs_window,
    train_supervised,
)

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


class BCPolicy(SupervisedPolicy):
    """MLP behaviour cloning (RP1M B.1.1); implements `agents.common.policy.Policy`."""

    name: ClassVar[str] = "bc"

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

    `dataset` is a `tasks.rlds.reader.WindowDataset` built with
    `config.spec_for(...)`'s horizons. Returns the policy and the history
    (see `agents.common.supervised.fit`).
    """
    spec, normalizer, params, history = train_supervised(
        "train_bc",
        dataset,
        config,
        steps=steps,
        seed=seed,
        init_params=init_params,
        optimizer=make_optimizer(config),
        make_update=lambda spec: functools.partial(update, config=config, action_dim=spec.action_dim),
        on_progress=on_progress,
    )
    return BCPolicy(spec, config, params, normalizer), history
