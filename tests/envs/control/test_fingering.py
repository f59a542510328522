"""Phrase fingering DP: hand shifts instead of walking one finger, chords in key order."""

import numpy as np
import pytest

from envs.control.fingering import FingeringCosts, Note, notes_from_goals, plan_fingering

PITCH = 0.0235
SPACING = (-1.5, 0.0, 1.0, 2.0, 3.0)
# One y per key, white keys only for simplicity: key i at i white keys to the right.
KEY_Y = np.arange(88) * PITCH
ALL_FINGERS = np.arange(10)
NO_THUMBS = np.array([f for f in range(10) if f % 5 != 0])


def legato_run(keys, note_steps=12, overlap=1):
    """A (T, 88) goal playing `keys` one after another, each note overlapping the next by `overlap` steps."""
    goal = np.zeros((len(keys) * note_steps + overlap, 88), dtype=bool)
    for i, k in enumerate(keys):
        goal[i * note_steps:(i + 1) * note_steps + overlap, k] = True
    return goal


def first_pass_for(goal, hand):
    """A first-pass key array that gives every goal key to `hand` (finger 1 of it)."""
    first = np.full((len(goal), 10), -1)
    for t in range(len(goal)):
        keys = np.flatnonzero(goal[t])
        if len(keys):
            first[t, hand * 5 + 1] = keys[0]
    return first


def fingers_of(goal, hint):
    return [int(hint[n.on, n.key]) for n in notes_from_goals(goal)]


def test_notes_from_goals_splits_runs_per_key():
    goal = np.zeros((10, 88), dtype=bool)
    goal[0:3, 40] = True
    goal[5:10, 40] = True  # a repeated note
    goal[2:6, 42] = True
    assert notes_from_goals(goal) == [Note(0, 2, 40), Note(2, 5, 42), Note(5, 9, 40)]
    assert notes_from_goals(np.zeros((4, 88), dtype=bool)) == []


def test_ascending_run_shifts_the_hand_instead_of_walking():
    keys = list(range(50, 58))  # eight adjacent keys upwards, right hand, four usable fingers
    goal = legato_run(keys)
    hint = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, NO_THUMBS, SPACING, PITCH)
    # index, middle, ring, little; one shift; index, middle, ring, little again
    assert fingers_of(goal, hint) == [1, 2, 3, 4, 1, 2, 3, 4]
    # the step-by-step alternative, the little finger walking up from the fifth note, costs more
    assert np.all(hint[goal] >= 0) and np.all(hint[~goal] == -1)


def test_descending_run_in_the_left_hand_mirrors_it():
    keys = list(range(40, 32, -1))  # downwards: the left hand's little finger side
    goal = legato_run(keys)
    hint = plan_fingering(goal, first_pass_for(goal, 1), KEY_Y, NO_THUMBS, SPACING, PITCH)
    assert fingers_of(goal, hint) == [6, 7, 8, 9, 6, 7, 8, 9]


def test_detached_notes_may_reuse_a_finger():
    # Long gaps between notes: a finger has time to move, so the hand does not have to shift.
    goal = np.zeros((80, 88), dtype=bool)
    for i, k in enumerate([50, 52, 54]):
        goal[i * 25:i * 25 + 5, k] = True
    costs = FingeringCosts(walk_gap_steps=4)
    hint = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, NO_THUMBS, SPACING, PITCH, costs)
    fingers = fingers_of(goal, hint)
    assert len(fingers) == 3 and all(1 <= f <= 4 for f in fingers)


def test_chords_are_fingered_in_key_order_and_thumbs_avoided():
    goal = np.zeros((20, 88), dtype=bool)
    goal[0:10, [50, 52, 54]] = True
    goal[10:20, [51, 53]] = True
    hint = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, ALL_FINGERS, SPACING, PITCH,
                          FingeringCosts(thumb_cost=3.0))
    first = [hint[0, k] for k in (50, 52, 54)]
    second = [hint[10, k] for k in (51, 53)]
    assert first == sorted(first) and len(set(first)) == 3 and 0 not in first
    assert second == sorted(second) and 0 not in second


def test_a_chord_beyond_the_fingers_reach_takes_the_thumb():
    # Six white keys between the outer notes: index to little reach 4.5 (FingeringCosts.reach_keys),
    # thumb to little 7.5. Without a reach cost (the default is 3) the thumb's cost keeps it out.
    goal = np.zeros((10, 88), dtype=bool)
    goal[:, [50, 53, 56]] = True
    free = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, ALL_FINGERS, SPACING, PITCH,
                          FingeringCosts(reach_cost=0.0))
    reach = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, ALL_FINGERS, SPACING, PITCH, FingeringCosts())
    assert 0 not in [free[0, k] for k in (50, 53, 56)]
    assert [reach[0, k] for k in (50, 53, 56)] == [0, 2, 4]


def test_a_new_note_beyond_reach_of_a_held_key_changes_finger():
    # Key 50 held by the index finger (it comes first, alone) while key 56 starts: index to
    # middle reaches 2.5 white keys, index to little 4.5; neither reaches 6 without the thumb.
    goal = np.zeros((20, 88), dtype=bool)
    goal[0:20, 50] = True
    goal[5:20, 55] = True
    hint = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, ALL_FINGERS, SPACING, PITCH, FingeringCosts())
    held, new = int(hint[0, 50]), int(hint[5, 55])
    assert FingeringCosts().reach_matrix()[held, new] >= 5.0  # a pair that spans five white keys
    free = plan_fingering(goal, first_pass_for(goal, 0), KEY_Y, ALL_FINGERS, SPACING, PITCH,
                          FingeringCosts(reach_cost=0.0))
    assert FingeringCosts().reach_matrix()[int(free[0, 50]), int(free[5, 55])] < 5.0


def test_reach_keys_need_one_positive_number_per_finger_pair():
    with pytest.raises(ValueError, match="FingeringCosts.reach_keys"):
        FingeringCosts(reach_keys=(2.0, 3.0))
    with pytest.raises(ValueError, match="FingeringCosts.reach_keys"):
        FingeringCosts(reach_keys=(0.0,) * 10)
    assert FingeringCosts().reach_matrix()[0, 4] == FingeringCosts().reach_matrix()[4, 0] == 7.5


def test_notes_follow_the_hand_of_the_first_pass():
    goal = legato_run([50, 51, 52])
    hint = plan_fingering(goal, first_pass_for(goal, 1), KEY_Y, NO_THUMBS, SPACING, PITCH)
    assert all(5 <= f <= 9 for f in fingers_of(goal, hint))


@pytest.mark.parametrize("field,value", [("walk_cost", -1.0), ("shift_cost", float("nan")), ("walk_gap_steps", -2)])
def test_costs_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"FingeringCosts.{field}"):
        FingeringCosts(**{field: value})
