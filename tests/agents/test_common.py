"""Pure math and building blocks in agents/common: distributions, action scaling, networks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from agents.common import actions as action_scaling
from agents.common import distributions as dist
from agents.common.networks import MLP, QEnsemble, TanhGaussianActor, activation_by_name

# --- tanh-Gaussian ---------------------------------------------------------


def _numeric_tanh_gaussian_logpdf(a: float, mean: float, std: float, h: float = 1e-6) -> float:
    """Reference density by change of variables with a finite-difference Jacobian."""
    u = math.atanh(a)
    du_da = (math.atanh(a + h) - math.atanh(a - h)) / (2 * h)
    return stats.norm.logpdf(u, loc=mean, scale=std) + math.log(du_da)


@pytest.mark.parametrize("a", [-0.95, -0.5, 0.0, 0.3, 0.9])
def test_tanh_gaussian_log_prob_matches_numeric_change_of_variables(a):
    mean, std = 0.3, 0.8
    got = dist.tanh_gaussian_log_prob(
        jnp.array([a]), jnp.array([mean]), jnp.array([math.log(std)])
    )
    assert float(got) == pytest.approx(_numeric_tanh_gaussian_logpdf(a, mean, std), abs=1e-4)


def test_tanh_gaussian_density_integrates_to_one():
    # Trapezoid rule on a fine grid; the density vanishes towards +-1 for this std.
    a = np.linspace(-1 + 1e-7, 1 - 1e-7, 200_001)
    log_density = dist.tanh_gaussian_log_prob(
        jnp.asarray(a[:, None], jnp.float32), jnp.array([-0.4]), jnp.array([math.log(0.6)])
    )
    assert np.trapz(np.exp(np.asarray(log_density, np.float64)), a) == pytest.approx(1.0, abs=1e-3)


def test_log_prob_sums_over_action_dimensions():
    mean = jnp.array([0.1, -0.2, 0.5])
    log_std = jnp.log(jnp.array([0.5, 1.0, 0.3]))
    a = jnp.array([0.2, -0.7, 0.4])
    joint = float(dist.tanh_gaussian_log_prob(a, mean, log_std))
    per_dim = sum(
        _numeric_tanh_gaussian_logpdf(float(a[i]), float(mean[i]), float(jnp.exp(log_std[i])))
        for i in range(3)
    )
    assert joint == pytest.approx(per_dim, abs=1e-4)


def test_sample_log_prob_agrees_with_log_prob_of_the_sample():
    mean = jnp.array([[0.2, -0.1], [0.0, 0.4]])
    log_std = jnp.array([[-1.0, -0.5], [-0.2, -2.0]])
    actions, log_probs = dist.tanh_gaussian_sample(jax.random.PRNGKey(3), mean, log_std)
    assert actions.shape == (2, 2) and log_probs.shape == (2,)
    np.testing.assert_allclose(
        log_probs, dist.tanh_gaussian_log_prob(actions, mean, log_std), rtol=1e-4, atol=1e-4
    )


def test_tanh_log_det_jacobian_is_stable_where_naive_formula_underflows():
    u = jnp.array([0.5, -2.0])
    naive = jnp.sum(jnp.log(1 - jnp.tanh(u) ** 2))
    assert float(dist.tanh_log_det_jacobian(u)) == pytest.approx(float(naive), rel=1e-5)
    # log(1 - tanh(20)^2) = log(4) - 40 + O(e^-40); naive float32 gives -inf.
    extreme = float(dist.tanh_log_det_jacobian(jnp.array([20.0])))
    assert extreme == pytest.approx(math.log(4) - 40, abs=1e-4)


def test_mode_is_tanh_of_mean():
    np.testing.assert_allclose(dist.tanh_gaussian_mode(jnp.array([0.0, 1.0])), [0.0, math.tanh(1.0)])


# --- action scaling --------------------------------------------------------


def test_to_env_action_hand_values_and_round_trip():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    env = action_scaling.to_env_action(np.array([[-1.0, 0.5], [1.0, -1.0]]), low, high)
    np.testing.assert_allclose(env, [[-2.0, 7.5], [2.0, 0.0]])
    np.testing.assert_allclose(
        action_scaling.from_env_action(env, low, high), [[-1.0, 0.5], [1.0, -1.0]]
    )


def test_action_scaling_rejects_degenerate_bounds_naming_the_dimension():
    with pytest.raises(ValueError, match="dimension 1 has low=1.0 high=1.0"):
        action_scaling.to_env_action(np.zeros(2), np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        action_scaling.to_env_action(np.zeros(1), np.array([-np.inf]), np.array([1.0]))


# --- networks --------------------------------------------------------------


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'swish2'.*gelu"):
        activation_by_name("swish2")


def test_mlp_dropout_only_in_training_mode():
    mlp = MLP((16, 16), dropout_rate=0.5, use_layer_norm=True, activate_final=True)
    x = jnp.ones((4, 3))
    params = mlp.init(jax.random.PRNGKey(0), x)
    assert "LayerNorm_0" in params["params"]
    eval_out = mlp.apply(params, x)
    np.testing.assert_array_equal(eval_out, mlp.apply(params, x))
    train_out = mlp.apply(params, x, True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(eval_out, train_out)


def test_q_ensemble_has_independent_members():
    critic = QEnsemble(num_qs=3, hidden_dims=(8,), dropout_rate=0.01, use_layer_norm=True)
    obs, act = jnp.ones((5, 4)), jnp.zeros((5, 2))
    params = critic.init(jax.random.PRNGKey(0), obs, act)
    leaves = jax.tree_util.tree_leaves(params)
    assert all(leaf.shape[0] == 3 for leaf in leaves)
    qs = critic.apply(params, obs, act)
    assert qs.shape == (3, 5)
    assert len({round(float(q), 6) for q in qs[:, 0]}) == 3


def test_actor_clips_log_std():
    actor = TanhGaussianActor((8,), action_dim=2, log_std_min=-1.0, log_std_max=0.5)
    obs = 100.0 * jnp.ones((3, 4))
    mean, log_std = actor.apply(actor.init(jax.random.PRNGKey(0), obs), obs)
    assert mean.shape == log_std.shape == (3, 2)
    assert float(log_std.min()) >= -1.0 and float(log_std.max()) <= 0.5
