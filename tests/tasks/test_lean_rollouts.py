"""Rollouts and training on the lean path store what the dm_control env path stores."""

import json
from dataclasses import replace

import numpy as np
import pytest

from agents.droq import DroQConfig, ResidualLearning
from envs.control.nominal import NominalConfig
from envs.control.residual import ResidualConfig
from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from tasks.rollouts import load_group, rollout_chunk
from tasks.specialist import ResidualSpecialistConfig, TrainProfile, train_specialist

N_STEPS = 30
N_ROLLOUTS = 3  # one group, padded to LANES rows for the policy
# A few updates on a small network: seconds, and the policy is no longer its initialisation.
TINY = TrainProfile("tiny", total_steps=60, eval_every=30, checkpoint_every=30,
                    agent=DroQConfig(hidden_dims=(32, 32), batch_size=16, warmup_steps=20, buffer_size=60))


@pytest.fixture(scope="module")
def chunk():
    return replace(make_chunks(load_song("robopianist:CMajorScaleTwoHands"))[0], n_steps=N_STEPS)


def _groups(out_dir):
    return [load_group(path) for path in sorted(out_dir.glob("group-*.npz"))]


def _flat(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def assert_same_rollouts(work, chunk, tmp_path) -> list:
    """Roll the specialist in `work` out on both engines; assert every stored array and figure equal."""
    runs = {engine: rollout_chunk(chunk, "song", work, tmp_path / engine, n_rollouts=N_ROLLOUTS, engine=engine)
            for engine in ("env", "lean")}
    assert runs["env"] == runs["lean"]  # keys, seeds, per-episode P/R/F1 (the key does not name the engine)
    env_groups, lean_groups = _groups(tmp_path / "env"), _groups(tmp_path / "lean")
    assert len(env_groups) == len(lean_groups) == 1
    episodes = []
    for env_group, lean_group in zip(env_groups, lean_groups):
        assert len(env_group) == len(lean_group)
        for a, b in zip(env_group, lean_group):
            assert a.metadata == b.metadata
            fields_a, fields_b = dict(_flat(a.steps)), dict(_flat(b.steps))
            assert sorted(fields_a) == sorted(fields_b)
            for name, value in fields_a.items():
                assert fields_b[name].dtype == value.dtype, name
                np.testing.assert_array_equal(fields_b[name], value, err_msg=f"{a.describe()} {name}")
            episodes.append(b)
    return episodes


def test_droq_rollouts_and_training_equal_on_both_paths(chunk, tmp_path):
    manifest = train_specialist(chunk, tmp_path / "lean", TINY)  # training runs on the lean path
    env_work = tmp_path / "env-trained"
    from tasks import specialist

    original = specialist.make_specialist_env
    try:  # the same specialist trained on the dm_control env
        specialist.make_specialist_env = lambda *a, **k: original(*a, **{**k, "lean": False})
        reference = train_specialist(chunk, env_work, TINY)
    finally:
        specialist.make_specialist_env = original
    assert reference["curve"] == manifest["curve"]  # the same learning, evaluation for evaluation
    a = np.load(sorted((tmp_path / "lean" / "checkpoints").glob("step_*"))[-1] / "arrays" / "observations.npy")
    b = np.load(sorted((env_work / "checkpoints").glob("step_*"))[-1] / "arrays" / "observations.npy")
    np.testing.assert_array_equal(a, b)  # and the same replay buffer
    episodes = assert_same_rollouts(tmp_path / "lean", chunk, tmp_path / "rollouts")
    assert len({ep.steps["action"].tobytes() for ep in episodes}) == N_ROLLOUTS  # the seeds differ


def test_residual_and_ik_rollouts_equal_on_both_paths(chunk, tmp_path):
    nominal = NominalConfig(search=False)
    # a mimic weight, so that the mimic term and its reward are compared too; no burn-in, so the actor learns
    residual = ResidualSpecialistConfig(task=ResidualConfig(mimic_weight=0.5, nominal=nominal),
                                        learning=ResidualLearning(critic_burn_in=0))
    trained = train_specialist(chunk, tmp_path / "res", TINY, kind="residual", residual_config=residual)
    assert trained["steps"] == TINY.total_steps
    episodes = assert_same_rollouts(tmp_path / "res", chunk, tmp_path / "res-rollouts")
    ik = ResidualSpecialistConfig(task=ResidualConfig(nominal=nominal))
    train_specialist(chunk, tmp_path / "ik", TINY, kind="ik", residual_config=ik)
    ik_episodes = assert_same_rollouts(tmp_path / "ik", chunk, tmp_path / "ik-rollouts")
    stored = json.loads((tmp_path / "ik-rollouts" / "lean" / "rollouts.json").read_text())
    assert stored["n_rollouts"] == N_ROLLOUTS
    # the applied action is stored (near the nominal), not the residual
    nominal_actions = np.load(tmp_path / "ik" / "nominal.npz")["actions"]
    assert np.abs(ik_episodes[0].steps["action"] - nominal_actions).max() < 0.5
    assert not np.array_equal(episodes[0].steps["reward"], ik_episodes[0].steps["reward"])
