"""benchmarks/timestep_fidelity.py: the divergence measures between two traces of one action sequence."""

import numpy as np

from benchmarks.timestep_fidelity import compare, onsets


def trace(pressed, qpos_scale=1.0):
    n = len(pressed)
    return {"pressed": pressed, "goal": pressed, "key_qpos": pressed * 0.06 * qpos_scale,
            "fingertips": np.zeros((n, 10, 3)), "n_contacts": np.full(n, 3), "hand_hand": np.zeros(n, bool),
            "edge_contact": np.zeros((n, 88), bool)}


def test_onsets_are_key_downs():
    pressed = np.zeros((6, 88), bool)
    pressed[1:3, 5] = True
    pressed[4:6, 5] = True
    pressed[0:6, 7] = True
    assert sorted(onsets(pressed)) == [(0, 7), (1, 5), (4, 5)]


def test_identical_and_shifted_traces():
    pressed = np.zeros((20, 88), bool)
    pressed[2:6, 40] = True
    pressed[10:14, 44] = True
    travel = np.full(88, 0.06)
    same = compare(trace(pressed), trace(pressed), travel)
    assert same["pressed_cells_equal"] == 1.0 and same["pressed_jaccard"] == 1.0
    assert same["first_step_pressed_differ"] is None and same["onset_shift_mean_steps"] == 0.0
    assert same["key_qpos_rms_travel"] == 0.0 and same["onsets_matched_share"] == 1.0
    later = np.roll(pressed, 1, axis=0)  # every press one step later
    shifted = compare(trace(pressed), trace(later), travel)
    assert shifted["onset_shift_mean_steps"] == 1.0 and shifted["onsets_matched_share"] == 1.0
    assert shifted["first_step_pressed_differ"] == 2
    assert shifted["pressed_jaccard"] == round(6 / 10, 4)  # 3 of 4 steps overlap per note
    assert shifted["key_qpos_max_travel"] == 1.0
    far = np.roll(pressed, 5, axis=0)
    assert compare(trace(pressed), trace(far), travel)["onsets_matched_share"] == 0.0
