"""DroQ agent (Hiraoka et al. 2022) as an immutable pytree plus module-level pure functions.

    state = init(key, obs_dim, action_dim, config)
    actions = sample_actions(state, observations, key)     # stochastic, in [-1, 1]
    state, metrics = update(state, batch)                  # jitted gradient step(s)
    actions = eval_actions(state, observations)            # deterministic tanh(mean)

One update = critic step (soft TD target from the EMA target critic), actor
step against the freshly updated critic, temperature step, target EMA; the
order of robopianist-rl's `SAC.update`.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from agents.common.distributions import tanh_gaussian_mode, tanh_gaussian_sample
from agents.common.replay import Batch
from agents.droq import losses
from agents.droq.config import DroQConfig
from agents.droq.networks import make_actor, make_critic, make_temperature

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class DroQState:
    """Everything that changes during training; checkpoint this whole pytree.

    `config`, `obs_dim` and `action_dim` are static (not leaves): they select
    the compiled program and are not saved in checkpoints.
    """

    actor: TrainState
    critic: TrainState
    target_critic: TrainState  # params only; its optimizer is a no-op.
    temperature: TrainState
    rng: jax.Array  # consumed by `update` (dropout, action sampling, REDQ subsets).
    config: DroQConfig = flax.struct.field(pytree_node=False)
    obs_dim: int = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)

    @property
    def target_entropy(self) -> float:
        return self.config.resolved_target_entropy(self.action_dim)


# Optimizers are static fields of the state too (TrainState.tx); memoised for
# the same reason as the networks (see agents/droq/networks.py).
@functools.lru_cache(maxsize=None)
def _adam(learning_rate, b1, b2, eps) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@functools.lru_cache(maxsize=None)
def _no_op_optimizer() -> optax.GradientTransformation:
    return optax.identity()


def init(
    key: jax.Array, obs_dim: int, action_dim: int, config: DroQConfig = DroQConfig()
) -> DroQState:
    """Creates networks, optimizers and the update rng for the given sizes."""
    for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"droq.init: {name} must be a positive int, got {value!r}")
    rng, actor_key, critic_key, temperature_key = jax.random.split(key, 4)
    observations = jnp.zeros((1, obs_dim), jnp.float32)
    actions = jnp.zeros((1, action_dim), jnp.float32)
    adam = functools.partial(
        _adam, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps
    )

    actor_def = make_actor(config, action_dim)
    actor = TrainState.create(
        apply_fn=actor_def.apply,
        params=actor_def.init(actor_key, observations)["params"],
        tx=adam(config.actor_lr),
    )
    critic_def = make_critic(config)
    critic_params = critic_def.init(critic_key, observations, actions)["params"]
    critic = TrainState.create(
        apply_fn=critic_def.apply, params=critic_params, tx=adam(config.critic_lr)
    )
    target_critic = TrainState.create(
        apply_fn=critic_def.apply, params=critic_params, tx=_no_op_optimizer()
    )
    temperature_def = make_temperature(config)
    temperature = TrainState.create(
        apply_fn=temperature_def.apply,
        params=temperature_def.init(temperature_key)["params"],
        tx=adam(config.temp_lr),
    )
    # TrainState.create starts `step` as a Python int; an int32 array instead keeps
    # the leaf type of the state fixed across updates, so `update` compiles once.
    actor, critic, target_critic, temperature = (
        train_state.replace(step=jnp.zeros((), jnp.int32))
        for train_state in (actor, critic, target_critic, temperature)
    )
    return DroQState(
        actor=actor,
        critic=critic,
        target_critic=target_critic,
        temperature=temperature,
        rng=rng,
        config=config,
        obs_dim=obs_dim,
        action_dim=action_dim,
    )


def zero_mean_head(state: DroQState, std: float | None = None) -> DroQState:
    """The state with the actor's mean layer zeroed: the policy's mode is 0 for
    every observation until the first actor update moves it. With `std`, the
    log-std layer is also set to output log(std) everywhere, so the policy
    starts as tanh(N(0, std^2)) noise around 0.

    For residual policies, whose 0 is the nominal controller: training starts
    from the nominal's behaviour instead of a random offset from it, the usual
    initialisation of residual RL (Silver et al. 2018, "Residual policy
    learning": last layer initialised to zero). Adam's moments are zero at
    init, so only the parameters change.
    """
    params = {**state.actor.params, "mean": jax.tree_util.tree_map(jnp.zeros_like, state.actor.params["mean"])}
    if std is not None:
        if not std > 0:
            raise ValueError(f"zero_mean_head: std must be > 0, got {std!r}")
        head = state.actor.params["log_std"]
        params["log_std"] = {"kernel": jnp.zeros_like(head["kernel"]),
                             "bias": jnp.full_like(head["bias"], float(np.log(std)))}
    return state.replace(actor=state.actor.replace(params=params))


def current_temperature(state: DroQState) -> jax.Array:
    """alpha as a scalar array."""
    return state.temperature.apply_fn({"params": state.temperature.params})


def update_critic(state: DroQState, batch: Batch, key: jax.Array) -> tuple[DroQState, Metrics]:
    """One critic gradient step followed by the target-critic EMA (rate `tau`)."""
    config = state.config
    target_key, dropout_key = jax.random.split(key)
    target_q, _ = losses.critic_target(
        state.actor.params,
        state.actor.apply_fn,
        state.target_critic.params,
        state.critic.apply_fn,
        current_temperature(state),
        batch,
        target_key,
        discount=config.discount,
        backup_entropy=config.backup_entropy,
        num_min_qs=config.num_min_qs,
    )
    grads, info = jax.grad(losses.critic_loss, has_aux=True)(
        state.critic.params,
        state.critic.apply_fn,
        batch.observations,
        batch.actions,
        target_q,
        dropout_key,
    )
    critic = state.critic.apply_gradients(grads=grads)
    target_params = optax.incremental_update(
        critic.params, state.target_critic.params, config.tau
    )
    target_critic = state.target_critic.replace(params=target_params)
    info["target_q_mean"] = target_q.mean()
    return state.replace(critic=critic, target_critic=target_critic), info


def update_actor(state: DroQState, batch: Batch, key: jax.Array) -> tuple[DroQState, Metrics]:
    """One actor gradient step against the current critic and temperature."""
    grads, info = jax.grad(losses.actor_loss, has_aux=True)(
        state.actor.params,
        state.actor.apply_fn,
        state.critic.params,
        state.critic.apply_fn,
        current_temperature(state),
        batch.observations,
        key,
        prior_weight=state.config.actor_prior_weight,
    )
    return state.replace(actor=state.actor.apply_gradients(grads=grads)), info


def update_temperature(state: DroQState, entropy: jax.Array) -> tuple[DroQState, Metrics]:
    """One temperature step towards `state.target_entropy`."""
    grads, info = jax.grad(losses.temperature_loss, has_aux=True)(
        state.temperature.params,
        state.temperature.apply_fn,
        entropy,
        state.target_entropy,
    )
    return state.replace(temperature=state.temperature.apply_gradients(grads=grads)), info


def update_step(state: DroQState, batch: Batch, train_actor: bool = True) -> tuple[DroQState, Metrics]:
    """A single (unjitted) DroQ update on a batch with leading shape (B,).

    With `train_actor` False only the critic (and its target) learn: a critic
    burn-in that evaluates the current, fixed policy.
    """
    rng, critic_key, actor_key = jax.random.split(state.rng, 3)
    state, critic_info = update_critic(state, batch, critic_key)
    if not train_actor:
        return state.replace(rng=rng), critic_info
    state, actor_info = update_actor(state, batch, actor_key)
    state, temperature_info = update_temperature(state, actor_info["entropy"])
    return state.replace(rng=rng), {**critic_info, **actor_info, **temperature_info}


def _as_batch(batch: Batch | Mapping[str, Any]) -> Batch:
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, Mapping):
        return Batch(**batch)
    raise TypeError(f"batch must be a Batch or a mapping of its fields, got {type(batch)}")


@functools.partial(jax.jit, static_argnames="train_actor")
def _update(state: DroQState, batch: Batch, train_actor: bool = True) -> tuple[DroQState, Metrics]:
    step = functools.partial(update_step, train_actor=train_actor)
    if state.config.num_updates_per_call == 1:
        return step(state, batch)
    state, infos = jax.lax.scan(step, state, batch)
    return state, jax.tree_util.tree_map(jnp.mean, infos)


def update(state: DroQState, batch: Batch | Mapping[str, Any], *, train_actor: bool = True
           ) -> tuple[DroQState, Metrics]:
    """`config.num_updates_per_call` DroQ updates; returns the new state and metrics.

    `train_actor=False` updates only the critic and its target (the metrics
    are then critic_loss, q_mean, target_q_mean).

    With num_updates_per_call == 1 every batch field has leading shape (B,);
    with N > 1 it has (N, B) and the N updates run sequentially in `lax.scan`
    inside one compiled call (sample with `ReplayBuffer.sample(rng, B,
    num_batches=N)`). Metrics are scalars, averaged over the N updates:
    critic_loss, q_mean, target_q_mean, actor_loss, entropy, temperature,
    temperature_loss. The batch may also be a mapping with Batch's field names.
    """
    batch = _as_batch(batch)
    for name, size in (
        ("observations", state.obs_dim),
        ("next_observations", state.obs_dim),
        ("actions", state.action_dim),
    ):
        if np.shape(getattr(batch, name))[-1:] != (size,):
            raise ValueError(
                f"batch.{name} has shape {np.shape(getattr(batch, name))}; this agent "
                f"expects a last axis of {size}"
            )
    num_updates = state.config.num_updates_per_call
    if num_updates > 1:
        leading = {name: np.shape(value)[:1] for name, value in batch._asdict().items()}
        if any(shape != (num_updates,) for shape in leading.values()):
            raise ValueError(
                f"num_updates_per_call={num_updates} needs batch fields with leading axis "
                f"{num_updates}, got leading shapes {leading}"
            )
    return _update(state, batch, train_actor=bool(train_actor))


@functools.partial(jax.jit, static_argnames="apply_fn")
def _sample_actions(apply_fn, params, observations, key):
    mean, log_std = apply_fn({"params": params}, observations)
    actions, _ = tanh_gaussian_sample(key, mean, log_std)
    return actions


@functools.partial(jax.jit, static_argnames="apply_fn")
def _sample_actions_at(apply_fn, params, observations, key, step):
    return _sample_actions(apply_fn, params, observations, jax.random.fold_in(key, step))


@functools.partial(jax.jit, static_argnames="apply_fn")
def _eval_actions(apply_fn, params, observations):
    mean, _ = apply_fn({"params": params}, observations)
    return tanh_gaussian_mode(mean)


def sample_actions(state: DroQState, observations: jax.Array, key: jax.Array) -> jax.Array:
    """Stochastic actions in [-1, 1] for observations of shape (..., obs_dim).

    Works for a single observation (obs_dim,) or a batch (N, obs_dim) from
    parallel rollouts. Only the actor's params cross the jit boundary, which
    keeps per-call overhead low. Returns a jax.Array; use np.asarray for envs.
    """
    _check_observations(state, observations)
    return _sample_actions(state.actor.apply_fn, state.actor.params, observations, key)


def sample_actions_at(state: DroQState, observations: jax.Array, key: jax.Array, step: int) -> jax.Array:
    """`sample_actions(state, observations, jax.random.fold_in(key, step))` in one compiled call
    (the same actions: fold_in inside jit gives the same key), as the env loop needs per step."""
    _check_observations(state, observations)
    return _sample_actions_at(state.actor.apply_fn, state.actor.params, observations, key, np.uint32(step))


def eval_actions(state: DroQState, observations: jax.Array) -> jax.Array:
    """Deterministic actions tanh(mean) in [-1, 1], shape (..., action_dim)."""
    _check_observations(state, observations)
    return _eval_actions(state.actor.apply_fn, state.actor.params, observations)


def _check_observations(state: DroQState, observations) -> None:
    if np.shape(observations)[-1:] != (state.obs_dim,):
        raise ValueError(
            f"observations have shape {np.shape(observations)}; this agent expects "
            f"(..., {state.obs_dim})"
        )
