"""DroQ/SAC losses as pure functions. Every stochastic function takes an explicit key.

Shapes: B = batch size, A = action dim, Q = ensemble size. The critic apply
function maps (obs (B, D), actions (B, A), training) -> (Q, B); the actor apply
function maps obs (B, D) -> (mean (B, A), log_std (B, A)).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from agents.common.distributions import tanh_gaussian_sample
from agents.common.replay import Batch

Params = Any
ApplyFn = Callable[..., Any]


def soft_td_target(
    rewards: jax.Array,
    discounts: jax.Array,
    next_q: jax.Array,
    next_log_probs: jax.Array,
    temperature: jax.Array,
    discount: float,
    backup_entropy: bool,
) -> jax.Array:
    """Soft Bellman target y = r + gamma * d * (Q'(s', a') - alpha * log pi(a'|s')).

    Args:
      rewards, discounts: (B,) from the batch; `discounts` is the env's
        continuation flag (0 at terminal states).
      next_q: (B,) minimum over the (sub-sampled) target ensemble at (s', a').
      next_log_probs: (B,) log pi(a'|s') of the sampled next actions.
      temperature: scalar alpha.
      discount: gamma (RP1M Table 4: 0.88).
      backup_entropy: if False, the entropy term is dropped (y = r + gamma*d*Q').
    """
    soft_value = next_q - temperature * next_log_probs if backup_entropy else next_q
    return rewards + discount * discounts * soft_value


def subsampled_min(qs: jax.Array, key: jax.Array, num_min_qs: int | None) -> jax.Array:
    """Min over a random subset of `num_min_qs` ensemble members (REDQ); all if None.

    qs has the ensemble on axis 0, shape (Q, B); returns (B,).
    """
    num_qs = qs.shape[0]
    if num_min_qs is not None and num_min_qs < num_qs:
        members = jax.random.choice(key, num_qs, shape=(num_min_qs,), replace=False)
        qs = qs[members]
    return qs.min(axis=0)


def critic_target(
    actor_params: Params,
    actor_apply: ApplyFn,
    target_critic_params: Params,
    critic_apply: ApplyFn,
    temperature: jax.Array,
    batch: Batch,
    key: jax.Array,
    *,
    discount: float,
    backup_entropy: bool,
    num_min_qs: int | None,
) -> tuple[jax.Array, jax.Array]:
    """Computes the (gradient-stopped) TD target for a batch; returns (target, next_q).

    a' ~ pi(.|s') from the current actor; Q' from the target critic with
    dropout active, as DroQ (Hiraoka et al. 2022) and robopianist-rl do.
    """
    action_key, subset_key, dropout_key = jax.random.split(key, 3)
    mean, log_std = actor_apply({"params": actor_params}, batch.next_observations)
    next_actions, next_log_probs = tanh_gaussian_sample(action_key, mean, log_std)
    next_qs = critic_apply(
        {"params": target_critic_params},
        batch.next_observations,
        next_actions,
        True,
        rngs={"dropout": dropout_key},
    )
    next_q = subsampled_min(next_qs, subset_key, num_min_qs)
    target = soft_td_target(
        batch.rewards,
        batch.discounts,
        next_q,
        next_log_probs,
        temperature,
        discount,
        backup_entropy,
    )
    return jax.lax.stop_gradient(target), jax.lax.stop_gradient(next_q)


def critic_loss(
    critic_params: Params,
    critic_apply: ApplyFn,
    observations: jax.Array,
    actions: jax.Array,
    target_q: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean squared TD error over ensemble members and batch, dropout active."""
    qs = critic_apply(
        {"params": critic_params}, observations, actions, True, rngs={"dropout": key}
    )
    loss = jnp.mean((qs - target_q[None]) ** 2)
    return loss, {"critic_loss": loss, "q_mean": qs.mean()}


def actor_loss(
    actor_params: Params,
    actor_apply: ApplyFn,
    critic_params: Params,
    critic_apply: ApplyFn,
    temperature: jax.Array,
    observations: jax.Array,
    key: jax.Array,
    prior_weight: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SAC policy loss E[alpha * log pi(a|s) - mean_Q Q(s, a)], a ~ pi (reparametrised).

    Uses the ensemble mean (not min) with dropout active, as robopianist-rl and
    walk_in_the_park's DroQ.

    With `prior_weight` > 0 the loss becomes TD3+BC's form (Fujimoto & Gu
    2021) with the zero action as the behaviour to stay near:
    E[alpha * log pi - Q] / E|Q| + prior_weight * E[||tanh(mean)||^2]. Dividing
    by the (gradient-stopped) mean |Q| makes the weight independent of the
    reward's scale; for a residual policy the zero action is the nominal
    controller, so the penalty keeps the policy near it wherever the critic
    does not show a clear gain (the critic is only trained near it).
    """
    action_key, dropout_key = jax.random.split(key)
    mean, log_std = actor_apply({"params": actor_params}, observations)
    actions, log_probs = tanh_gaussian_sample(action_key, mean, log_std)
    qs = critic_apply(
        {"params": critic_params}, observations, actions, True, rngs={"dropout": dropout_key}
    )
    q = qs.mean(axis=0)
    loss = jnp.mean(temperature * log_probs - q)
    info = {"entropy": -log_probs.mean()}
    if prior_weight > 0:
        prior = jnp.mean(jnp.sum(jnp.tanh(mean) ** 2, axis=-1))
        loss = loss / (jax.lax.stop_gradient(jnp.abs(q).mean()) + 1e-6) + prior_weight * prior
        info["prior"] = prior
    return loss, {"actor_loss": loss, **info}


def temperature_loss(
    temperature_params: Params,
    temperature_apply: ApplyFn,
    entropy: jax.Array,
    target_entropy: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """alpha * (H - H_target): alpha grows when entropy falls below the target."""
    temperature = temperature_apply({"params": temperature_params})
    loss = temperature * (jax.lax.stop_gradient(entropy) - target_entropy)
    return loss, {"temperature": temperature, "temperature_loss": loss}
