"""ik and residual specialists through the collection steps: the `python -m
tasks.specialist` child process, rollouts, shards (no Prefect server: the task
functions the flow calls)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agents.droq import ResidualLearning
from envs.music.chunks import make_chunks, save_chunk
from envs.music.songs import load_song
from envs.piano.metrics import key_press_metrics
from tasks.collect import CollectConfig, rollout_chunk_step, specialist_done, train_chunk, write_song
from tasks.rlds.reader import iterate_episodes
from tasks.specialist import (
    NOMINAL_FILE,
    ResidualSpecialistConfig,
    get_profile,
    read_manifest,
    run_key,
    train_specialist,
)

N_STEPS = 16


@pytest.fixture(scope="module")
def song():
    return load_song("robopianist:CMajorScaleTwoHands")


@pytest.fixture(scope="module")
def chunk(song):
    return replace(make_chunks(song)[0], n_steps=N_STEPS)


def test_kinds_have_their_own_keys_and_bad_kinds_are_named():
    profile = get_profile("smoke")
    from envs.piano.config import EnvConfig

    keys = {kind: run_key("c", profile, EnvConfig(), 0, kind) for kind in ("droq", "residual", "ik")}
    assert len(set(keys.values())) == 3
    assert keys["droq"] == run_key("c", profile, EnvConfig(), 0)  # droq keys did not change
    # A DroQConfig field added later leaves the digests of cached specialists as they were
    # at its neutral value (pinned: these are the digests before actor_prior_weight existed) ...
    assert (get_profile("cpu").digest(), profile.digest()) == ("bfe1509ab302", "26fdac8ea2d7")
    # ... and changes them at any other value
    prior = replace(profile, agent=replace(profile.agent, actor_prior_weight=0.1))
    assert prior.digest() != profile.digest()
    with pytest.raises(ValueError, match="'ppo'"):
        run_key("c", profile, EnvConfig(), 0, "ppo")
    with pytest.raises(ValueError, match="'ppo'"):
        CollectConfig(specialist="ppo")
    with pytest.raises(ValueError, match="residual"):
        CollectConfig(specialist="droq", residual={"scale": 0.1})
    with pytest.raises(ValueError, match="scale"):
        CollectConfig(specialist="residual", residual={"scale": -1})


def _ik_collection(tmp_path, song, chunk, *, child: bool = True, **options):
    """The collection steps of an ik specialist for one chunk: (config, chunk file, work folder);
    trained in the flow's child process, or in this one (`child=False`, quicker)."""
    chunk_file = tmp_path / "chunk.json"
    save_chunk(chunk, chunk_file)
    work = tmp_path / "work" / song.song_id / chunk.chunk_id  # the flow's layout
    config = CollectConfig(songs=(song.ref,), specialist="ik", n_rollouts=3, workers=1,
                           work_dir=str(tmp_path / "work"), shards_dir=str(tmp_path / "shards"),
                           specialists_dir=str(tmp_path / "specialists"), register=False, **options)
    if child:
        trained = train_chunk(str(chunk_file), str(work), config)  # a `python -m tasks.specialist --kind ik` child
    else:
        trained = train_specialist(chunk, work / "specialist", config.profile, config.env_config(), kind="ik",
                                   residual_config=config.residual_config())
    assert trained["kind"] == "ik" and trained["steps"] == 0
    return config, chunk_file, work


def _write_and_read(song, chunk, chunk_file, work, config):
    rolled = rollout_chunk_step(song.song_id, str(chunk_file), str(work), config)
    assert rolled["n_rollouts"] == 3
    write_song(song.song_id, [str(work)], [chunk.chunk_id], config)  # validates: reward == sum of the terms
    return list(iterate_episodes([Path(config.shards_dir) / song.song_id]))


def test_ik_specialist_collects_noisy_nominal_episodes(tmp_path, song, chunk):
    config, chunk_file, work = _ik_collection(tmp_path, song, chunk)
    assert specialist_done(work, chunk.chunk_id, config)
    manifest = read_manifest(work / "specialist")
    assert manifest["obs_dim"] == 1183 and manifest["residual_config"]["scale"] == 0.25
    nominal = np.load(work / "specialist" / NOMINAL_FILE)["actions"]
    assert nominal.shape == (N_STEPS, 39)
    assert (Path(config.specialists_dir) / chunk.chunk_id / NOMINAL_FILE).exists()  # published with it

    episodes = _write_and_read(song, chunk, chunk_file, work, config)
    assert [ep.metadata["rollout_seed"] for ep in episodes] == [0, 1, 2]
    assert {ep.metadata["fingering_mode"] for ep in episodes} == {"ot"}
    assert all(np.all(ep.steps["reward_mimic"] == 0) for ep in episodes)
    actions = [ep.steps["action"] for ep in episodes]
    for ep, action in zip(episodes, actions):
        assert action.shape == (N_STEPS, 39)
        # The stored action is what the piano received: near the nominal, not the residual in [-1, 1].
        deviation = np.abs(action - nominal)
        assert 0 < deviation.max() < 0.5  # tanh-bounded noise times scale 0.25 of the half range
        assert np.median(deviation) < 0.05
        goal = np.asarray(ep.steps["observation"]["piano_goal"])[:, :88]
        assert key_press_metrics(goal, ep.steps["pressed_keys"]).f1 == pytest.approx(ep.metadata["f1"], abs=1e-6)
    assert not np.array_equal(actions[0], actions[1])  # the seeds differ


def test_mimic_term_is_its_own_stored_reward_column(tmp_path, song, chunk):
    """With residual.mimic_weight > 0 the stored reward is still the sum of the stored terms."""
    config, chunk_file, work = _ik_collection(tmp_path, song, chunk, child=False, residual={"mimic_weight": 0.5})
    episodes = _write_and_read(song, chunk, chunk_file, work, config)
    terms = ("reward_fingering", "reward_press", "reward_sustain", "reward_collision", "reward_energy", "reward_mimic")
    for ep in episodes:
        assert np.all(ep.steps["reward_mimic"] > 0) and np.all(ep.steps["reward_mimic"] <= 0.5)
        np.testing.assert_allclose(sum(ep.steps[t] for t in terms), ep.steps["reward"], atol=1e-5)


def test_human_fingering_is_stored_as_the_fingering_term_with_its_mode(tmp_path):
    song = load_song("robopianist:TwinkleTwinkleRousseau")  # has human fingering labels
    chunk = replace(make_chunks(song)[0], n_steps=N_STEPS)
    config, chunk_file, work = _ik_collection(tmp_path, song, chunk, child=False, env={"fingering": "human"})
    episodes = _write_and_read(song, chunk, chunk_file, work, config)
    assert {ep.metadata["fingering_mode"] for ep in episodes} == {"human"}
    assert all(np.any(ep.steps["reward_fingering"] > 0) for ep in episodes)
    assert np.all(episodes[0].steps["ot_key_for_finger"] == -1)  # the OT assignment exists in ot mode only


class _Interrupt(Exception):
    pass


def test_residual_specialist_resumes_after_an_interruption(tmp_path, chunk):
    """Killed after its first evaluation (step 120; checkpoint at 80), the run restarts from the
    checkpoint, finishes, and a third call reuses the finished specialist."""

    def interrupt(step, total, point):
        raise _Interrupt(step)

    with pytest.raises(_Interrupt):
        train_specialist(chunk, tmp_path / "res", "smoke", kind="residual", on_progress=interrupt)
    assert read_manifest(tmp_path / "res") is None  # nothing marks it done
    manifest = train_specialist(chunk, tmp_path / "res", "smoke", kind="residual")
    assert manifest["resumed_from_step"] == 80
    assert manifest["kind"] == "residual" and manifest["steps"] == get_profile("smoke").total_steps
    assert manifest["obs_dim"] == 1183 and manifest["action_dim"] == 39
    assert 0.0 <= manifest["final"]["f1"] <= 1.0
    curve = json.loads((tmp_path / "res" / "learning_curve.json").read_text())
    assert [p["step"] for p in curve] == [120, 240]
    again = train_specialist(chunk, tmp_path / "res", "smoke", kind="residual")
    assert again["run_key"] == manifest["run_key"] and again["train_seconds_this_run"] == manifest["train_seconds_this_run"]


def test_residual_specialist_starts_from_the_nominal(tmp_path, chunk):
    """Before its first update the residual policy's mode is 0, so it plays exactly the
    ik specialist; its warm-up explores with small Gaussian residuals, not uniform ones."""
    smoke = get_profile("smoke")
    profile = replace(smoke, name="warmup-only", total_steps=2 * N_STEPS, eval_every=N_STEPS,
                      checkpoint_every=N_STEPS, agent=replace(smoke.agent, warmup_steps=3 * N_STEPS))
    ik = train_specialist(chunk, tmp_path / "ik", "smoke", kind="ik")
    res = train_specialist(chunk, tmp_path / "res", profile, kind="residual",
                           residual_config=ResidualSpecialistConfig(learning=ResidualLearning(prior_weight=0.3, init_temperature=0.02)))
    # the residual's agent settings replace the profile's
    assert res["agent_config"]["actor_prior_weight"] == 0.3 and res["agent_config"]["init_temperature"] == 0.02
    assert [p["f1"] for p in res["curve"]] == [ik["final"]["f1"]] * 2
    assert [p["return"] for p in res["curve"]] == pytest.approx([ik["final"]["return"]] * 2)
    from agents.common import latest_checkpoint

    # the replay buffer of the checkpoint at step N_STEPS: all warm-up actions
    actions = np.load(latest_checkpoint(tmp_path / "res" / "checkpoints") / "arrays" / "actions.npy")
    assert actions.shape == (N_STEPS, 39)
    assert 0.03 < actions.std() < 0.2 and np.abs(actions).max() < 0.6  # ResidualLearning.warmup_noise = 0.1


def test_residual_specialist_config_is_one_flat_dict_with_the_keys_of_before():
    """The `residual:` section: task fields (envs) and learner fields (agents) in one dict;
    digests and run keys are those of the single ResidualConfig before the split (pinned)."""
    from envs.control.residual import ResidualConfig
    from envs.piano.config import EnvConfig

    default = ResidualSpecialistConfig()
    # Pinned again when issue 18 changed NominalConfig's defaults (press gate, preparation; then the
    # IK's forearm gap; then the fingering's reach and the weight of an unaligned finger; then
    # the press gate across, 12 mm; then the open-loop search's candidates, now in the digest;
    # then the IK's thumb clearance): 125fdbb9eae5 / ed2e02bddc57 first; a default change is
    # meant to change the keys.
    assert default.digest() == "69a629d997b9"
    mixed = ResidualSpecialistConfig.from_dict({"scale": 0.5, "prior_weight": 0.3})
    assert mixed.task == ResidualConfig(scale=0.5) and mixed.learning == ResidualLearning(prior_weight=0.3)
    assert mixed.digest() == "4f960eaac236"
    assert ResidualSpecialistConfig.from_dict(mixed.as_dict()) == mixed
    # keys pinned at the EnvConfig they were computed with (the default before 0.005 s); the
    # residual/ik keys re-pinned with the digests above (05f9a86ee2a02619 / 60b16bcec5efa03b first)
    assert run_key("abc:0", get_profile("smoke"), EnvConfig(physics_timestep=0.002), 0, "residual", default) == "48c2c684891258ee"
    assert run_key("abc:0", get_profile("smoke"), EnvConfig(physics_timestep=0.002), 0, "ik", default) == "4907f0a0db9810b8"
    assert run_key("abc:0", get_profile("cpu"), EnvConfig(physics_timestep=0.002), 0) == "a267fa336339b604"
    with pytest.raises(ValueError, match=r"unknown fields \['scal'\]"):
        ResidualSpecialistConfig.from_dict({"scal": 0.1})
    for bad in ({"warmup_noise": 2.0}, {"init_temperature": 0.0}, {"prior_weight": -0.1}, {"critic_burn_in": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ResidualSpecialistConfig.from_dict(bad)
