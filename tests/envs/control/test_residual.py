"""The residual task around the OT-IK nominal controller (envs/control/residual.py)."""

from dataclasses import replace

import numpy as np
import pytest

from envs.control.residual import (
    NOMINAL_KEY,
    ResidualConfig,
    ResidualEnv,
    make_residual_env,
    observation_dim,
)
from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from envs.piano.env import flatten_observation

N_STEPS = 12


@pytest.fixture(scope="module")
def chunk():
    return replace(make_chunks(load_song("robopianist:CMajorScaleTwoHands"))[0], n_steps=N_STEPS)


@pytest.fixture(scope="module")
def nominal_file(tmp_path_factory):
    return tmp_path_factory.mktemp("nominal") / "nominal.npz"


@pytest.fixture(scope="module")
def env(chunk, nominal_file):
    env = make_residual_env(chunk, residual_config=ResidualConfig(scale=0.25), nominal_file=nominal_file)
    yield env
    env.close()


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="scale"):
        ResidualConfig(scale=0.0)
    with pytest.raises(ValueError, match="mimic_weight"):
        ResidualConfig(mimic_weight=-1.0)
    with pytest.raises(ValueError, match=r"unknown fields \['scal'\]"):
        ResidualConfig.from_dict({"scal": 0.1})
    assert ResidualConfig.from_dict(ResidualConfig(scale=0.5).as_dict()) == ResidualConfig(scale=0.5)


def test_specs_and_observation(env):
    spec = env.action_spec()
    assert spec.shape == (39,)
    np.testing.assert_array_equal(spec.minimum, -1.0)
    np.testing.assert_array_equal(spec.maximum, 1.0)
    assert observation_dim(env) == 1144 + 39
    ts = env.reset()
    flat = ResidualEnv.flat_observation(ts.observation)
    assert flat.shape == (1183,) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat[:1144], flatten_observation(ts.observation))
    nominal = ts.observation[NOMINAL_KEY]
    assert np.all(nominal >= -1 - 1e-9) and np.all(nominal <= 1 + 1e-9)
    # The scaled nominal maps back onto the controller's first action.
    inner = env._env.action_spec()
    half = 0.5 * (inner.maximum - inner.minimum)
    np.testing.assert_allclose(0.5 * (inner.maximum + inner.minimum) + nominal * half, env.controller(0), atol=1e-9)


def test_zero_residual_plays_the_nominal_and_a_full_one_is_bounded(env):
    inner = env._env.action_spec()
    half = 0.5 * (inner.maximum - inner.minimum)
    env.reset()
    env.step(np.zeros(39))
    np.testing.assert_allclose(env.step_info()["applied_action"], env.controller(0))
    env.step(np.ones(39))
    expected = np.clip(env.controller(1) + 0.25 * half, inner.minimum, inner.maximum)
    np.testing.assert_allclose(env.step_info()["applied_action"], expected)
    env.step(5 * np.ones(39))  # out of range: clipped to the bound, not beyond
    expected = np.clip(env.controller(2) + 0.25 * half, inner.minimum, inner.maximum)
    np.testing.assert_allclose(env.step_info()["applied_action"], expected)
    assert set(env.step_info()["reward_terms"]) >= {"press", "sustain", "collision", "energy"}


def test_nominal_file_is_reused_and_the_mimic_term_is_weighted(chunk, nominal_file, env):
    assert nominal_file.exists()
    stamp = nominal_file.stat().st_mtime_ns
    weighted = make_residual_env(chunk, residual_config=ResidualConfig(scale=0.25, mimic_weight=0.5),
                                 nominal_file=nominal_file)
    try:
        assert nominal_file.stat().st_mtime_ns == stamp  # read, not solved and written again
        np.testing.assert_array_equal(weighted.controller.actions, env.controller.actions)
        weighted.reset()
        env.reset()
        for t in range(3):
            ts_w = weighted.step(np.zeros(39))
            ts = env.step(np.zeros(39))
            mimic = weighted.step_info()["reward_terms"]["mimic"]
            assert 0.0 < mimic <= 0.5
            assert "mimic" not in env.step_info()["reward_terms"]
            assert ts_w.reward == pytest.approx(ts.reward + mimic)
    finally:
        weighted.close()
