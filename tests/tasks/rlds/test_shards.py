"""Song shards: spec, validation, atomic writes, manifests, storage cost.

Real TFDS files in a tmp dir; episodes are synthetic but shaped like the
env's (sparse goals from note events, noisy key presses, float states).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rlds
import tensorflow as tf
import tensorflow_datasets as tfds

import tasks.rlds as shards
from envs import atomic
from envs.piano.metrics import key_press_metrics
from envs.piano.spec import OBSERVATION_KEYS
from tasks.rlds import Episode, ShardError

GOAL_STEPS = 11  # L = lookahead 10 + current


def make_episode(
    rng: np.random.Generator,
    n_steps: int,
    *,
    song_id: str = "song_a",
    chunk_index: int = 0,
    seed: int = 0,
    n_fingers: int = 10,
) -> Episode:
    """A valid episode: note events give a sparse key roll (a few keys down,
    held for several steps), the policy presses most goal keys and a few
    wrong ones, states are float noise."""
    frames = n_steps + GOAL_STEPS - 1
    roll = np.zeros((frames, 88), dtype=bool)
    for start in range(frames):
        for _ in range(rng.poisson(0.6)):
            key = rng.integers(20, 70)
            roll[start : start + rng.integers(2, 9), key] = True
    sustain = np.zeros(frames, dtype=bool)
    sustain[rng.integers(0, frames) :] = True
    piano_goal = np.stack([roll[t : t + GOAL_STEPS].reshape(-1) for t in range(n_steps)])
    sustain_goal = np.stack([sustain[t : t + GOAL_STEPS] for t in range(n_steps)])
    pressed = roll[:n_steps] & (rng.random((n_steps, 88)) > 0.1) | (rng.random((n_steps, 88)) < 0.01)
    keys_for_finger = np.full((n_steps, n_fingers), -1, dtype=np.int8)
    for t in range(n_steps):
        down = np.flatnonzero(roll[t])[:n_fingers]
        keys_for_finger[t, rng.permutation(n_fingers)[: len(down)]] = down
    terms = {term: rng.normal(size=n_steps).astype(np.float32) for term in shards.REWARD_TERMS}
    f32 = np.float32
    steps = {
        "observation": {
            "piano_goal": piano_goal,
            "sustain_goal": sustain_goal,
            "piano_state": rng.random((n_steps, 88)).astype(f32),
            "sustain_state": rng.random((n_steps, 1)).astype(f32),
            "fingertip_positions": rng.normal(size=(n_steps, 3 * n_fingers)).astype(f32),
            "hand_state": rng.normal(size=(n_steps, 46)).astype(f32),
        },
        "action": rng.uniform(-1, 1, size=(n_steps, 39)).astype(f32),
        "reward": sum(terms.values()).astype(f32),
        "discount": np.ones(n_steps, f32),
        "is_first": np.arange(n_steps) == 0,
        "is_last": np.arange(n_steps) == n_steps - 1,
        "is_terminal": np.zeros(n_steps, bool),
        "ot_key_for_finger": keys_for_finger,
        "pressed_keys": pressed,
        "sustain_pressed": sustain[:n_steps] & (rng.random(n_steps) > 0.05),
        **terms,
    }
    metrics = key_press_metrics(goal=piano_goal[:, :88], pressed=pressed)
    metadata = {
        "song_id": song_id,
        "chunk_id": f"{song_id}-{chunk_index:03d}",
        "chunk_index": chunk_index,
        "rollout_seed": seed,
        "specialist_id": f"sac-{song_id}-{chunk_index}",
        "fingering_mode": "ot",
        "n_steps": n_steps,
        **metrics.as_dict(),
    }
    return Episode(steps=steps, metadata=metadata)


def make_song(rng: np.random.Generator, song_id: str = "song_a", lengths=(7, 5, 9)) -> list[Episode]:
    """3 episodes of 7/5/9 steps from 2 chunks."""
    chunks = [0, 0, 1]
    return [
        make_episode(rng, n, song_id=song_id, chunk_index=c, seed=100 + i)
        for i, (n, c) in enumerate(zip(lengths, chunks))
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """song_a written once (2 episodes per shard -> 2 shards), shared by the read tests."""
    out_dir = tmp_path_factory.mktemp("shards")
    episodes = make_song(np.random.default_rng(0))
    manifest = shards.write_song_dataset(out_dir, "song_a", episodes, max_episodes_per_shard=2)
    return out_dir, episodes, manifest


# ----------------------------------------------------------------------------- spec


def test_episode_features_sizes_and_dtypes():
    config = shards.episode_features()
    obs = config.observation_info
    assert [obs[k].shape for k in OBSERVATION_KEYS] == [(968,), (11,), (88,), (1,), (30,), (46,)]
    assert sum(shards.observation_dims(config).values()) == 1144
    assert obs["piano_goal"].np_dtype == np.bool_ and obs["sustain_goal"].np_dtype == np.bool_
    assert obs["hand_state"].np_dtype == np.float32
    assert config.action_info.shape == (39,)
    assert config.step_metadata_info["ot_key_for_finger"].np_dtype == np.int8
    assert config.step_metadata_info["pressed_keys"].np_dtype == np.bool_
    assert set(config.episode_metadata_info) == {
        "song_id", "chunk_id", "chunk_index", "rollout_seed", "specialist_id", "fingering_mode", "precision",
        "recall", "f1", "n_steps"
    }
    # obs 1144 + action 39 + reward, discount 2 + flags 3 + ot 10 + pressed 88 + sustain 1 + terms 6
    assert shards.naive_float32_bytes_per_step(config) == 4 * 1293
    four_fingers = shards.episode_features(n_fingers=8)
    assert four_fingers.observation_info["fingertip_positions"].shape == (24,)
    assert shards.config_hash(four_fingers) != shards.config_hash(config)
    assert shards.config_hash(shards.episode_features()) == shards.config_hash(config)


# ----------------------------------------------------------------------------- validation


def test_validate_accepts_synthetic_episode():
    shards.validate_episode(make_episode(np.random.default_rng(1), 6))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ep: ep.steps["observation"].__setitem__("hand_state", np.zeros((6, 45), np.float32)),
         "observation/hand_state has shape (6, 45), expected (6, 46)"),
        (lambda ep: ep.steps["observation"].__setitem__("piano_goal", ep.steps["observation"]["piano_goal"].astype(np.float32)),
         "observation/piano_goal has dtype float32, expected bool"),
        (lambda ep: ep.steps.__setitem__("action", ep.steps["action"][:5]),
         "step fields disagree on the number of steps: {'action': 5}, the others have 6"),
        (lambda ep: ep.steps.pop("pressed_keys"), "missing fields ['pressed_keys']"),
        (lambda ep: ep.steps["is_last"].__setitem__(2, True), "is_last must be True at the final step only"),
        (lambda ep: ep.steps["action"].__setitem__((3, 0), np.nan), "action is not finite at step 3"),
        (lambda ep: ep.steps["ot_key_for_finger"].__setitem__((0, 0), 88), "ot_key_for_finger outside"),
        (lambda ep: ep.steps["reward"].__setitem__(4, 99.0), "sum of reward terms"),
        (lambda ep: ep.metadata.__setitem__("n_steps", 7), "metadata n_steps=7 but the episode has 6 steps"),
        (lambda ep: ep.metadata.__setitem__("f1", ep.metadata["f1"] * 0.5), "recomputed from piano_goal"),
        (lambda ep: ep.metadata.pop("specialist_id"), "missing ['specialist_id']"),
    ],
)
def test_validate_names_episode_and_field(corrupt, message):
    ep = make_episode(np.random.default_rng(2), 6, seed=42)
    corrupt(ep)
    with pytest.raises(ShardError) as info:
        shards.validate_episode(ep, index=3)
    assert message in str(info.value)
    assert "episode 3 (song 'song_a' chunk 'song_a-000' seed 42)" in str(info.value)


def test_episode_from_steps_stacks_and_casts():
    ep = make_episode(np.random.default_rng(3), 4)
    step_dicts = []
    for t in range(4):
        step = {k: v[t] for k, v in ep.steps.items() if k != "observation"}
        step["observation"] = {k: v[t].astype(np.float64) for k, v in ep.steps["observation"].items()}
        step["pressed_keys"] = step["pressed_keys"].astype(np.int64)
        step_dicts.append(step)
    rebuilt = Episode.from_steps(step_dicts, {k: v for k, v in ep.metadata.items() if k != "n_steps"})
    shards.validate_episode(rebuilt)
    assert rebuilt.metadata["n_steps"] == 4
    np.testing.assert_array_equal(rebuilt.steps["observation"]["piano_goal"], ep.steps["observation"]["piano_goal"])
    step_dicts[1]["pressed_keys"] = np.full(88, 2)
    with pytest.raises(ShardError, match="pressed_keys: binary field holds values other than 0/1"):
        Episode.from_steps(step_dicts, ep.metadata)


# ----------------------------------------------------------------------------- write + read back


def test_folder_layout_and_manifest(written):
    out_dir, episodes, manifest = written
    song_dir = out_dir / "song_a"
    assert sorted(os.listdir(out_dir)) == ["song_a"]  # no staging leftovers
    data_files = sorted(os.listdir(song_dir / shards.DATASET_VERSION))
    assert data_files == [
        "dataset_info.json", "features.json", "pianoset-train.tfrecord-00000", "pianoset-train.tfrecord-00001"
    ]
    on_disk = json.loads((song_dir / "manifest.json").read_text())
    assert on_disk["song_id"] == "song_a" and on_disk["n_episodes"] == 3 and on_disk["n_steps"] == 21
    assert [(e["chunk_id"], e["rollout_seed"]) for e in on_disk["episodes"]] == [
        ("song_a-000", 100), ("song_a-000", 101), ("song_a-001", 102)
    ]
    assert {f["path"] for f in on_disk["files"]} == {f"{shards.DATASET_VERSION}/{name}" for name in data_files}
    assert on_disk["config_hash"] == shards.config_hash(shards.episode_features())
    assert shards.read_manifest(song_dir, verify=True) == manifest
    assert shards.is_complete(song_dir, verify=True)
    assert shards.complete_songs(out_dir) == [song_dir]


def test_manifest_detects_damaged_files(tmp_path):
    episodes = make_song(np.random.default_rng(4))
    shards.write_song_dataset(tmp_path, "song_a", episodes)
    song_dir = tmp_path / "song_a"
    shard = song_dir / shards.DATASET_VERSION / "pianoset-train.tfrecord-00000"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # same size, different content: only the checksum notices
    shard.write_bytes(bytes(data))
    assert shards.is_complete(song_dir)
    assert not shards.is_complete(song_dir, verify=True)
    shard.write_bytes(bytes(data[:-1]))
    with pytest.raises(ShardError, match="pianoset-train.tfrecord-00000 has .* bytes, the manifest says"):
        shards.read_manifest(song_dir)
    shard.unlink()
    assert not shards.is_complete(song_dir)


def test_read_back_with_tfds_builder(written):
    out_dir, episodes, _ = written
    builder = tfds.builder_from_directory(out_dir / "song_a" / shards.DATASET_VERSION)
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["train"].num_shards == 2
    read = list(builder.as_dataset(split="train"))
    assert [int(e["n_steps"]) for e in read] == [7, 5, 9]
    for ep, stored in zip(episodes, read):
        assert stored["song_id"].numpy() == b"song_a"
        assert stored["chunk_id"].numpy().decode() == ep.metadata["chunk_id"]
        assert stored["rollout_seed"].dtype == tf.int64
        steps = next(iter(stored["steps"].batch(100)))
        obs = steps["observation"]
        assert obs["piano_goal"].dtype == tf.bool and obs["piano_goal"].shape == (ep.n_steps, 968)
        assert obs["sustain_goal"].dtype == tf.bool and steps["pressed_keys"].dtype == tf.bool
        assert steps["sustain_pressed"].dtype == tf.bool and steps["is_first"].dtype == tf.bool
        assert obs["hand_state"].dtype == tf.float32 and steps["action"].shape == (ep.n_steps, 39)
        assert steps["ot_key_for_finger"].dtype == tf.int8
        np.testing.assert_array_equal(obs["piano_goal"].numpy(), ep.steps["observation"]["piano_goal"])
        np.testing.assert_array_equal(steps["ot_key_for_finger"].numpy(), ep.steps["ot_key_for_finger"])
        np.testing.assert_array_equal(steps["action"].numpy(), ep.steps["action"])
        assert steps["is_last"].numpy().tolist() == [False] * (ep.n_steps - 1) + [True]


def test_f1_recomputed_from_stored_steps_matches_stored_f1(written):
    out_dir, _, manifest = written
    for stored, record in zip(builder_episodes(out_dir / "song_a"), manifest.episodes):
        steps = next(iter(stored["steps"].batch(100)))
        metrics = key_press_metrics(
            goal=steps["observation"]["piano_goal"].numpy()[:, :88], pressed=steps["pressed_keys"].numpy()
        )
        assert abs(metrics.f1 - float(stored["f1"])) < 1e-6
        assert abs(metrics.precision - float(stored["precision"])) < 1e-6
        assert abs(float(stored["f1"]) - record.f1) < 1e-7
        assert 0.0 < metrics.f1 < 1.0  # the synthetic policy makes mistakes, so this is not vacuous


def builder_episodes(song_dir):
    return tfds.builder_from_directory(shards.builder_dir(song_dir)).as_dataset(split="train")


def test_rlds_transformations_on_written_song(written):
    out_dir, episodes, _ = written
    ds = builder_episodes(out_dir / "song_a")
    total_reward = rlds.transformations.sum_nested_steps(ds, lambda step: step[rlds.REWARD])
    expected = sum(float(ep.steps["reward"].astype(np.float64).sum()) for ep in episodes)
    assert abs(float(total_reward) - expected) < 1e-3
    lengths = [int(rlds.transformations.episode_length(ep[rlds.STEPS])) for ep in ds]
    assert lengths == [7, 5, 9]
    # Sliding windows of 4 steps over the first episode's steps.
    first_steps = next(iter(ds))[rlds.STEPS]
    windows = list(rlds.transformations.batch(first_steps, size=4, shift=1, drop_remainder=True))
    assert len(windows) == 7 - 4 + 1
    np.testing.assert_array_equal(windows[2][rlds.ACTION].numpy(), episodes[0].steps["action"][2:6])


# ----------------------------------------------------------------------------- atomicity


def test_crash_midway_leaves_nothing_under_final_name(tmp_path):
    episodes = make_song(np.random.default_rng(5))

    def crashing():
        yield episodes[0]
        yield episodes[1]
        raise RuntimeError("rollout worker died")

    with pytest.raises(RuntimeError, match="rollout worker died"):
        shards.write_song_dataset(tmp_path, "song_a", crashing(), max_episodes_per_shard=1)
    assert os.listdir(tmp_path) == []  # no final folder, no manifest, no staging leftovers
    assert not shards.is_complete(tmp_path / "song_a")


def test_crash_keeps_previous_complete_folder(tmp_path):
    rng = np.random.default_rng(6)
    old = shards.write_song_dataset(tmp_path, "song_a", make_song(rng))
    song_dir = tmp_path / "song_a"
    before = {p: p.read_bytes() for p in song_dir.rglob("*") if p.is_file()}

    def invalid_midway():
        yield make_episode(rng, 4)
        bad = make_episode(rng, 4)
        bad.metadata["song_id"] = "other_song"  # a valid episode, of another song
        yield bad

    with pytest.raises(ShardError, match="episode 1 .* song_id differs from the folder's song 'song_a'"):
        shards.write_song_dataset(tmp_path, "song_a", invalid_midway())
    assert {p: p.read_bytes() for p in song_dir.rglob("*") if p.is_file()} == before
    assert shards.read_manifest(song_dir, verify=True) == old
    assert os.listdir(tmp_path) == ["song_a"]


@pytest.mark.parametrize("exchange", ["renameat2", "rename_aside"])
def test_rewrite_replaces_atomically_and_old_stays_readable_until_swap(tmp_path, monkeypatch, exchange):
    exchanged = []
    real_exchange = atomic._exchange
    if exchange == "rename_aside":  # file systems without RENAME_EXCHANGE
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: exchanged.append(False) or False)
    else:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: exchanged.append(real_exchange(a, b)) or exchanged[-1])
    rng = np.random.default_rng(7)
    shards.write_song_dataset(tmp_path, "song_a", make_song(rng))
    song_dir = tmp_path / "song_a"
    seen_during_write = []

    def new_episodes():
        for i, n in enumerate((3, 4)):
            # While the new version is being written, the old one is complete and readable.
            seen_during_write.append(
                (shards.read_manifest(song_dir, verify=True).n_episodes, len(list(builder_episodes(song_dir))))
            )
            yield make_episode(rng, n, seed=500 + i)

    manifest = shards.write_song_dataset(tmp_path, "song_a", new_episodes())
    assert seen_during_write == [(3, 3), (3, 3)]
    assert exchanged == [exchange == "renameat2"]  # tmp_path is ext4/tmpfs: renameat2 works there
    assert manifest.n_episodes == 2 and manifest.n_steps == 7
    assert shards.read_manifest(song_dir, verify=True) == manifest
    assert [int(e["rollout_seed"]) for e in builder_episodes(song_dir)] == [500, 501]
    assert os.listdir(tmp_path) == ["song_a"]  # the old version is gone, no staging leftovers


def test_rejects_empty_song_and_bad_song_id(tmp_path):
    with pytest.raises(ShardError, match="no episodes"):
        shards.write_song_dataset(tmp_path, "song_a", [])
    with pytest.raises(ShardError, match="names a folder"):
        shards.write_song_dataset(tmp_path, "../escape", [])
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- storage cost


def test_bytes_per_step_at_most_a_third_of_naive_float32(tmp_path):
    rng = np.random.default_rng(8)
    episodes = [make_episode(rng, 120, song_id="bench", chunk_index=i // 2, seed=i) for i in range(4)]
    shards.write_song_dataset(tmp_path, "bench", episodes)
    stored = shards.bytes_per_step(tmp_path / "bench")
    naive = shards.naive_float32_bytes_per_step(shards.episode_features())
    ratio = stored / naive
    print(f"\nbytes/step: stored {stored:.0f}, naive float32 {naive}, ratio {ratio:.3f}")
    goal_density = np.mean([ep.steps["observation"]["piano_goal"].mean() for ep in episodes])
    assert 0.01 < goal_density < 0.1  # sparse like real goals, not all-zero
    assert ratio <= 1 / 3
