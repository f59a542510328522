"""The mpc specialist kind through the collection steps: the `python -m tasks.specialist`
child, rollouts around the optimised trajectory, shards; its run keys, config and resume."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agents.droq.train import TrainingStopped
from envs.music.chunks import make_chunks, save_chunk
from envs.music.songs import load_song
from envs.piano.config import EnvConfig
from envs.piano.lean import LeanPiano
from tasks.collect import CollectConfig, rollout_chunk_step, specialist_done, train_chunk, write_song
from tasks.rlds.reader import iterate_episodes
from tasks.specialist import NOMINAL_FILE, get_profile, read_manifest, run_key, train_specialist
from tasks.rollouts import load_group, rollout_chunk
from tasks.specialist_mpc import (
    IK_NOMINAL_FILE,
    TRACKING,
    MPCSpecialistConfig,
    closed_loop_actions,
    noisy_replay_metrics,
    rollout_actions,
)

N_STEPS = 16
TINY = {"n_samples": 3, "horizon": 3, "n_knots": 2, "n_iterations": 1}  # a few seconds for 16 steps
TINY_MPC = {**TINY, "rollout_planner": TINY}  # closed-loop rollouts as small


@pytest.fixture(scope="module")
def song():
    return load_song("robopianist:CMajorScaleTwoHands")


@pytest.fixture(scope="module")
def chunk(song):
    return replace(make_chunks(song)[0], n_steps=N_STEPS)


def test_mpc_kind_has_its_own_keys_and_validated_config():
    profile, env = get_profile("smoke"), EnvConfig()
    keys = {kind: run_key("c", profile, env, 0, kind) for kind in ("droq", "residual", "ik", "mpc")}
    assert len(set(keys.values())) == 4
    assert keys["mpc"] == run_key("c", profile, env, 0, "mpc", None, MPCSpecialistConfig())
    assert keys["mpc"] == run_key("c", get_profile("cpu"), env, 0, "mpc")  # no training budget
    other = MPCSpecialistConfig.from_dict({"n_samples": 7})
    assert run_key("c", profile, env, 0, "mpc", None, other) != keys["mpc"]
    noisier = MPCSpecialistConfig.from_dict({"rollout_noise": 0.2})
    assert run_key("c", profile, env, 0, "mpc", None, noisier) != keys["mpc"]
    assert MPCSpecialistConfig.from_dict(other.as_dict()) == other
    with pytest.raises(ValueError, match="rollout_noise=0.0"):
        MPCSpecialistConfig.from_dict({"rollout_noise": 0.0})
    with pytest.raises(ValueError, match=r"mpc: unknown fields \['samples'\]"):
        MPCSpecialistConfig.from_dict({"samples": 3})
    with pytest.raises(ValueError, match="rollout_mode='replay'"):
        MPCSpecialistConfig.from_dict({"rollout_mode": "replay"})
    with pytest.raises(ValueError, match=r"mpc.rollout_planner: unknown fields \['k'\]"):
        MPCSpecialistConfig.from_dict({"rollout_planner": {"k": 1}})
    tracking = MPCSpecialistConfig.from_dict({"rollout_planner": {"n_samples": 2}})
    assert tracking.tracking.n_samples == 2 and tracking.tracking.horizon == TRACKING.horizon  # over TRACKING
    assert MPCSpecialistConfig().tracking == TRACKING != MPCSpecialistConfig().planner
    untracked = MPCSpecialistConfig.from_dict({"rollout_planner": None})
    assert untracked.tracking == untracked.planner and MPCSpecialistConfig.from_dict(untracked.as_dict()) == untracked
    assert MPCSpecialistConfig.from_dict(tracking.as_dict()) == tracking
    with pytest.raises(ValueError, match="horizon must be an int >= 1, got 0"):
        CollectConfig(specialist="mpc", mpc={"horizon": 0})
    with pytest.raises(ValueError, match="`mpc` settings need specialist 'mpc', not 'ik'"):
        CollectConfig(specialist="ik", mpc={"horizon": 3})
    assert CollectConfig(specialist="mpc", mpc=TINY, residual={"scale": 0.2}).mpc_config().planner.horizon == 3


def test_mpc_specialist_collects_episodes_around_its_optimised_trajectory(tmp_path, song, chunk):
    chunk_file = tmp_path / "chunk.json"
    save_chunk(chunk, chunk_file)
    work = tmp_path / "work" / song.song_id / chunk.chunk_id
    config = CollectConfig(songs=(song.ref,), specialist="mpc", mpc=TINY_MPC, n_rollouts=2, workers=1,
                           work_dir=str(tmp_path / "work"), shards_dir=str(tmp_path / "shards"),
                           specialists_dir=str(tmp_path / "specialists"), register=False)
    trained = train_chunk(str(chunk_file), str(work), config)  # a `python -m tasks.specialist --kind mpc` child
    assert trained["kind"] == "mpc" and trained["steps"] == 0
    assert specialist_done(work, chunk.chunk_id, config)
    manifest = read_manifest(work / "specialist")
    assert manifest["obs_dim"] == 1183 and manifest["mpc_config"]["n_samples"] == 3
    summary = manifest["mpc"]
    assert manifest["final"]["f1"] == pytest.approx(summary["replay_f1"], abs=1e-12)  # env = lean replay
    assert summary["mpc_cpu_seconds"] > 0 and sum(summary["winners"].values()) == N_STEPS
    with np.load(work / "specialist" / NOMINAL_FILE) as data:
        optimised, ik = data["actions"], data["ik_actions"]
    with np.load(work / "specialist" / IK_NOMINAL_FILE) as data:
        np.testing.assert_array_equal(data["actions"], ik)
    assert optimised.shape == (N_STEPS, 39) and not np.array_equal(optimised, ik)
    assert (Path(config.specialists_dir) / chunk.chunk_id / NOMINAL_FILE).exists()  # published with it

    rolled = rollout_chunk_step(song.song_id, str(chunk_file), str(work), config)
    assert rolled["n_rollouts"] == 2
    write_song(song.song_id, [str(work)], [chunk.chunk_id], config)
    episodes = list(iterate_episodes([Path(config.shards_dir) / song.song_id]))
    assert [ep.metadata["rollout_seed"] for ep in episodes] == [0, 1]
    # closed loop (the default): each episode is the MPC along the trajectory under its seed's noise,
    # and the env replays the lean path's actions to the bit (shards store float32)
    mpc, scale = MPCSpecialistConfig.from_dict(manifest["mpc_config"]), manifest["residual_config"]["scale"]
    assert mpc.rollout_mode == "closed_loop"
    for ep, seed in zip(episodes, [0, 1]):
        expected = closed_loop_actions(chunk, EnvConfig(), optimised, mpc, scale, seed)
        np.testing.assert_array_equal(ep.steps["action"], expected.actions.astype(ep.steps["action"].dtype))
        assert ep.metadata["f1"] == pytest.approx(expected.metrics["f1"], abs=1e-6)  # float32 metadata
        assert 0 < np.abs(ep.steps["action"] - optimised).max() < 0.6  # near the trajectory, not on it
    assert not np.array_equal(episodes[0].steps["action"], episodes[1].steps["action"])


def test_mpc_open_loop_rollouts_are_the_trajectory_plus_noise(tmp_path, song, chunk):
    mpc = MPCSpecialistConfig.from_dict({**TINY, "rollout_mode": "open_loop", "rollout_noise": 0.1})
    manifest = train_specialist(chunk, tmp_path / "spec", kind="mpc", mpc_config=mpc)
    rollout_chunk(chunk, song.song_id, tmp_path / "spec", tmp_path / "rollouts", n_rollouts=2)
    episodes = [ep for group in sorted((tmp_path / "rollouts").glob("group-*.npz")) for ep in load_group(group)]
    with np.load(tmp_path / "spec" / NOMINAL_FILE) as data:
        optimised = data["actions"]
    # the lean path predicts the stored episodes exactly: actions to the bit, and their F1
    lean = LeanPiano(chunk, EnvConfig())
    spec = lean.action_spec()
    scale = manifest["residual_config"]["scale"]
    predicted = noisy_replay_metrics(lean, optimised, scale, 0.1, [0, 1])
    for ep, seed, metrics in zip(episodes, [0, 1], predicted):
        expected = rollout_actions(optimised, spec.minimum, spec.maximum, scale, 0.1, seed)
        np.testing.assert_array_equal(ep.steps["action"], expected.astype(ep.steps["action"].dtype))  # stored float32
        assert 0 < np.abs(ep.steps["action"] - optimised).max() < scale * 1.0
        assert ep.metadata["f1"] == pytest.approx(metrics["f1"], abs=1e-6)


def test_mpc_specialist_resumes_an_interrupted_optimisation(tmp_path, chunk):
    mpc = MPCSpecialistConfig.from_dict(TINY)

    asked = []

    def stop_after_7():  # SIGTERM in `python -m tasks.specialist` sets the flag this reads
        asked.append(1)
        return len(asked) == 7

    whole = train_specialist(chunk, tmp_path / "whole", kind="mpc", mpc_config=mpc)
    with pytest.raises(TrainingStopped, match="step 7"):
        train_specialist(chunk, tmp_path / "cut", kind="mpc", mpc_config=mpc, should_stop=stop_after_7)
    assert read_manifest(tmp_path / "cut") is None and (tmp_path / "cut" / "mpc_progress.npz").exists()
    resumed = train_specialist(chunk, tmp_path / "cut", kind="mpc", mpc_config=mpc)
    assert resumed["resumed_from_step"] == 7 and whole["resumed_from_step"] is None
    assert resumed["run_key"] == whole["run_key"] and resumed["final"] == whole["final"]
    with np.load(tmp_path / "whole" / NOMINAL_FILE) as a, np.load(tmp_path / "cut" / NOMINAL_FILE) as b:
        np.testing.assert_array_equal(a["actions"], b["actions"])
    again = train_specialist(chunk, tmp_path / "cut", kind="mpc", mpc_config=mpc)
    assert again["train_seconds_this_run"] == resumed["train_seconds_this_run"]  # reused, not rerun
    with pytest.raises(ValueError, match="mpc config is for the mpc kind"):
        train_specialist(chunk, tmp_path / "ik", kind="ik", mpc_config=mpc)


def test_mpc_passes_optimise_around_the_previous_pass_and_resume(tmp_path, chunk):
    from envs.control.mpc import optimise_trajectory

    one = MPCSpecialistConfig.from_dict(TINY)
    two = MPCSpecialistConfig.from_dict({**TINY, "passes": 2})
    assert "passes" not in one.as_dict()  # one pass: the keys of the specialists made before passes existed
    assert MPCSpecialistConfig.from_dict(two.as_dict()) == two and two.digest() != one.digest()
    with pytest.raises(ValueError, match="mpc.passes must be an int >= 1, got 0"):
        MPCSpecialistConfig.from_dict({"passes": 0})
    first = train_specialist(chunk, tmp_path / "one", kind="mpc", mpc_config=one)
    asked = []

    def stop_in_the_second_pass():  # pass 0 asks after each of its first 15 steps
        asked.append(1)
        return len(asked) == N_STEPS + 5

    with pytest.raises(TrainingStopped, match="step 6"):
        train_specialist(chunk, tmp_path / "two", kind="mpc", mpc_config=two, should_stop=stop_in_the_second_pass)
    assert (tmp_path / "two" / "mpc_progress.pass1.npz").exists() and read_manifest(tmp_path / "two") is None
    second = train_specialist(chunk, tmp_path / "two", kind="mpc", mpc_config=two)
    assert second["resumed_from_step"] == 6 and second["run_key"] != first["run_key"]
    passes = second["mpc"]["passes"]
    assert len(passes) == 2 and passes[0]["mpc_f1"] == first["mpc"]["mpc_f1"]  # pass 0 is the one-pass specialist
    with np.load(tmp_path / "one" / NOMINAL_FILE) as a, np.load(tmp_path / "two" / NOMINAL_FILE) as b:
        after_one, after_two = a["actions"], b["actions"]
    # pass 1 is the planner again, around pass 0's actions, with the next seed
    again = optimise_trajectory(chunk, EnvConfig(), after_one, two.planner, 1)
    np.testing.assert_array_equal(after_two, again.actions)
    assert not np.array_equal(after_one, after_two) and passes[1]["replay_f1"] == pytest.approx(again.replay["f1"])
