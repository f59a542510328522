"""Conformance of the RP1M env (RP1M Table 3 observation, 39-dim action, Eq. 3 reward)."""

from dataclasses import replace

import numpy as np
import pytest
from robopianist.wrappers.evaluation import MidiEvaluationWrapper

from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from envs.piano.config import EnvConfig, RewardConfig
from envs.piano.env import flatten_observation, make_env
from envs.piano.metrics import key_press_metrics
from envs.piano.rollout import random_controller, run_episode
from envs.piano.spec import OBSERVATION_KEYS

EXPECTED_SIZES = {  # RP1M Table 3 with L = 11
    "piano_goal": 11 * 88,
    "sustain_goal": 11,
    "piano_state": 88,
    "sustain_state": 1,
    "fingertip_positions": 30,
    "hand_state": 46,
}


@pytest.fixture(scope="module")
def twinkle_chunk():
    chunk = make_chunks(load_song("robopianist:TwinkleTwinkleRousseau"))[0]
    return replace(chunk, n_steps=40)  # a short episode keeps the tests quick


@pytest.fixture(scope="module")
def env(twinkle_chunk):
    return make_env(twinkle_chunk, EnvConfig(), seed=0)


def test_observation_spec_key_by_key(env):
    spec = env.observation_spec()
    assert tuple(spec) == OBSERVATION_KEYS == tuple(EXPECTED_SIZES)
    for key, size in EXPECTED_SIZES.items():
        assert spec[key].shape == (size,), key
    assert sum(s.shape[0] for s in spec.values()) == 1144
    obs = env.reset().observation
    for key, size in EXPECTED_SIZES.items():
        assert obs[key].shape == (size,), key
    assert set(np.unique(obs["piano_goal"])) <= {0.0, 1.0}
    assert set(np.unique(obs["sustain_goal"])) <= {0.0, 1.0}
    assert flatten_observation(obs).shape == (1144,)
    assert flatten_observation(obs).dtype == np.float32


def test_action_spec(env):
    spec = env.action_spec()
    assert spec.shape == (39,)
    assert np.all(np.isfinite(spec.minimum)) and np.all(spec.maximum > spec.minimum)
    assert (spec.minimum[-1], spec.maximum[-1]) == (0.0, 1.0)  # sustain pedal


def test_episode_length_goal_and_reward_terms(env, twinkle_chunk):
    timestep = env.reset()
    rng = np.random.default_rng(1)
    act = random_controller(env)
    goals, n = [], 0
    while not timestep.last():
        goals.append(timestep.observation["piano_goal"].reshape(11, 88).astype(bool))
        timestep = env.step(act(timestep.observation, rng))
        n += 1
        info = env.step_info()
        assert set(info["reward_terms"]) == {"ot", "press", "sustain", "collision", "energy"}
        assert sum(info["reward_terms"].values()) == pytest.approx(timestep.reward)
        # The current goal row of the observation is what the step is scored against.
        np.testing.assert_array_equal(goals[-1][0], info["goal_keys"])
        assigned = info["ot_key_for_finger"][info["ot_key_for_finger"] >= 0]
        assert set(assigned) == set(np.flatnonzero(info["goal_keys"]))
        assert info["pressed_keys"].shape == (88,) and info["pressed_keys"].dtype == bool
        assert 0.0 <= info["reward_terms"]["ot"] <= 1.0
        assert info["reward_terms"]["energy"] <= 0.0
        assert info["reward_terms"]["collision"] in (0.0, 0.5)
    assert n == twinkle_chunk.n_steps
    # Lookahead row k at step t is the current row at step t + k.
    for t in range(n - 10):
        np.testing.assert_array_equal(goals[t][5], goals[t + 5][0])
    # At the last steps the lookahead shows the notes after the episode (the chunk's
    # context), not silence: the episode was cut at 40 steps of a longer chunk.
    assert goals[-1][1:].any()


def test_reward_modes():
    chunk = replace(make_chunks(load_song("robopianist:TwinkleTwinkleRousseau"))[0], n_steps=3)
    for fingering, expected in [("none", {"press", "sustain", "collision", "energy"}),
                                ("human", {"fingering", "press", "sustain", "collision", "energy"})]:
        env = make_env(chunk, EnvConfig().with_reward(fingering=fingering), seed=0)
        env.reset()
        env.step(np.zeros(39))
        assert set(env.step_info()["reward_terms"]) == expected
        # Without OT fingering there is no assignment: every finger is recorded idle.
        assert env.step_info()["ot_key_for_finger"].tolist() == [-1] * 10


def test_human_fingering_without_labels_is_a_clear_error(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=1.0))
    pm.instruments.append(inst)
    path = tmp_path / "plain.mid"
    pm.write(str(path))
    chunk = make_chunks(load_song(str(path)))[0]
    with pytest.raises(ValueError, match="fingering='human' needs fingering labels"):
        make_env(chunk, EnvConfig().with_reward(fingering="human"))


def test_four_finger_embodiment_never_uses_little_fingers(twinkle_chunk):
    env = make_env(twinkle_chunk, EnvConfig(four_fingers=True), seed=0)
    record = run_episode(env, random_controller(env), np.random.default_rng(0), record=True)
    assignment = record.steps["ot_key_for_finger"]
    assert (assignment[:, [4, 9]] == -1).all()
    assert (assignment >= 0).any()
    # Little fingers are curled: LFJ3 (proximal flexion) near its 90 degree limit.
    for hand in (env.task.right_hand, env.task.left_hand):
        joint = [j for j in hand.joints if j.name.endswith("LFJ3")][0]
        assert env.physics.bind(joint).qpos[0] > 1.0


def test_metrics_equal_robopianist_evaluation_wrapper(twinkle_chunk):
    env = make_env(replace(twinkle_chunk, n_steps=120), EnvConfig(), seed=0)
    wrapped = MidiEvaluationWrapper(env._env)
    spec = env.action_spec()
    rng = np.random.default_rng(3)
    wrapped.reset()
    goal, pressed = [], []
    timestep = None
    while timestep is None or not timestep.last():
        timestep = wrapped.step(rng.uniform(spec.minimum, spec.maximum))
        goal.append(env.step_info()["goal_keys"])
        pressed.append(env.step_info()["pressed_keys"])
    ours = key_press_metrics(np.array(goal), np.array(pressed))
    theirs = wrapped.get_musical_metrics()
    assert np.array(pressed).any(), "the rollout should press some keys for the comparison to mean something"
    assert ours.precision == pytest.approx(theirs["precision"], abs=1e-12)
    assert ours.recall == pytest.approx(theirs["recall"], abs=1e-12)
    assert ours.f1 == pytest.approx(theirs["f1"], abs=1e-12)


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="fingering='left'"):
        RewardConfig(fingering="left")
    with pytest.raises(ValueError, match="not a multiple"):
        EnvConfig(physics_timestep=0.003)
    assert EnvConfig().digest() == EnvConfig().digest() != EnvConfig(four_fingers=True).digest()
    assert EnvConfig.from_dict(EnvConfig().as_dict()) == EnvConfig()
