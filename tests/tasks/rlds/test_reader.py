"""Reading song shards: tf.data views, numpy episodes, the window sampler."""

from __future__ import annotations

import numpy as np
import pytest
import rlds
import tensorflow as tf
import tensorflow_datasets as tfds

import tasks.rlds as shards
from envs.piano.spec import OBSERVATION_KEYS
from tasks.rlds import ShardError, reader
from tasks.rlds.reader import WindowDataset, flatten_observation
from tests.tasks.rlds.test_shards import make_episode, make_song


@pytest.fixture(scope="module")
def two_songs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(10)
    songs = {
        "song_a": make_song(rng, "song_a", lengths=(7, 5, 9)),
        "song_b": make_song(rng, "song_b", lengths=(4, 6, 3)),
    }
    for song_id, episodes in songs.items():
        shards.write_song_dataset(out_dir, song_id, episodes, max_episodes_per_shard=2)
    return out_dir, songs


def test_load_song(two_songs):
    out_dir, songs = two_songs
    episodes = list(reader.load_song(out_dir / "song_b"))
    assert [int(rlds.transformations.episode_length(e[rlds.STEPS])) for e in episodes] == [4, 6, 3]
    assert {e["song_id"].numpy() for e in episodes} == {b"song_b"}


def test_load_collection_reads_both_songs(two_songs):
    out_dir, songs = two_songs
    song_dirs = [out_dir / "song_a", out_dir / "song_b"]
    ds = reader.load_collection(song_dirs)
    read = [(e["song_id"].numpy().decode(), int(e["n_steps"])) for e in ds]
    assert read == [("song_a", 7), ("song_a", 5), ("song_a", 9), ("song_b", 4), ("song_b", 6), ("song_b", 3)]
    # The same through TFDS directly: one builder over both folders.
    builder = tfds.builder_from_directories([shards.builder_dir(d) for d in song_dirs])
    assert builder.info.splits["train"].num_examples == 6
    total_steps = rlds.transformations.sum_nested_steps(
        builder.as_dataset(split="train"), lambda step: {"n": 1, "pressed": tf.cast(step["pressed_keys"], tf.int32)}
    )
    assert int(total_steps["n"]) == 34
    expected_pressed = sum(ep.steps["pressed_keys"].sum(0) for eps in songs.values() for ep in eps)
    np.testing.assert_array_equal(total_steps["pressed"].numpy(), expected_pressed)


def test_load_collection_refuses_mixed_configs(two_songs, tmp_path):
    out_dir, _ = two_songs
    four_fingers = shards.episode_features(n_fingers=8)
    episode = make_episode(np.random.default_rng(11), 5, song_id="song_c", n_fingers=8)
    shards.write_song_dataset(tmp_path, "song_c", [episode], config=four_fingers)
    with pytest.raises(ShardError, match="song_c: config rp1m_la10_f8_a39_h46 .* differs from"):
        reader.load_collection([out_dir / "song_a", tmp_path / "song_c"])


def test_load_refuses_incomplete_folder(tmp_path):
    (tmp_path / "song_x" / shards.DATASET_VERSION).mkdir(parents=True)
    with pytest.raises(ShardError, match="no manifest.json"):
        reader.load_song(tmp_path / "song_x")


def test_iterate_episodes_round_trips_exactly(two_songs):
    out_dir, songs = two_songs
    read = list(reader.iterate_episodes([out_dir / "song_a", out_dir / "song_b"]))
    written = songs["song_a"] + songs["song_b"]
    assert len(read) == len(written)
    for got, want in zip(read, written):
        for key in OBSERVATION_KEYS:
            np.testing.assert_array_equal(got.steps["observation"][key], want.steps["observation"][key])
            assert got.steps["observation"][key].dtype == want.steps["observation"][key].dtype
        for key, value in want.steps.items():
            if key != "observation":
                np.testing.assert_array_equal(got.steps[key], value, err_msg=key)
                assert got.steps[key].dtype == value.dtype, key
        assert got.metadata.keys() == want.metadata.keys()
        for key, value in want.metadata.items():
            assert got.metadata[key] == (pytest.approx(value, abs=1e-7) if isinstance(value, float) else value)
        shards.validate_episode(got)  # what comes back is a valid episode again


def test_flatten_observation_order():
    ep = make_episode(np.random.default_rng(12), 3)
    obs = ep.steps["observation"]
    flat = flatten_observation(obs)
    assert flat.shape == (3, 1144) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat[:, :968], obs["piano_goal"])
    np.testing.assert_array_equal(flat[:, 968:979], obs["sustain_goal"])
    np.testing.assert_array_equal(flat[:, 979:1067], obs["piano_state"])
    np.testing.assert_array_equal(flat[:, 1067:1068], obs["sustain_state"])
    np.testing.assert_array_equal(flat[:, 1068:1098], obs["fingertip_positions"])
    np.testing.assert_array_equal(flat[:, 1098:], obs["hand_state"])
    assert flatten_observation({k: v[1] for k, v in obs.items()}).shape == (1144,)
    with pytest.raises(KeyError, match=r"missing keys \['hand_state'\]"):
        flatten_observation({k: v for k, v in obs.items() if k != "hand_state"})


def _tagged_episodes():
    """Two episodes (3 and 2 steps); piano_state[:, 0] and action[:, 0] = 10*episode + step."""
    rng = np.random.default_rng(13)
    episodes = [make_episode(rng, 3), make_episode(rng, 2)]
    for e, ep in enumerate(episodes):
        tags = 10 * e + np.arange(ep.n_steps, dtype=np.float32)
        ep.steps["observation"]["piano_state"][:, 0] = tags
        ep.steps["action"][:, 0] = tags
    return episodes


OBS_TAG = 979  # piano_state[0] in the flat observation


def test_window_dataset_padding_by_hand():
    episodes = _tagged_episodes()
    ds = WindowDataset.from_episodes(episodes, obs_horizon=2, action_horizon=3)
    assert len(ds) == 5 and ds.obs_dim == 1144 and ds.action_dim == 39
    obs, actions = ds.get_batch(np.arange(5))
    assert obs.shape == (5, 2, 1144) and actions.shape == (5, 3, 39)
    assert obs.dtype == np.float32 and actions.dtype == np.float32
    # anchor:          ep0 t0      ep0 t1      ep0 t2      ep1 t0        ep1 t1
    assert obs[:, :, OBS_TAG].tolist() == [[0, 0], [0, 1], [1, 2], [10, 10], [10, 11]]
    assert actions[:, :, 0].tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [10, 11, 11], [11, 11, 11]]
    # The whole flat observation of a padded slot is the first step's.
    first_obs = flatten_observation({k: v[0] for k, v in episodes[1].steps["observation"].items()})
    np.testing.assert_array_equal(obs[3, 0], first_obs)
    np.testing.assert_array_equal(actions[4, 2], episodes[1].steps["action"][1])


def test_window_dataset_diffusion_policy_offset():
    ds = WindowDataset.from_episodes(_tagged_episodes(), obs_horizon=2, action_horizon=3, action_offset=-1)
    _, actions = ds.get_batch(np.arange(5))
    assert actions[:, :, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 2], [10, 10, 11], [10, 11, 11]]


def test_window_dataset_sampling_is_seeded_and_epoch_covers_all():
    ds = WindowDataset.from_episodes(_tagged_episodes(), obs_horizon=2, action_horizon=3)
    a = ds.sample(8, np.random.default_rng(0))
    b = ds.sample(8, np.random.default_rng(0))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    batches = list(ds.iterate_epoch(2, np.random.default_rng(1)))
    assert [len(o) for o, _ in batches] == [2, 2, 1]
    anchors = sorted(tuple(act[:, 0, 0].tolist()) for _, act in batches)  # action tag at the anchor
    assert sorted(sum(anchors, ())) == [0, 1, 2, 10, 11]
    assert [len(o) for o, _ in ds.iterate_epoch(2, np.random.default_rng(1), drop_last=True)] == [2, 2]


def test_window_dataset_from_song_folders(two_songs):
    out_dir, songs = two_songs
    ds = WindowDataset([out_dir / "song_a", out_dir / "song_b"], obs_horizon=2, action_horizon=4)
    assert len(ds) == 34 and ds.n_episodes == 6
    obs, actions = ds[7]  # song_a episode 1, step 0
    episode = songs["song_a"][1]
    first_obs = flatten_observation({k: v[0] for k, v in episode.steps["observation"].items()})
    np.testing.assert_array_equal(obs, np.stack([first_obs, first_obs]))
    np.testing.assert_array_equal(actions, episode.steps["action"][:4])
