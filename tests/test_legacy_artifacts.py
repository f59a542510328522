"""Artifacts written before the house restructure (code of eadcff1, fixture made by
tests/fixtures/make_legacy_fixture.py) stay readable and keep their run keys."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from agents.droq import DroQConfig
from envs.piano.config import EnvConfig

LEGACY_ENV = EnvConfig(physics_timestep=0.002)  # the default when the fixture was written

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-eadcff1.tar.gz"
PROFILE_ARGS = dict(total_steps=40, eval_every=20, checkpoint_every=20)


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    root = tmp_path_factory.mktemp("legacy")
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(root, filter="data")
    return root, json.loads((root / "keys.json").read_text())


def test_old_shards_read_with_tfds_and_our_reader(legacy):
    from tasks.rlds import read_manifest
    from tasks.rlds.reader import iterate_episodes

    root, keys = legacy
    song_dir = root / "shards" / keys["song_id"]
    manifest = read_manifest(song_dir, verify=True)
    assert (manifest.n_episodes, manifest.n_steps) == (keys["n_episodes"], keys["n_steps"])
    episodes = list(iterate_episodes([song_dir]))
    assert [round(float(e.metadata["f1"]), 6) for e in episodes] == [round(f, 6) for f in keys["episode_f1"]]
    builder = tfds.builder_from_directory(str(song_dir / manifest.builder_dir))
    assert len(list(builder.as_dataset(split="train"))) == keys["n_episodes"]


def test_old_specialist_loads_and_keeps_its_run_and_rollout_keys(legacy):
    from tasks.rollouts import rollout_key
    from tasks.specialist import TrainProfile, load_specialist, run_key

    root, keys = legacy
    work = root / "work" / keys["song_id"] / "chunk-000"
    state, manifest = load_specialist(work)
    profile = TrainProfile("fixture", **PROFILE_ARGS,
                           agent=DroQConfig(hidden_dims=(4,), batch_size=8, warmup_steps=20, buffer_size=40))
    assert run_key(keys["chunk_id"], profile, LEGACY_ENV, 0) == manifest["run_key"] == keys["specialist_run_key"]
    assert rollout_key(manifest["specialist_id"], 2, 0, LEGACY_ENV) == keys["rollout_key"]
    from agents import droq

    action = droq.eval_actions(state, np.zeros((1, manifest["obs_dim"]), np.float32))
    assert np.asarray(action).shape == (1, 39)


def test_old_policy_loads_predicts_and_keeps_its_key(legacy):
    from agents.common.io import load_policy
    from tasks.benchmark import Method, policy_key
    from tasks.benchmark.config import tuplify

    root, keys = legacy
    policy_dir = root / "policies" / keys["policy_key"]
    policy = load_policy(policy_dir)
    policy.reset(2)
    chunk = policy.predict_chunk(np.zeros((2, policy.spec.obs_horizon, policy.spec.obs_dim), np.float32),
                                 jax.random.PRNGKey(0))
    assert chunk.shape == (2, policy.spec.action_horizon, 39)
    method = Method("BC tiny", "bc", tuplify({"hidden_dims": [8], "batch_size": 4}))
    assert policy_key(method, [root / "shards" / keys["song_id"]], steps=3, seed=0) == keys["policy_key"]
