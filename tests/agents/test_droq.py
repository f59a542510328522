"""DroQ agent: config, hand-computed loss pieces, update mechanics, and learning a bandit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import droq
from agents.common.replay import Batch, ReplayBuffer
from agents.droq import losses
from tests.agents.helpers import (
    ACTION_DIM,
    BATCH_SIZE,
    OBS_DIM,
    SCAN_CONFIG,
    SMALL_CONFIG,
    random_batch,
)

# --- config ----------------------------------------------------------------


def test_defaults_are_rp1m_table_4():
    config = droq.DroQConfig()
    assert config.hidden_dims == (256, 256, 256)
    assert config.num_qs == 2
    assert config.activation == "gelu"
    assert config.critic_dropout_rate == 0.01
    assert config.critic_layer_norm is True
    assert config.discount == 0.88
    assert config.actor_lr == config.critic_lr == config.temp_lr == 3e-4
    assert (config.adam_b1, config.adam_b2, config.adam_eps) == (0.9, 0.999, 1e-8)
    assert config.batch_size == 256
    assert config.update_interval == 2
    assert config.warmup_steps == 5_000
    assert config.buffer_size == 1_000_000
    assert config.tau == 0.005  # robopianist-rl; Table 4 says 0.05, see DroQConfig.tau.
    assert config.resolved_target_entropy(39) == -19.5


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("discount", 1.5, r"discount must be in \(0.0, 1.0\], got 1.5"),
        ("tau", 0.0, r"tau must be in \(0.0, 1.0\], got 0.0"),
        ("critic_dropout_rate", 1.0, r"critic_dropout_rate must be in \[0, 1\), got 1.0"),
        ("hidden_dims", (256, 0), r"hidden_dims .* got \(256, 0\)"),
        ("num_min_qs", 3, r"num_min_qs must be <= num_qs=2, got 3"),
        ("activation", "gleu", r"activation must be one of .* got 'gleu'"),
        ("actor_lr", -1e-3, r"actor_lr must be a finite number > 0, got -0.001"),
        ("num_updates_per_call", 0, r"num_updates_per_call must be an int >= 1, got 0"),
        ("batch_size", 2.5, r"batch_size must be an int >= 1, got 2.5"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value, message):
    with pytest.raises(ValueError, match=message):
        droq.DroQConfig(**{field: value})


def test_config_accepts_list_hidden_dims_and_stays_hashable():
    config = droq.DroQConfig(hidden_dims=[32, 32])
    assert config.hidden_dims == (32, 32)
    hash(config)


# --- hand-computed loss pieces --------------------------------------------


def test_soft_td_target_hand_example():
    rewards = jnp.array([1.0, 0.5])
    discounts = jnp.array([1.0, 0.0])  # second transition is terminal
    next_q = jnp.array([2.0, 3.0])
    next_log_probs = jnp.array([-1.0, 4.0])
    with_entropy = losses.soft_td_target(
        rewards, discounts, next_q, next_log_probs, jnp.array(0.1), 0.88, True
    )
    # 1 + 0.88 * (2 - 0.1 * -1) = 2.848; terminal: reward only.
    np.testing.assert_allclose(with_entropy, [2.848, 0.5], rtol=1e-6)
    without = losses.soft_td_target(
        rewards, discounts, next_q, next_log_probs, jnp.array(0.1), 0.88, False
    )
    np.testing.assert_allclose(without, [1.0 + 0.88 * 2.0, 0.5], rtol=1e-6)


def test_subsampled_min_over_all_or_a_random_subset():
    qs = jnp.array([[1.0, 5.0], [3.0, 2.0], [0.0, 9.0], [4.0, 4.0]])
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(losses.subsampled_min(qs, key, None), [0.0, 2.0])
    np.testing.assert_array_equal(losses.subsampled_min(qs, key, 4), [0.0, 2.0])
    pair_mins = {
        tuple(np.minimum(qs[i], qs[j]).tolist()) for i in range(4) for j in range(4) if i != j
    }
    for seed in range(5):
        got = losses.subsampled_min(qs, jax.random.PRNGKey(seed), 2)
        assert tuple(np.asarray(got).tolist()) in pair_mins


def test_critic_target_with_stub_networks():
    """Deterministic stub actor (log_std -> -inf limit) and fixed Q values."""
    action_dim = 2

    def actor_apply(variables, obs):
        mean = jnp.zeros((obs.shape[0], action_dim))
        return mean, jnp.full_like(mean, -20.0)

    def critic_apply(variables, obs, actions, training, rngs):
        return jnp.stack([obs[:, 0] + 1.0, obs[:, 0] - 1.0])  # min is obs - 1

    batch = Batch(
        observations=jnp.zeros((2, 3)),
        actions=jnp.zeros((2, action_dim)),
        rewards=jnp.array([1.0, -1.0]),
        discounts=jnp.array([1.0, 1.0]),
        next_observations=jnp.array([[2.0, 0, 0], [5.0, 0, 0]]),
    )
    target, next_q = losses.critic_target(
        {}, actor_apply, {}, critic_apply, jnp.array(0.0), batch, jax.random.PRNGKey(0),
        discount=0.5, backup_entropy=True, num_min_qs=None,
    )
    np.testing.assert_allclose(next_q, [1.0, 4.0])
    # alpha = 0 removes the entropy term: r + 0.5 * min Q'.
    np.testing.assert_allclose(target, [1.5, 1.0])


@pytest.mark.parametrize("entropy, direction", [(5.0, -1), (-5.0, +1)])
def test_temperature_moves_towards_target_entropy(entropy, direction):
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    before = float(droq.current_temperature(state))
    state, info = droq.update_temperature(state, jnp.array(entropy))
    after = float(droq.current_temperature(state))
    assert np.sign(after - before) == direction
    # loss = alpha * (H - H_target), H_target = -ACTION_DIM / 2 = -1.
    assert float(info["temperature_loss"]) == pytest.approx(before * (entropy + 1.0), rel=1e-5)


# --- init and update mechanics ---------------------------------------------


def test_init_shapes_for_rp1m_sizes():
    # eval_shape traces init abstractly: RP1M sizes without allocating or compiling.
    state = jax.eval_shape(lambda key: droq.init(key, 1144, 39), jax.random.PRNGKey(0))
    assert state.actor.params["MLP_0"]["Dense_0"]["kernel"].shape == (1144, 256)  # Table 3/4
    assert state.actor.params["mean"]["kernel"].shape == (256, 39)
    members = state.critic.params["members"]
    assert members["MLP_0"]["Dense_0"]["kernel"].shape == (2, 1144 + 39, 256)
    assert members["Dense_0"]["kernel"].shape == (2, 256, 1)
    assert "LayerNorm_0" in members["MLP_0"]
    assert state.target_entropy == -19.5


def test_init_target_critic_equals_critic():
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    same = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.array_equal(a, b)), state.critic.params, state.target_critic.params
    )
    assert all(jax.tree_util.tree_leaves(same))


def test_single_update_moves_target_by_tau_and_reports_finite_metrics():
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    batch = random_batch(np.random.default_rng(0))
    new_state, metrics = droq.update(state, batch)
    assert set(metrics) == {
        "critic_loss", "q_mean", "target_q_mean", "actor_loss", "entropy",
        "temperature", "temperature_loss",
    }
    assert all(np.isfinite(float(v)) and np.shape(v) == () for v in metrics.values())
    assert int(new_state.critic.step) == int(new_state.actor.step) == 1
    tau = SMALL_CONFIG.tau
    expected = jax.tree_util.tree_map(
        lambda online, target: tau * online + (1 - tau) * target,
        new_state.critic.params,
        state.target_critic.params,
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        new_state.target_critic.params,
        expected,
    )
    assert not np.array_equal(new_state.rng, state.rng)


def test_update_accepts_a_mapping_batch():
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    batch = random_batch(np.random.default_rng(0))
    from_tuple, _ = droq.update(state, batch)
    from_dict, _ = droq.update(state, batch._asdict())
    np.testing.assert_array_equal(
        from_tuple.actor.params["mean"]["kernel"], from_dict.actor.params["mean"]["kernel"]
    )


def test_scan_path_equals_sequential_updates():
    rng = np.random.default_rng(1)
    batches = random_batch(rng, leading=(4, BATCH_SIZE))
    state = droq.init(jax.random.PRNGKey(2), OBS_DIM, ACTION_DIM, SCAN_CONFIG)
    scanned, metrics = droq.update(state, batches)
    assert int(scanned.critic.step) == 4
    assert all(np.shape(v) == () for v in metrics.values())

    sequential = state.replace(config=SMALL_CONFIG)  # same params, one update per call
    critic_losses = []
    for i in range(4):
        sequential, step_metrics = droq.update(
            sequential, jax.tree_util.tree_map(lambda x: x[i], batches)
        )
        critic_losses.append(float(step_metrics["critic_loss"]))
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        scanned.actor.params,
        sequential.actor.params,
    )
    assert float(metrics["critic_loss"]) == pytest.approx(np.mean(critic_losses), rel=1e-4)


def test_update_and_acting_reject_wrong_shapes_before_tracing():
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SCAN_CONFIG)
    with pytest.raises(ValueError, match="needs batch fields with leading axis 4"):
        droq.update(state, random_batch(np.random.default_rng(0), leading=(BATCH_SIZE,)))
    bad = random_batch(np.random.default_rng(0), leading=(4, BATCH_SIZE))
    bad = bad._replace(actions=np.zeros((4, BATCH_SIZE, ACTION_DIM + 1), np.float32))
    with pytest.raises(ValueError, match=r"batch.actions has shape \(4, 64, 3\); .* last axis of 2"):
        droq.update(state, bad)
    with pytest.raises(ValueError, match=r"expects \(\.\.\., 3\)"):
        droq.sample_actions(state, np.zeros((5, OBS_DIM + 1)), jax.random.PRNGKey(0))


def test_critic_loss_decreases_on_a_fixed_batch():
    batch = random_batch(np.random.default_rng(3))
    repeated = jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (4, *x.shape)), batch)
    state = droq.init(jax.random.PRNGKey(3), OBS_DIM, ACTION_DIM, SCAN_CONFIG)
    losses_per_call = []
    for _ in range(75):  # 300 gradient steps
        state, metrics = droq.update(state, repeated)
        losses_per_call.append(float(metrics["critic_loss"]))
    assert np.mean(losses_per_call[-5:]) < 0.25 * np.mean(losses_per_call[:5])


# --- acting ------------------------------------------------------------------


def test_sample_and_eval_actions_for_single_and_batched_observations():
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    obs = np.random.default_rng(0).normal(size=(32, OBS_DIM)).astype(np.float32)
    key = jax.random.PRNGKey(5)
    for batch_obs in (obs[:1], obs):
        actions = droq.sample_actions(state, batch_obs, key)
        assert actions.shape == (len(batch_obs), ACTION_DIM)
        assert float(jnp.abs(actions).max()) <= 1.0
    assert droq.sample_actions(state, obs[0], key).shape == (ACTION_DIM,)
    np.testing.assert_array_equal(
        droq.sample_actions(state, obs, key), droq.sample_actions(state, obs, key)
    )
    assert not np.allclose(
        droq.sample_actions(state, obs, key), droq.sample_actions(state, obs, jax.random.PRNGKey(6))
    )
    mean, _ = state.actor.apply_fn({"params": state.actor.params}, obs)
    np.testing.assert_allclose(droq.eval_actions(state, obs), jnp.tanh(mean), rtol=1e-6)
    for step in (0, 7, 2**31 + 3):  # the env loop's one call per step: the key folded in inside jit
        np.testing.assert_array_equal(droq.sample_actions_at(state, obs[0], key, step),
                                      droq.sample_actions(state, obs[0], jax.random.fold_in(key, step)))


def test_zero_mean_head_makes_the_mode_zero_and_still_learns():
    state = droq.zero_mean_head(droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG))
    obs = np.random.default_rng(0).normal(size=(16, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(droq.eval_actions(state, obs), np.zeros((16, ACTION_DIM)))
    # the spread is untouched: sampled actions still explore
    assert float(jnp.abs(droq.sample_actions(state, obs, jax.random.PRNGKey(1))).max()) > 0.05
    # same pytree as a fresh state (checkpoint templates and jit caches keep working)
    fresh = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(fresh)
    updated, _ = droq.update(state, random_batch(np.random.default_rng(1)))
    assert np.abs(np.asarray(droq.eval_actions(updated, obs))).max() > 0


def test_zero_mean_head_with_std_and_critic_only_updates():
    state = droq.zero_mean_head(droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG), std=0.1)
    obs = np.random.default_rng(0).normal(size=(4096, OBS_DIM)).astype(np.float32)
    _, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
    np.testing.assert_allclose(log_std, np.log(0.1), rtol=1e-6)
    samples = np.asarray(droq.sample_actions(state, obs, jax.random.PRNGKey(2)))
    assert abs(samples.std() - 0.1) < 0.005  # tanh(N(0, 0.01)) is nearly N(0, 0.01)
    with pytest.raises(ValueError, match="std"):
        droq.zero_mean_head(state, std=0.0)
    # burn-in: the critic moves, the actor and temperature stay
    critic_only, metrics = droq.update(state, random_batch(np.random.default_rng(1)), train_actor=False)
    assert set(metrics) == {"critic_loss", "q_mean", "target_q_mean"}
    for a, b in zip(jax.tree_util.tree_leaves(critic_only.actor.params), jax.tree_util.tree_leaves(state.actor.params)):
        np.testing.assert_array_equal(a, b)
    assert float(droq.current_temperature(critic_only)) == float(droq.current_temperature(state))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(critic_only.critic.params),
                                                         jax.tree_util.tree_leaves(state.critic.params)))


# --- learning ----------------------------------------------------------------

_BANDIT_W = np.array([[0.8, -0.4, 0.2], [0.1, 0.5, -0.7]], np.float32)


def _best_action(obs):
    return 0.8 * np.tanh(obs @ _BANDIT_W.T)


def _bandit_reward(obs, actions):
    return -np.sum((actions - _best_action(obs)) ** 2, axis=-1)


def _train_bandit(config, iterations=100, reward_offset=0.0):
    """DroQ on the bandit (reward + `reward_offset`): 16 parallel "envs" per
    iteration, 4 gradient steps per iteration (scan path); returns (state,
    last metrics, rng)."""
    rng = np.random.default_rng(0)
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, config)
    buffer = ReplayBuffer(OBS_DIM, ACTION_DIM, capacity=10_000)
    obs = rng.uniform(-1, 1, (256, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-1, 1, (256, ACTION_DIM)).astype(np.float32)  # warm-up
    buffer.insert_many(obs, actions, reward_offset + _bandit_reward(obs, actions), np.zeros(256), obs)
    key = jax.random.PRNGKey(1)
    for _ in range(iterations):
        key, act_key = jax.random.split(key)
        obs = rng.uniform(-1, 1, (16, OBS_DIM)).astype(np.float32)
        actions = np.asarray(droq.sample_actions(state, obs, act_key))
        buffer.insert_many(obs, actions, reward_offset + _bandit_reward(obs, actions), np.zeros(16), obs)
        state, metrics = droq.update(state, buffer.sample(rng, BATCH_SIZE, num_batches=4))
    return state, metrics, rng


def test_learns_a_contextual_bandit():
    """One-step task: reward -||a - a*(s)||^2, a*(s) = 0.8 tanh(W s); every step terminal.

    100 iterations = 400 updates on 1,856 transitions.
    """
    state, metrics, rng = _train_bandit(SCAN_CONFIG)
    test_obs = rng.uniform(-1, 1, (512, OBS_DIM)).astype(np.float32)
    error = np.abs(np.asarray(droq.eval_actions(state, test_obs)) - _best_action(test_obs))
    zero_action_error = np.abs(_best_action(test_obs)).mean()  # ~0.3
    assert error.mean() < 0.08, (error.mean(), zero_action_error)
    assert error.mean() < 0.25 * zero_action_error
    assert float(metrics["critic_loss"]) < 0.05


def test_actor_prior_loss_hand_example():
    """TD3+BC form: E[alpha log pi - Q] / E|Q| + w * E||tanh(mean)||^2, with stub networks."""
    mean = jnp.array([[0.5, -1.0], [0.0, 2.0]])

    def actor_apply(variables, observations):
        return mean, jnp.full_like(mean, -30.0)  # std ~ 1e-13: the sample is tanh(mean)

    def critic_apply(variables, observations, actions, training, rngs=None):
        q = jnp.array([4.0, -2.0])
        return jnp.stack([q, q])  # two identical members

    args = (None, actor_apply, None, critic_apply, jnp.asarray(0.0), jnp.zeros((2, 3)), jax.random.PRNGKey(0))
    plain, plain_info = losses.actor_loss(*args)
    assert float(plain) == pytest.approx(-1.0)  # mean of -Q
    assert "prior" not in plain_info
    weighted, info = losses.actor_loss(*args, prior_weight=0.5)
    prior = np.mean(np.sum(np.tanh(np.asarray(mean)) ** 2, axis=-1))
    assert float(info["prior"]) == pytest.approx(prior, rel=1e-5)
    assert float(weighted) == pytest.approx(-1.0 / 3.0 + 0.5 * prior, rel=1e-5)  # E|Q| = 3


def test_actor_prior_keeps_actions_near_zero():
    """The bandit with reward 1 - ||a - a*(s)||^2 (so E|Q| ~ 1) and a prior of
    weight 3: the minimiser of -Q/E|Q| + 3 ||a||^2 is about a*/4, so the
    policy still moves towards a*(s) but stays much closer to zero."""
    state, _, rng = _train_bandit(dataclasses.replace(SCAN_CONFIG, actor_prior_weight=3.0), reward_offset=1.0)
    test_obs = rng.uniform(-1, 1, (512, OBS_DIM)).astype(np.float32)
    actions, best = np.asarray(droq.eval_actions(state, test_obs)), _best_action(test_obs)
    assert np.abs(actions).mean() < 0.5 * np.abs(best).mean(), (np.abs(actions).mean(), np.abs(best).mean())
    assert np.corrcoef(actions.ravel(), best.ravel())[0, 1] > 0.5
    with pytest.raises(ValueError, match="actor_prior_weight"):
        droq.DroQConfig(actor_prior_weight=-1.0)
