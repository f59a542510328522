"""PianoMime's goal SDF (Eq. 5) by hand, the autoencoder's training (App. G), save/load."""

import numpy as np
import pytest

from agents.sdf import SDFConfig, goal_sdf, key_points, load_autoencoder, save_autoencoder, train_sdf
from envs.piano.keyboard import key_geometry

C4, D4, C7 = 39, 41, 75  # key indices (MIDI 60, 62, 96)


def test_key_points_are_the_key_tops_of_the_piano_model():
    geometry = key_geometry()
    points = key_points()
    assert points.shape == (88, 3)
    np.testing.assert_allclose(points[:, :2], geometry.centers[:, :2], atol=1e-7)
    np.testing.assert_allclose(points[:, 2], geometry.centers[:, 2] + geometry.half_sizes[:, 2], atol=1e-7)
    assert np.all(np.diff(points[:, 1]) > 0)  # A0 .. C8 along +y
    assert geometry.is_black.sum() == 36


def test_goal_sdf_equals_the_hand_computed_distance():
    points = key_points()
    goals = np.zeros((2, 88), np.float32)
    goals[0, [C4, C7]] = 1.0  # goal 1 has no key down
    above_c4 = points[C4] + np.array([0.0, 0.0, 0.03])
    between = (points[C4] + points[D4]) / 2
    far_left = points[0] + np.array([0.0, -0.2, 0.0])
    queries = np.stack([np.stack([points[C4], above_c4, between, points[C7] + [0.04, 0.0, 0.03], far_left])] * 2)
    sdf = np.asarray(goal_sdf(goals, queries.astype(np.float32), points, 1.0))
    expected = [0.0, 0.03, np.linalg.norm(between - points[C4]), 0.05, np.linalg.norm(far_left - points[C4])]
    np.testing.assert_allclose(sdf[0], expected, atol=1e-6)
    np.testing.assert_allclose(sdf[1], 1.0)  # nothing to press: max_distance everywhere
    clipped = np.asarray(goal_sdf(goals, queries.astype(np.float32), points, 0.1))
    np.testing.assert_allclose(clipped[0], np.minimum(expected, 0.1), atol=1e-6)


def random_goals(rng, n):
    goals = np.zeros((n, 88), bool)
    for row in goals:
        row[rng.choice(88, rng.integers(1, 4), replace=False)] = True
    return goals


@pytest.fixture(scope="module")
def trained():
    # App. G's network; a faster step size than its 1e-3 so that 800 steps suffice here.
    config = SDFConfig(epochs=10_000, max_steps=800, batch_size=256, learning_rate=3e-3)
    return train_sdf(random_goals(np.random.default_rng(0), 2000), config, seed=0)


def test_training_cuts_the_reconstruction_error_and_keeps_neighbours_close(trained):
    autoencoder, history = trained
    assert history[0]["step"] == 0 and history[-1]["step"] == 800
    # Stated factor: the reconstruction loss (Eq. 6) falls at least 20x (measured ~150x: RMSE 0.24 -> 0.02 m).
    assert history[-1]["loss"] < history[0]["loss"] / 20
    assert history[-1]["rmse_m"] < 0.04
    goals = np.zeros((3, 88), np.float32)
    goals[0, C4] = goals[1, C4 + 1] = goals[2, C7] = 1.0  # C4, its neighbour C#4, a far key
    z = autoencoder.encode(goals)
    assert np.linalg.norm(z[0] - z[1]) < np.linalg.norm(z[0] - z[2]) / 2
    # The decoded SDF of C4 grows from C4's top to C7's (true: 0 and 0.3 m, the clip).
    sdf = autoencoder.predict_sdf(goals[:1], key_points()[None, [C4, C4 + 12, C7]])
    assert sdf[0, 0] < sdf[0, 1] < sdf[0, 2], sdf
    assert sdf[0, 2] - sdf[0, 0] > 0.1, sdf


def test_save_and_load_give_the_same_codes(trained, tmp_path):
    autoencoder, _ = trained
    save_autoencoder(autoencoder, tmp_path / "sdf", extra={"note": "test"})
    loaded = load_autoencoder(tmp_path / "sdf")
    goals = random_goals(np.random.default_rng(1), 5).astype(np.float32)
    np.testing.assert_array_equal(loaded.encode(goals), autoencoder.encode(goals))
    assert loaded.config == autoencoder.config
    with pytest.raises(FileNotFoundError, match="not a saved goal autoencoder"):
        load_autoencoder(tmp_path)


def test_config_and_input_errors_name_the_field():
    with pytest.raises(ValueError, match="SDFConfig.latent_dim must be an int >= 1, got 0"):
        SDFConfig(latent_dim=0)
    with pytest.raises(ValueError, match=r"goals must have shape \(N >= 1, 88\), got \(3, 87\)"):
        train_sdf(np.zeros((3, 87)), SDFConfig(), seed=0)
