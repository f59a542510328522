"""Checkpoints: round trip of a trained DroQ state + replay buffer, atomicity, retention."""

import json
import os

import jax
import numpy as np
import pytest

from agents import droq
from agents.common import checkpoint
from agents.common.replay import ReplayBuffer
from tests.agents.helpers import ACTION_DIM, OBS_DIM, SMALL_CONFIG, random_batch


def _trained_state_and_buffer():
    rng = np.random.default_rng(0)
    state = droq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    for _ in range(3):
        state, _ = droq.update(state, random_batch(rng))
    buffer = ReplayBuffer(OBS_DIM, ACTION_DIM, capacity=8)
    batch = random_batch(rng, leading=(11,))  # wraps around
    buffer.insert_many(*batch)
    return state, buffer


def _assert_trees_equal(a, b):
    leaves_a, treedef_a = jax.tree_util.tree_flatten(a)
    leaves_b, treedef_b = jax.tree_util.tree_flatten(b)
    assert treedef_a == treedef_b
    for x, y in zip(leaves_a, leaves_b):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_restores_state_buffer_and_metadata_and_resumes_identically(tmp_path):
    state, buffer = _trained_state_and_buffer()
    path = checkpoint.save_checkpoint(
        tmp_path, step=1234, pytree=state, arrays=buffer.state_dict(),
        metadata={"env_step": 1234, "song": "twinkle"},
    )
    assert path.name == "step_000000001234"
    assert checkpoint.latest_checkpoint(tmp_path) == path

    template = droq.init(jax.random.PRNGKey(99), OBS_DIM, ACTION_DIM, SMALL_CONFIG)
    restored = checkpoint.restore(tmp_path, template)
    assert restored.step == 1234
    assert restored.metadata == {"env_step": 1234, "song": "twinkle"}
    _assert_trees_equal(restored.pytree, state)
    assert isinstance(restored.pytree.actor.params["mean"]["kernel"], jax.Array)

    restored_buffer = ReplayBuffer(OBS_DIM, ACTION_DIM, capacity=8)
    restored_buffer.load_state_dict(restored.arrays)
    for key, value in buffer.state_dict().items():
        np.testing.assert_array_equal(restored_buffer.state_dict()[key], value)

    # Resuming continues bit-for-bit: same rng, optimizer moments and step counts.
    batch = random_batch(np.random.default_rng(5))
    continued, _ = droq.update(state, batch)
    resumed, _ = droq.update(restored.pytree, batch)
    _assert_trees_equal(resumed, continued)


def test_keeps_only_the_newest_checkpoints(tmp_path):
    tree = {"w": np.arange(3, dtype=np.float32)}
    for step in (10, 20, 30, 40):
        checkpoint.save_checkpoint(tmp_path, step, tree, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "step_000000000030",
        "step_000000000040",
    ]


def test_partial_and_corrupt_checkpoints_are_ignored(tmp_path):
    for step in (1, 2):
        checkpoint.save_checkpoint(tmp_path, step, {"w": np.full(4, step, np.float32)})
    # A killed save: temp dir never renamed, and a step dir without its manifest.
    (tmp_path / ".tmp-step_000000000005-deadbeef" / "pytree").mkdir(parents=True)
    (tmp_path / "step_000000000004" / "pytree").mkdir(parents=True)
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_000000000002"

    # Truncate a file of the newest complete checkpoint: it is skipped too.
    newest = tmp_path / "step_000000000002"
    victim = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(victim, "r+b") as f:
        f.truncate(max(victim.stat().st_size - 1, 0))
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_000000000001"
    restored = checkpoint.restore(tmp_path, {"w": np.zeros(4, np.float32)})
    assert restored.step == 1
    np.testing.assert_array_equal(restored.pytree["w"], np.ones(4))
    with pytest.raises(FileNotFoundError, match="incomplete or damaged"):
        checkpoint.restore(newest, {"w": np.zeros(4, np.float32)})

    # The next save cleans up the abandoned temp dir.
    checkpoint.save_checkpoint(tmp_path, 3, {"w": np.zeros(4, np.float32)})
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_resaving_a_step_replaces_it(tmp_path):
    checkpoint.save_checkpoint(tmp_path, 7, {"w": np.zeros(2, np.float32)}, metadata={"v": 1})
    checkpoint.save_checkpoint(tmp_path, 7, {"w": np.ones(2, np.float32)}, metadata={"v": 2})
    restored = checkpoint.restore(tmp_path, {"w": np.zeros(2, np.float32)})
    assert restored.metadata == {"v": 2}
    np.testing.assert_array_equal(restored.pytree["w"], np.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["step_000000000007"]


def test_restore_errors_are_explicit(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.restore(tmp_path, {"w": np.zeros(2, np.float32)})
    checkpoint.save_checkpoint(tmp_path, 1, {"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"leaf /w is float32\[2\], the template expects float32\[3\]"):
        checkpoint.restore(tmp_path, {"w": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="does not match the template"):
        checkpoint.restore(tmp_path, {"v": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        checkpoint.save_checkpoint(tmp_path, 2, {"w": np.zeros(2)}, metadata={"x": object()})
    with pytest.raises(ValueError, match="not a safe file name"):
        checkpoint.save_checkpoint(tmp_path, 2, {"w": np.zeros(2)}, arrays={"../x": np.zeros(1)})


def test_manifest_records_every_file(tmp_path):
    path = checkpoint.save_checkpoint(
        tmp_path, 1, {"w": np.zeros(2, np.float32)}, arrays={"a": np.arange(5)}
    )
    manifest = json.loads((path / "COMMITTED.json").read_text())
    assert manifest["step"] == 1
    assert "arrays/a.npy" in manifest["files"] and "metadata.json" in manifest["files"]
    for rel, size in manifest["files"].items():
        assert os.path.getsize(path / rel) == size
