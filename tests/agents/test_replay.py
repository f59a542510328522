"""ReplayBuffer: circular insertion, sampling, state_dict round trips."""

import numpy as np
import pytest

from agents.common.replay import Batch, ReplayBuffer


def _transition(i: int, obs_dim: int = 3, action_dim: int = 2):
    """Transition i carries its index in every field, so rows can be traced back."""
    return (
        np.full(obs_dim, i, np.float32),
        np.full(action_dim, i / 100, np.float32),
        float(i),
        float(i % 2),
        np.full(obs_dim, i + 0.5, np.float32),
    )


def _fill(buffer: ReplayBuffer, indices) -> None:
    for i in indices:
        buffer.insert(*_transition(i))


def test_insert_counts_until_capacity_then_overwrites_oldest():
    buffer = ReplayBuffer(obs_dim=3, action_dim=2, capacity=5)
    assert len(buffer) == 0
    _fill(buffer, range(3))
    assert len(buffer) == 3
    _fill(buffer, range(3, 7))
    assert len(buffer) == 5
    state = buffer.state_dict()
    # Slots 0, 1 were overwritten by transitions 5, 6; the oldest kept is 2.
    np.testing.assert_array_equal(state["rewards"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(state["next_observations"][:, 0], [5.5, 6.5, 2.5, 3.5, 4.5])
    assert int(state["insert_index"]) == 2


def test_insert_many_wraps_and_keeps_only_the_newest_capacity_rows():
    buffer = ReplayBuffer(obs_dim=3, action_dim=2, capacity=4)
    _fill(buffer, range(3))
    rows = [_transition(i) for i in range(10, 16)]  # 6 rows > capacity 4
    buffer.insert_many(*(np.stack(column) for column in zip(*rows)))
    assert len(buffer) == 4
    assert sorted(buffer.state_dict()["rewards"].tolist()) == [12, 13, 14, 15]
    # The next insert overwrites the oldest of those (12).
    buffer.insert(*_transition(99))
    assert sorted(buffer.state_dict()["rewards"].tolist()) == [13, 14, 15, 99]


def test_sample_returns_stored_transitions_with_requested_shapes():
    buffer = ReplayBuffer(obs_dim=3, action_dim=2, capacity=10)
    _fill(buffer, range(7))
    rng = np.random.default_rng(0)
    batch = buffer.sample(rng, 32)
    assert isinstance(batch, Batch)
    assert batch.observations.shape == (32, 3) and batch.actions.shape == (32, 2)
    assert batch.rewards.shape == batch.discounts.shape == (32,)
    assert all(array.dtype == np.float32 for array in batch)
    # Each sampled row is a consistent stored transition.
    np.testing.assert_array_equal(batch.observations[:, 0], batch.rewards)
    np.testing.assert_array_equal(batch.next_observations[:, 0], batch.rewards + 0.5)
    np.testing.assert_allclose(batch.actions[:, 0], batch.rewards / 100, rtol=1e-6)
    assert set(batch.rewards.tolist()) <= set(range(7))

    stacked = buffer.sample(rng, 8, num_batches=4)
    assert stacked.observations.shape == (4, 8, 3) and stacked.rewards.shape == (4, 8)


def test_sampling_is_seeded_and_covers_the_whole_buffer():
    buffer = ReplayBuffer(obs_dim=3, action_dim=2, capacity=6)
    _fill(buffer, range(9))  # wrapped: holds 3..8
    first = buffer.sample(np.random.default_rng(7), 500)
    second = buffer.sample(np.random.default_rng(7), 500)
    np.testing.assert_array_equal(first.rewards, second.rewards)
    assert set(first.rewards.tolist()) == set(range(3, 9))


def test_sample_from_empty_and_bad_shapes_raise_clear_errors():
    buffer = ReplayBuffer(obs_dim=3, action_dim=2, capacity=4)
    with pytest.raises(ValueError, match="empty ReplayBuffer"):
        buffer.sample(np.random.default_rng(0), 2)
    obs, action, reward, discount, next_obs = _transition(0)
    with pytest.raises(ValueError, match=r"actions has shape \(1, 3\), expected \(n, 2\)"):
        buffer.insert(obs, np.zeros(3), reward, discount, next_obs)
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        ReplayBuffer(obs_dim=3, action_dim=2, capacity=0)


@pytest.mark.parametrize("num_inserted", [3, 9])  # before and after wraparound
def test_state_dict_round_trip_continues_identically(num_inserted):
    original = ReplayBuffer(obs_dim=3, action_dim=2, capacity=5)
    _fill(original, range(num_inserted))
    restored = ReplayBuffer(obs_dim=3, action_dim=2, capacity=5)
    _fill(restored, range(50, 55))  # stale contents must be replaced
    restored.load_state_dict(original.state_dict())
    assert len(restored) == len(original)

    _fill(original, range(100, 103))
    _fill(restored, range(100, 103))
    for key, value in original.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key], value, err_msg=key)
    np.testing.assert_array_equal(
        original.sample(np.random.default_rng(1), 16).rewards,
        restored.sample(np.random.default_rng(1), 16).rewards,
    )


def test_load_state_dict_rejects_a_different_capacity():
    small = ReplayBuffer(obs_dim=3, action_dim=2, capacity=4)
    _fill(small, range(2))
    with pytest.raises(ValueError, match="capacity 4, this buffer has 8"):
        ReplayBuffer(obs_dim=3, action_dim=2, capacity=8).load_state_dict(small.state_dict())
