"""The lean simulation path reproduces the dm_control env step for step."""

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from envs.control.nominal import NominalConfig, nominal_actions
from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from envs.piano.config import EnvConfig
from envs.piano.env import flatten_observation, make_env
from envs.piano.lean import LeanPiano
from envs.piano.lean_rollout import METHODS, lane_metrics, lane_prf, open_loop, result_metrics
from envs.piano.metrics import key_press_metrics, per_step_prf
from envs.piano.rollout import run_episode
from envs.piano.spec import OBSERVATION_KEYS

TWINKLE = "robopianist:TwinkleTwinkleRousseau"  # 197 steps, one chunk, human fingering labels
SCALE = "robopianist:CMajorScaleTwoHands"  # 188 steps, one chunk
NOCTURNE = "robopianist:NocturneRousseau"  # its first chunk is a whole 550-step RP1M chunk
ATOL = 1e-10  # float tolerance; on one machine the two paths agree to the bit


@lru_cache(maxsize=None)
def first_chunk(ref: str):
    return make_chunks(load_song(ref))[0]


def random_actions(env, n_steps: int, seed: int) -> np.ndarray:
    spec = env.action_spec()
    return np.random.default_rng(seed).uniform(spec.minimum, spec.maximum, size=(n_steps,) + spec.shape)


def assert_same_episode(env, lean: LeanPiano, actions: np.ndarray) -> dict:
    """Step env and lane 0 of `lean` with `actions`; assert equal everything. Returns coverage counts."""
    timestep = env.reset()
    lean.reset()
    np.testing.assert_array_equal(lean.observations([0])[0], flatten_observation(timestep.observation))
    seen = {"pressed": 0, "collisions": 0, "goal_keys": 0}
    other = np.random.default_rng(99).uniform(-1, 1, size=actions.shape)  # lane 1 plays something else
    for k, action in enumerate(actions):
        timestep = env.step(action)
        info = env.step_info()
        batch = np.stack([action, other[k]])[: lean.n_lanes]
        step = lean.step(batch)
        where = f"step {k}"
        obs = lean.observation(0)
        assert tuple(obs) == OBSERVATION_KEYS
        for key in OBSERVATION_KEYS:
            np.testing.assert_allclose(obs[key], timestep.observation[key], rtol=0, atol=ATOL,
                                       err_msg=f"{where} {key}")
        np.testing.assert_allclose(step.observation[0], flatten_observation(timestep.observation), rtol=0, atol=ATOL)
        assert step.reward[0] == pytest.approx(timestep.reward, abs=ATOL), where
        assert list(step.reward_terms) == list(info["reward_terms"]), where
        for name, value in info["reward_terms"].items():
            assert step.reward_terms[name][0] == pytest.approx(value, abs=ATOL), f"{where} {name}"
        lean_info = lean.step_info(0)
        assert lean_info["reward_terms"] == pytest.approx(info["reward_terms"], abs=ATOL), where
        for key in ("pressed_keys", "ot_key_for_finger", "goal_keys"):
            np.testing.assert_array_equal(step.__dict__[key][0], info[key], err_msg=f"{where} {key}")
            np.testing.assert_array_equal(lean_info[key], info[key], err_msg=f"{where} {key}")
        assert step.sustain_pressed[0] == info["sustain_pressed"] == lean_info["sustain_pressed"], where
        assert bool(step.last[0]) == timestep.last(), where
        seen["pressed"] += int(info["pressed_keys"].sum())
        seen["goal_keys"] += int(info["goal_keys"].sum())
        seen["collisions"] += int(info["reward_terms"]["collision"] == 0.0)
    assert timestep.last() and step.last[0]
    return seen


EQUALITY_CASES = [  # song, fingering, physics timestep, four fingers
    (TWINKLE, "ot", 0.005, False),
    (TWINKLE, "ot", 0.002, False),
    (TWINKLE, "human", 0.005, False),
    (SCALE, "ot", 0.005, True),
    (SCALE, "none", 0.002, False),
    (SCALE, "human", 0.002, False),
]


@pytest.mark.parametrize("ref,fingering,dt,four", EQUALITY_CASES)
def test_lean_equals_env_over_whole_chunk(ref, fingering, dt, four):
    chunk = first_chunk(ref)
    config = EnvConfig(physics_timestep=dt, four_fingers=four).with_reward(fingering=fingering)
    env = make_env(chunk, config, seed=0)
    lean = LeanPiano(chunk, config, n_lanes=2, env=env)
    assert lean.n_substeps == round(0.05 / dt)
    assert lean.action_spec() == env.action_spec()
    seen = assert_same_episode(env, lean, random_actions(env, chunk.n_steps, seed=len(ref) + int(dt * 1e3)))
    assert seen["pressed"] > 0 and seen["goal_keys"] > 0  # the comparison covered key presses


def test_lean_equals_env_on_whole_550_step_chunk():
    chunk = first_chunk(NOCTURNE)
    assert chunk.n_steps == 550
    config = EnvConfig(physics_timestep=0.005)
    env = make_env(chunk, config, seed=0)
    seen = assert_same_episode(env, LeanPiano(chunk, config, env=env), random_actions(env, chunk.n_steps, seed=5))
    assert seen["collisions"] > 0  # random forearm motion makes the hands touch: the collision term is covered


@pytest.mark.slow
def test_lean_equals_env_on_whole_550_step_chunk_at_500_hz():
    chunk = first_chunk(NOCTURNE)
    config = EnvConfig(physics_timestep=0.002).with_reward(fingering="human")
    env = make_env(chunk, config, seed=0)
    assert_same_episode(env, LeanPiano(chunk, config, env=env), random_actions(env, chunk.n_steps, seed=6))


@pytest.fixture(scope="module")
def twinkle_nominal():
    """The `ik` specialist's open-loop actions for Twinkle (one IK solve, no search)."""
    config = EnvConfig(physics_timestep=0.005)
    return config, nominal_actions(first_chunk(TWINKLE), config, NominalConfig(search=False))


def test_lean_equals_env_on_ik_nominal_actions(twinkle_nominal):
    config, actions = twinkle_nominal
    chunk = first_chunk(TWINKLE)
    env = make_env(chunk, config, seed=0)
    seen = assert_same_episode(env, LeanPiano(chunk, config, env=env), actions)
    assert seen["pressed"] > 50  # the nominal plays notes: OT, press and false-positive terms all exercised


def _short_lean(n_lanes: int, dt: float = 0.005) -> LeanPiano:
    return LeanPiano(replace(first_chunk(TWINKLE), n_steps=60), EnvConfig(physics_timestep=dt), n_lanes)


def _lanes_equal(step, lanes):
    ref = lanes[0]
    for i in lanes[1:]:
        np.testing.assert_array_equal(step.observation[i], step.observation[ref])
        assert step.reward[i] == step.reward[ref]
        for values in step.reward_terms.values():
            assert values[i] == values[ref]
        np.testing.assert_array_equal(step.pressed_keys[i], step.pressed_keys[ref])
        np.testing.assert_array_equal(step.ot_key_for_finger[i], step.ot_key_for_finger[ref])


@pytest.mark.parametrize("dt", [0.005, 0.002])
def test_branched_lanes_stay_identical(dt):
    lean = _short_lean(4, dt)
    rng = np.random.default_rng(1)
    for _ in range(12):
        lean.step(rng.uniform(-1, 1, size=(4, 39)))  # the lanes diverge
    state = lean.get_state(0)
    lean.set_state(1, state)
    lean.copy_lane(0, [2])
    assert list(lean.t) == [12, 12, 12, 12]
    np.testing.assert_array_equal(lean.observations([1])[0], lean.observations([0])[0])
    actions = rng.uniform(-1, 1, size=(20, 39))
    first = []
    for action in actions:
        step = lean.step(np.stack([action] * 3 + [-action]))
        _lanes_equal(step, [0, 1, 2])
        first.append(step.observation[0])
    assert not np.array_equal(step.observation[3], step.observation[0])
    lean.set_state(3, state)  # restoring a state replays the same future, in any lane
    for action, expected in zip(actions, first):
        step = lean.step(action[None], lanes=[3])
        np.testing.assert_array_equal(step.observation[0], expected)


@pytest.mark.parametrize("method", METHODS)
def test_open_loop_batch_equals_stepping(method, twinkle_nominal):
    config, nominal = twinkle_nominal
    chunk = replace(first_chunk(TWINKLE), n_steps=80)
    lean = LeanPiano(chunk, config, n_lanes=3)
    rng = np.random.default_rng(2)
    actions = nominal[:80] + rng.normal(0.0, 0.05, size=(3, 80, 39))  # nominal + noise, as `ik` rollouts
    for _ in range(10):
        lean.step(actions[:, 0])
    start = lean.get_state(0)
    lean.copy_lane(0)
    expected_q, expected_pressed = [], []
    for t in range(10, 80):
        expected_pressed.append(lean.step(actions[:, t]).pressed_keys)
        expected_q.append(lean.key_qpos())
    result = open_loop(lean, actions[:, 10:], start, method=method)
    np.testing.assert_allclose(result.key_qpos, np.stack(expected_q, 1), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(result.pressed_keys, np.stack(expected_pressed, 1))
    np.testing.assert_array_equal(result.sustain_pressed, actions[:, 10:, -1] >= 0.5)
    assert result.pressed_keys.sum() > 20
    if result.final_states is not None:
        for lane, final in enumerate(result.final_states):
            np.testing.assert_allclose(final.physics, lean.get_state(lane).physics, rtol=0, atol=ATOL)
            assert final.t == 80


def test_open_loop_metrics_equal_the_env_episode(twinkle_nominal):
    config, nominal = twinkle_nominal
    chunk = first_chunk(TWINKLE)
    record = run_episode(make_env(chunk, config, seed=0), lambda obs, rng, it=iter(nominal): next(it),
                         np.random.default_rng(0))
    lean = LeanPiano(chunk, config)
    result = open_loop(lean, nominal[None], method="step")
    metrics = result_metrics(lean, result)
    np.testing.assert_array_equal(result.pressed_keys[0], record.pressed_keys)
    for name, value in record.metrics.as_dict().items():
        assert metrics[name][0] == pytest.approx(value, abs=1e-12), name
    assert record.metrics.f1 > 0.3  # a real performance, not an empty one


def test_lane_prf_matches_per_step_prf():
    rng = np.random.default_rng(3)
    goal = rng.random((30, 88)) < 0.05
    pressed = rng.random((4, 30, 88)) < 0.05
    pressed[1] = goal  # a perfect lane
    pressed[2] = False  # a silent lane
    precision, recall, f1 = lane_prf(goal, pressed)
    for lane in range(4):
        for mine, theirs in zip((precision, recall, f1), per_step_prf(goal, pressed[lane])):
            np.testing.assert_array_equal(mine[lane], theirs)
    metrics = lane_metrics(goal, pressed)
    assert metrics["f1"][1] == 1.0
    for lane in range(4):
        assert metrics["f1"][lane] == pytest.approx(key_press_metrics(goal, pressed[lane]).f1)


def test_lean_errors_name_the_problem():
    lean = _short_lean(2)
    with pytest.raises(ValueError, match=r"actions of shape \(39,\)"):
        lean.step(np.zeros(39))
    with pytest.raises(ValueError, match="lanes \\[5\\] do not exist"):
        lean.step(np.zeros((1, 39)), lanes=[5])
    with pytest.raises(ValueError, match="no step since"):
        lean.step_info(0)
    for _ in range(60):
        lean.step(np.zeros((2, 39)))
    with pytest.raises(ValueError, match="episode is over"):
        lean.step(np.zeros((2, 39)))
    state = lean.get_state(0)
    with pytest.raises(ValueError, match="state vector of shape"):
        lean.set_state(1, replace(state, physics=state.physics[:-1]))
    with pytest.raises(ValueError, match="run past the episode"):
        open_loop(lean, np.zeros((1, 61, 39)))
    lean.reset([0])
    assert list(lean.t) == [0, 60]
