"""Implicit BC (Florence et al. 2021; RP1M B.1.2): an energy model trained with InfoNCE,
acted with a derivative-free optimizer.

    policy, history = train_ibc(dataset, IBCConfig(), steps=..., seed=0)
    actions = policy.predict_chunk(obs_window, key)       # (B, Ta, action_dim), env units

All action math is in the normalized box [-1, 1]^d (the policy's
`Normalizer`), where the counter-examples and the optimizer's candidates are
drawn uniformly.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.common import supervised
from agents.common.policy import PolicySpec
from agents.ibc import losses
from agents.ibc.config import IBCConfig
from agents.ibc.networks import make_energy_network

EnergyFn = Callable[[jax.Array], jax.Array]  # candidates (B, N, D) -> energies (B, N)


def _resample_indices(key: jax.Array, logits: jax.Array) -> jax.Array:
    """N indices per row drawn with replacement from softmax(logits) (B, N): multinomial
    resampling by inverse CDF, O(N log N) per row where `jax.random.categorical` would
    draw N x N Gumbel variables."""
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    uniforms = jax.random.uniform(key, logits.shape) * cdf[:, -1:]
    indices = jax.vmap(functools.partial(jnp.searchsorted, side="right"))(cdf, uniforms)
    return jnp.minimum(indices, logits.shape[-1] - 1)


def iterative_dfo(
    energy_fn: EnergyFn,
    key: jax.Array,
    batch_size: int,
    dim: int,
    *,
    num_samples: int,
    num_iterations: int,
    noise_std: float,
    noise_shrink: float = 0.5,
    temperature: float = 1.0,
    low: float = -1.0,
    high: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """IBC's derivative-free optimizer: the lowest-energy point found per batch element.

    Draws `num_samples` candidates uniformly in [low, high]^dim per element,
    then evaluates the energy `num_iterations` times; after every evaluation
    but the last the candidates are resampled with replacement with
    probabilities softmax(-E / temperature), perturbed by Gaussian noise (std
    `noise_std`, multiplied by `noise_shrink` each iteration) and clipped to
    the box (google-research/ibc `iterative_dfo`). Returns the candidate of
    lowest energy at the last evaluation (the greedy choice) and its energy:
    shapes (B, dim) and (B,). Pure and traceable: `energy_fn` may be any jax
    function of candidates (B, N, dim) -> (B, N).
    """
    if num_iterations < 1 or num_samples < 1:
        raise ValueError(
            f"iterative_dfo: num_iterations={num_iterations} and num_samples={num_samples} must be >= 1"
        )
    init_key, loop_key = jax.random.split(key)
    samples = jax.random.uniform(init_key, (batch_size, num_samples, dim), minval=low, maxval=high)

    def refine(iteration, samples):
        select_key, noise_key = jax.random.split(jax.random.fold_in(loop_key, iteration))
        chosen = _resample_indices(select_key, -energy_fn(samples) / temperature)
        samples = jnp.take_along_axis(samples, chosen[..., None], axis=1)
        std = noise_std * noise_shrink**iteration
        return jnp.clip(samples + std * jax.random.normal(noise_key, samples.shape), low, high)

    # A loop rather than unrolled iterations: the energy network compiles once.
    samples = jax.lax.fori_loop(0, num_iterations - 1, refine, samples)
    energies = energy_fn(samples)
    best = jnp.argmin(energies, axis=-1)
    rows = jnp.arange(batch_size)
    return samples[rows, best], energies[rows, best]


def learning_rate_schedule(config: IBCConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0, then cosine decay to 0 at `total_steps` (RP1M Table 6 "cosine").

    The warm-up is cut short for runs shorter than `lr_warmup_steps`.
    """
    warmup = min(config.lr_warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=0.0,
    )


def make_optimizer(config: IBCConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW (RP1M Table 6) on `learning_rate_schedule`."""
    return optax.adamw(
        learning_rate_schedule(config, total_steps),
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )


def scored_size(config: IBCConfig, action_dim: int) -> int:
    return config.scored_steps()[1] * action_dim


def init_params(key: jax.Array, config: IBCConfig, spec: PolicySpec) -> Any:
    obs = jnp.zeros((1, spec.obs_horizon, spec.obs_dim), jnp.float32)
    candidates = jnp.zeros((1, 1, scored_size(config, spec.action_dim)), jnp.float32)
    return make_energy_network(config).init(key, obs, candidates)["params"]


@functools.partial(jax.jit, static_argnames=("config", "total_steps"))
def update(
    state: supervised.TrainingState,
    obs: jax.Array,
    actions: jax.Array,
    key: jax.Array,
    *,
    config: IBCConfig,
    total_steps: int,
) -> tuple[supervised.TrainingState, supervised.Metrics]:
    """One AdamW step on the InfoNCE loss.

    obs (B, To, Do) and actions (B, Tp, Da) are normalized; the scored steps
    of `actions` (see `IBCConfig.score_pred_horizon`) are the positives. The
    step's randomness is `fold_in(key, state.step)`.
    """
    first, count = config.scored_steps()
    positives = actions[:, first : first + count].reshape(actions.shape[0], -1)
    step_key = jax.random.fold_in(key, state.step)
    grads, metrics = jax.grad(losses.info_nce_loss, has_aux=True)(
        state.params,
        make_energy_network(config).apply,
        obs,
        positives,
        step_key,
        num_counter_examples=config.num_counter_examples,
        temperature=config.temperature,
    )
    optimizer = make_optimizer(config, total_steps)
    metrics["lr"] = learning_rate_schedule(config, total_steps)(state.step)
    return supervised.apply_gradients(state, grads, optimizer), metrics


@functools.partial(jax.jit, static_argnames=("config", "action_dim"))
def predict_normalized(
    params: Any, obs: jax.Array, key: jax.Array, *, config: IBCConfig, action_dim: int
) -> tuple[jax.Array, jax.Array]:
    """Normalized obs windows (B, To, Do) -> (scored actions (B, S, Da), their energies (B,)).

    S is `config.scored_steps()[1]`: Ta, or Tp with `score_pred_horizon`.
    """
    apply_fn = make_energy_network(config).apply
    batch_size = obs.shape[0]

    def energy_fn(candidates: jax.Array) -> jax.Array:
        return apply_fn({"params": params}, obs, candidates, training=False)

    best, energy = iterative_dfo(
        energy_fn,
        key,
        batch_size,
        scored_size(config, action_dim),
        num_samples=config.inference_samples,
        num_iterations=config.inference_iterations,
        noise_std=config.noise_std,
        noise_shrink=config.noise_shrink,
        temperature=config.temperature,
    )
    return best.reshape(batch_size, -1, action_dim), energy


class IBCPolicy(supervised.SupervisedPolicy):
    """Implicit BC; implements `agents.common.policy.Policy`. Stochastic: results depend on `key`."""

    name: ClassVar[str] = "ibc"

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: IBC has no memory between calls."""

    def predict_chunk(self, obs: np.ndarray, key: jax.Array) -> np.ndarray:
        """(B, To, obs_dim) raw observations -> (B, Ta, action_dim) env-unit actions (argmin of the DFO)."""
        obs = supervised.check_obs_window("IBCPolicy", self.spec, obs)
        scored, _ = predict_normalized(
            self.params,
            self.normalizer.normalize_obs(obs),
            key,
            config=self.config,
            action_dim=self.spec.action_dim,
        )
        scored = np.asarray(scored)
        if self.config.score_pred_horizon:
            begin = self.spec.current_index
            scored = scored[:, begin : begin + self.spec.action_horizon]
        return self.normalizer.unnormalize_action(scored)


def train_ibc(
    dataset: Any,
    config: IBCConfig = IBCConfig(),
    *,
    steps: int,
    seed: int,
    on_progress: Optional[supervised.ProgressFn] = None,
) -> tuple[IBCPolicy, list[dict]]:
    """Fits a normalizer on `dataset` and trains the energy model for `steps` InfoNCE steps.

    `dataset` is a `tasks.rlds.reader.WindowDataset` built with
    `config.spec_for(...)`'s horizons (To = Tp = 2, action offset -1 by
    default). History entries add "accuracy", "energy_expert",
    "energy_counter" and "lr" to the shared ones (see `agents.common.supervised.fit`).
    """
    spec, normalizer, params, history = supervised.train_supervised(
        "train_ibc",
        dataset,
        config,
        steps=steps,
        seed=seed,
        init_params=init_params,
        optimizer=make_optimizer(config, steps),
        make_update=lambda spec: functools.partial(update, config=config, total_steps=int(steps)),
        on_progress=on_progress,
    )
    return IBCPolicy(spec, config, params, normalizer), history
