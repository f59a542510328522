"""OT fingering (RP1M Eq. 1-2) against hand-computed values."""

import numpy as np
import pytest

from envs.piano.ot import OT_CLOSE_ENOUGH, gaussian_tolerance, ot_assign, ot_reward


def test_assignment_minimises_total_distance_not_greedy():
    # Greedy (nearest finger first for key 10) would give key 10 -> finger 0 (d=0.01)
    # and key 20 -> finger 1 (d=0.1): total 0.11. The optimum crosses: 0.02 + 0.02 = 0.04.
    fingers = np.array([[0.00, 0, 0], [0.03, 0, 0]])
    keys_pos = np.array([[0.01, 0, 0], [-0.02, 0, 0]])
    res = ot_assign(fingers, keys_pos, np.array([10, 20]))
    assert res.finger_for_key.tolist() == [1, 0]
    assert res.key_for_finger.tolist() == [20, 10]
    assert res.d_ot == pytest.approx(0.04)
    np.testing.assert_allclose(res.distances, [0.02, 0.02])


def test_no_key_to_press_gives_full_reward_and_idle_fingers():
    res = ot_assign(np.zeros((10, 3)), np.zeros((0, 3)), np.array([], dtype=int))
    assert res.d_ot == 0.0
    assert (res.key_for_finger == -1).all()
    assert ot_reward(res) == 1.0


def test_more_keys_than_fingers_leaves_the_costliest_key_unassigned():
    fingers = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    keys_pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    res = ot_assign(fingers, keys_pos, np.array([1, 2, 3]))
    assert res.finger_for_key.tolist() == [0, 1, -1]
    assert np.isnan(res.distances[2])
    assert res.d_ot == pytest.approx(0.0)
    assert ot_reward(res) == 1.0


def test_reward_is_one_within_a_centimetre_and_gaussian_beyond():
    assert gaussian_tolerance(0.0, OT_CLOSE_ENOUGH, 0.1) == 1.0
    assert gaussian_tolerance(0.0099, OT_CLOSE_ENOUGH, 0.1) == 1.0
    # At bound + margin the dm_control gaussian tolerance equals value_at_margin = 0.1.
    assert gaussian_tolerance(0.11, OT_CLOSE_ENOUGH, 0.1) == pytest.approx(0.1)
    # Halfway into the margin: 0.1 ** (0.5 ** 2).
    assert gaussian_tolerance(0.06, OT_CLOSE_ENOUGH, 0.1) == pytest.approx(0.1 ** 0.25)


def test_matches_dm_control_tolerance():
    from dm_control.utils.rewards import tolerance

    x = np.linspace(0, 0.3, 31)
    ours = gaussian_tolerance(x, 0.01, 0.1)
    theirs = tolerance(x, bounds=(0, 0.01), margin=0.1, sigmoid="gaussian")
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_sum_and_mean_reductions():
    fingers = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    keys_pos = np.array([[0.06, 0, 0], [1.0, 0, 0]])
    res = ot_assign(fingers, keys_pos, np.array([1, 2]))
    assert ot_reward(res, "sum") == pytest.approx(0.1 ** 0.25)  # d_OT = 0.06
    assert ot_reward(res, "mean") == pytest.approx((0.1 ** 0.25 + 1.0) / 2)
    with pytest.raises(ValueError, match="ot reduction 'max'"):
        ot_reward(res, "max")
