"""The flow-matching policy: it fits the Diffusion Policy's toy task, the Euler sampler follows a
known velocity field, save/load, registry, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.common.io import load_policy, save_policy
from agents.common.policy import get_policy
from agents.flow_matching import FlowMatchingConfig, FlowMatchingPolicy, train
from agents.flow_matching.losses import flow_matching_loss, sample_times
from tests.agents.test_diffusion import toy_episodes, windows

# The diffusion tests' small U-Net and fast step size (one level, 10 Euler steps).
FIT_CONFIG = FlowMatchingConfig(down_dims=(64,), kernel_size=3, diffusion_step_embed_dim=32, learning_rate=1e-2,
                                warmup_steps=10, batch_size=256, ema_max_decay=0.9)
FIT_STEPS = 200


@pytest.fixture(scope="module")
def dataset():
    return windows(FIT_CONFIG, toy_episodes(np.random.default_rng(0)))


@pytest.fixture(scope="module")
def trained(dataset):
    return train(dataset, FIT_CONFIG, steps=FIT_STEPS, seed=0)


def test_fits_a_tiny_dataset(dataset, trained):
    policy, history = trained
    assert isinstance(policy, FlowMatchingPolicy) and get_policy("flow_matching")[0] is FlowMatchingPolicy
    first, last = history[0]["loss"], history[-1]["loss"]
    # Stated factor: the velocity loss falls at least 5x.
    assert last < first / 5, (first, last)
    obs, actions = dataset.get_batch(np.arange(len(dataset)))
    predicted = policy.predict_chunk(obs, jax.random.PRNGKey(1))
    assert predicted.shape == (len(obs), 1, 3) and predicted.dtype == np.float32
    target = actions[:, policy.spec.current_index]
    # Actions close to the targets on the training inputs: mean error below 0.1 (they span [-1, 1]).
    assert np.abs(predicted[:, 0] - target).mean() < 0.1, np.abs(predicted[:, 0] - target).mean()


def test_save_and_load_predict_the_same(dataset, trained, tmp_path):
    policy, _ = trained
    save_policy(policy, tmp_path / "fm")
    loaded = load_policy(tmp_path / "fm")
    assert isinstance(loaded, FlowMatchingPolicy) and loaded.config == policy.config
    obs, _ = dataset.get_batch(np.arange(6))
    key = jax.random.PRNGKey(4)
    np.testing.assert_allclose(loaded.predict_chunk(obs, key), policy.predict_chunk(obs, key), atol=1e-6)


def test_loss_is_zero_for_the_exact_velocity():
    """On the linear path x_t = (1 - t) x0 + t x1 the target velocity is x1 - x0: a 'network' that
    returns it (it knows x1 and recovers x0 from x_t and t) has loss 0; one that returns 0 has
    loss E|x1 - x0|^2 = |x1|^2 + 1."""
    actions = jnp.full((512, 4, 2), 0.5)

    def exact(_, x_t, t_scaled, __):
        t = (t_scaled / 100.0)[:, None, None]
        return (actions - x_t) / (1.0 - t)  # = x1 - x0

    key = jax.random.PRNGKey(0)
    loss, _ = flow_matching_loss(None, exact, None, actions, key, time_scale=100.0, sampling="uniform")
    assert float(loss) < 1e-6
    zero, _ = flow_matching_loss(None, lambda *a: jnp.zeros_like(actions), None, actions, key, time_scale=100.0,
                                 sampling="uniform")
    assert float(zero) == pytest.approx(1.25, rel=0.05)
    t = sample_times(key, 10_000, "beta")
    assert float(t.min()) >= 0.001 and float(t.max()) <= 1.0 and float(t.mean()) < 0.5  # pi0: noisy times


@pytest.mark.parametrize("changes, message", [
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"time_sampling": "cosine"}, "time_sampling must be one of"),
    ({"n_groups": 7}, "FlowMatchingConfig"),
])
def test_config_errors_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        FlowMatchingConfig(**changes)
