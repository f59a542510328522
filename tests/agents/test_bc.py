"""BC policy (RP1M B.1.1): fits a known mapping, contract shapes, save/load, config checks.

Data: synthetic episodes in the shard layout (`tasks.rlds.Episode`, every
observation key present but a few dims wide) read through the real
`WindowDataset`; the expert action is a fixed smooth function of the
observation, in env units away from [-1, 1] so the normalizer matters.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from agents.bc import PAPER_HIDDEN_DIMS, BCConfig, BCPolicy, train_bc
from agents.bc.agent import init_params, predict_normalized
from agents.common.io import load_policy, save_policy
from agents.common.policy import Normalizer, PolicySpec, get_policy
from tests.agents import helpers
from tests.agents.helpers import dataset_for

ACTION_DIM = 3
# Small network, larger step size: seconds instead of RP1M's 1M steps.
SMALL = BCConfig(hidden_dims=(64, 64), batch_size=64, learning_rate=3e-3)
STEPS = 400


def expert_episodes(seed: int = 0, n_episodes: int = 4, n_steps: int = 50):
    return helpers.expert_episodes(ACTION_DIM, seed, n_episodes, n_steps)


@pytest.fixture(scope="module")
def trained():
    dataset = dataset_for(SMALL, expert_episodes())
    progress = []
    policy, history = train_bc(
        dataset, SMALL, steps=STEPS, seed=0, on_progress=lambda *args: progress.append(args)
    )
    return dataset, policy, history, progress


def test_bc_fits_a_deterministic_mapping(trained):
    dataset, policy, history, progress = trained
    # Loss in normalized action units, averaged over each history interval.
    assert history[-1]["loss"] <= history[0]["loss"] / 10, (history[0]["loss"], history[-1]["loss"])
    obs, actions = dataset.get_batch(np.arange(len(dataset)))
    predicted = policy.predict_chunk(obs, jax.random.PRNGKey(0))
    assert predicted.shape == (len(dataset), 1, ACTION_DIM) and predicted.dtype == np.float32
    error = np.abs(predicted - actions)
    # Env units; the actions span (-1, 3), predicting their mean would err by ~0.8 on average.
    assert error.mean() < 0.08 and np.quantile(error, 0.99) < 0.3, (error.mean(), error.max())


def test_bc_history_every_twentieth_of_the_run(trained):
    _, _, history, progress = trained
    assert [h["step"] for h in history] == list(range(20, STEPS + 1, 20))
    assert all({"step", "loss", "samples_per_s"} <= set(h) for h in history)
    assert [(step, total) for step, total, _ in progress] == [(h["step"], STEPS) for h in history]
    assert progress[-1][2] is history[-1]


def test_bc_save_load_round_trip_predicts_identically(trained, tmp_path):
    dataset, policy, _, _ = trained
    save_policy(policy, tmp_path / "bc")
    loaded = load_policy(tmp_path / "bc")
    assert isinstance(loaded, BCPolicy) and loaded.config == SMALL and loaded.spec == policy.spec
    obs, _ = dataset.get_batch(np.arange(0, len(dataset), 7))
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(loaded.predict_chunk(obs, key), policy.predict_chunk(obs, key))


def test_bc_chunk_from_window_and_registry():
    """To=2, Tp=3, Ta=2: the MLP reads the flattened window and returns the first Ta predicted steps."""
    assert get_policy("bc") == (BCPolicy, BCConfig, train_bc)
    config = dataclasses.replace(SMALL, obs_horizon=2, pred_horizon=3, action_horizon=2)
    dataset = dataset_for(config, expert_episodes(n_episodes=1, n_steps=10))
    spec = config.spec_for(dataset.obs_dim, dataset.action_dim)
    params = init_params(jax.random.PRNGKey(0), config, spec)
    assert params["MLP_0"]["Dense_0"]["kernel"].shape == (2 * 12, 64)
    policy = BCPolicy(spec, config, params, Normalizer.from_dataset(dataset))
    obs, _ = dataset.get_batch(np.arange(4))
    chunk = policy.predict_chunk(obs, None)
    assert chunk.shape == (4, 2, ACTION_DIM)
    full = predict_normalized(policy.params, policy.normalizer.normalize_obs(obs), config=config, action_dim=ACTION_DIM)
    np.testing.assert_allclose(chunk, policy.normalizer.unnormalize_action(np.asarray(full)[:, :2]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"obs has shape \(4, 12\), expected \(B, 2, 12\)"):
        policy.predict_chunk(obs[:, -1], None)
    with pytest.raises(ValueError, match=r"BCPolicy: spec .* does not match the config's"):
        BCPolicy(SMALL.spec_for(12, ACTION_DIM), config, params, policy.normalizer)


def test_bc_rejects_a_dataset_with_other_windows():
    dataset = dataset_for(dataclasses.replace(SMALL, obs_horizon=2), expert_episodes(n_episodes=1, n_steps=5))
    with pytest.raises(ValueError, match=r"train_bc: dataset windows .* = \(2, 1, 0\), but the policy needs \(1, 1, 0\)"):
        train_bc(dataset, SMALL, steps=1, seed=0)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        train_bc(dataset_for(SMALL, expert_episodes(n_episodes=1, n_steps=5)), SMALL, steps=0, seed=0)


def test_bc_paper_defaults():
    config = BCConfig()  # RP1M Table 5
    assert (config.batch_size, config.learning_rate, config.activation) == (256, 3e-4, "gelu")
    assert config.hidden_dims == (256, 256, 256)
    assert PAPER_HIDDEN_DIMS == {"bc-256": (256,) * 3, "bc-1024": (1024,) * 3, "bc-4096": (4096,) * 6}
    assert config.spec_for(1144, 39) == PolicySpec(1144, 39, obs_horizon=1, pred_horizon=1, action_horizon=1)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_dims", (64, 0), r"BCConfig.hidden_dims must be a non-empty sequence of positive ints, got \(64, 0\)"),
        ("hidden_dims", (), r"BCConfig.hidden_dims must be a non-empty sequence"),
        ("activation", "swish", r"BCConfig.activation must be one of .*, got 'swish'"),
        ("learning_rate", -1e-3, r"BCConfig.learning_rate must be a finite number > 0, got -0.001"),
        ("batch_size", 0, r"BCConfig.batch_size must be an int >= 1, got 0"),
        ("adam_b2", 1.0, r"BCConfig.adam_b2 must be in \[0, 1\), got 1.0"),
        ("action_horizon", 2, r"BCConfig.pred_horizon=1 is too short to return action_horizon=2"),
    ],
)
def test_bc_config_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        BCConfig(**{field: value})


def test_bc_config_accepts_lists_from_json():
    assert BCConfig(hidden_dims=[8, 8]).hidden_dims == (8, 8)
    hash(BCConfig(hidden_dims=[8, 8]))  # static jit argument
