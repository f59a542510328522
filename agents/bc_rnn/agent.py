"""BC-RNN (robomimic; RP1M B.1.3): an LSTM policy trained on observation sequences.

    policy, history = train_bc_rnn(dataset, BCRNNConfig(), steps=..., seed=0)
    policy.reset(n_envs)
    actions = policy.predict_chunk(obs_window, key)      # (B, 1, action_dim), env units

Training runs the LSTM from a zero state over `seq_length` steps and fits
every step's action. At evaluation each `predict_chunk` call advances the
LSTM by one step on the window's last observation, carrying the state of
every batch element; the state restarts from zeros every `rnn_horizon` calls
and at `reset` (robomimic `BC_RNN.get_action`).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.bc_rnn import losses
from agents.bc_rnn.config import BCRNNConfig
from agents.bc_rnn.networks import Carry, make_network, zero_carry
from agents.common import supervised
from agents.common.policy import Normalizer, PolicySpec


def learning_rate_schedule(config: BCRNNConfig, total_steps: int) -> optax.Schedule:
    """Linear from `learning_rate` to `learning_rate * lr_final_factor` over `total_steps` (RP1M Table 7)."""
    return optax.linear_schedule(
        init_value=config.learning_rate,
        end_value=config.learning_rate * config.lr_final_factor,
        transition_steps=max(total_steps, 1),
    )


def make_optimizer(config: BCRNNConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW (RP1M Table 7) on `learning_rate_schedule`."""
    return optax.adamw(
        learning_rate_schedule(config, total_steps),
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )


def init_params(key: jax.Array, config: BCRNNConfig, spec: PolicySpec) -> Any:
    obs = jnp.zeros((1, config.seq_length, spec.obs_dim), jnp.float32)
    return make_network(config, spec.action_dim).init(key, zero_carry(config, 1), obs)["params"]


@functools.partial(jax.jit, static_argnames=("config", "action_dim", "total_steps"))
def update(
    state: supervised.TrainingState,
    obs: jax.Array,
    actions: jax.Array,
    key: jax.Array,
    *,
    config: BCRNNConfig,
    action_dim: int,
    total_steps: int,
) -> tuple[supervised.TrainingState, supervised.Metrics]:
    """One AdamW step on the L2 loss over all steps of normalized sequences obs (B, T, Do), actions (B, T, Da).

    `key` is unused (no dropout, deterministic head); kept for the shared signature.
    """
    del key
    apply_fn = make_network(config, action_dim).apply
    carry = zero_carry(config, obs.shape[0])
    grads, metrics = jax.grad(losses.sequence_mse_loss, has_aux=True)(state.params, apply_fn, carry, obs, actions)
    metrics["lr"] = learning_rate_schedule(config, total_steps)(state.step)
    return supervised.apply_gradients(state, grads, make_optimizer(config, total_steps)), metrics


@functools.partial(jax.jit, static_argnames=("config", "action_dim"))
def step_normalized(
    params: Any, carry: Carry, obs: jax.Array, *, config: BCRNNConfig, action_dim: int
) -> tuple[Carry, jax.Array]:
    """One LSTM step: normalized obs (B, Do) -> (next carry, normalized action (B, Da))."""
    carry, actions = make_network(config, action_dim).apply({"params": params}, carry, obs[:, None, :])
    return carry, actions[:, 0]


class BCRNNPolicy(supervised.SupervisedPolicy):
    """Recurrent BC; implements `agents.common.policy.Policy`. Stateful: call `reset` per episode."""

    name: ClassVar[str] = "bc_rnn"

    def __init__(self, spec: PolicySpec, config: BCRNNConfig, params: Any, normalizer: Normalizer):
        super().__init__(spec, config, params, normalizer)
        self._carry: Optional[Carry] = None
        self._batch_size: Optional[int] = None
        self._calls = 0  # predict_chunk calls since the last reset

    def reset(self, batch_size: int) -> None:
        """Zero LSTM state for `batch_size` parallel episodes; the rnn_horizon count restarts."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"BCRNNPolicy.reset: batch_size must be a positive int, got {batch_size!r}")
        self._batch_size = int(batch_size)
        self._carry = zero_carry(self.config, self._batch_size)
        self._calls = 0

    def predict_chunk(self, obs: np.ndarray, key: Optional[jax.Array] = None) -> np.ndarray:
        """(B, To, obs_dim) raw windows -> (B, 1, action_dim) env-unit actions; `key` is unused.

        Only the last observation of each window is read; the LSTM state
        carries the history. Without a prior `reset` the first call resets
        for its batch size; a different batch size afterwards is an error.
        """
        obs = supervised.check_obs_window("BCRNNPolicy", self.spec, obs)
        if self._carry is None:
            self.reset(obs.shape[0])
        elif obs.shape[0] != self._batch_size:
            raise ValueError(
                f"BCRNNPolicy.predict_chunk: batch of {obs.shape[0]} windows, but the state holds "
                f"{self._batch_size} episodes; call reset({obs.shape[0]}) first"
            )
        if self._calls % self.config.rnn_horizon == 0:
            self._carry = zero_carry(self.config, self._batch_size)
        self._carry, actions = step_normalized(
            self.params,
            self._carry,
            self.normalizer.normalize_obs(obs[:, -1]),
            config=self.config,
            action_dim=self.spec.action_dim,
        )
        self._calls += 1
        return self.normalizer.unnormalize_action(np.asarray(actions)[:, None, :])


def train_bc_rnn(
    dataset: Any,
    config: BCRNNConfig = BCRNNConfig(),
    *,
    steps: int,
    seed: int,
    on_progress: Optional[supervised.ProgressFn] = None,
) -> tuple[BCRNNPolicy, list[dict]]:
    """Fits a normalizer on `dataset` and trains the LSTM policy for `steps` gradient steps.

    `dataset` is a `tasks.rlds.reader.WindowDataset` built with
    `config.spec_for(...)`'s horizons (seq_length observations and the
    actions at them). History entries add "last_step_loss" and "lr".
    """
    spec, normalizer, params, history = supervised.train_supervised(
        "train_bc_rnn",
        dataset,
        config,
        steps=steps,
        seed=seed,
        init_params=init_params,
        optimizer=make_optimizer(config, steps),
        make_update=lambda spec: functools.partial(update, config=config, action_dim=spec.action_dim, total_steps=int(steps)),
        on_progress=on_progress,
    )
    return BCRNNPolicy(spec, config, params, normalizer), history
