"""The two fingering rules and PianoMime's Appendix A adjustment, on hand-placed fingertips."""

import numpy as np
import pytest

from envs.music.video.fingering import active_notes, adjust, label_at_onset, label_by_mean_distance
from envs.music.video.keyboard import key_geometry
from envs.music.video.notes import Note

G = key_geometry()
C4, D4 = 39, 41  # key indices (MIDI 60, 62)


def hands_at(points: dict[int, tuple[float, float]], n_frames: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Fingertips far from the keys except the given fingers; all tracked."""
    xy = np.tile(np.stack([np.full(10, 0.4), np.linspace(-0.5, 0.5, 10)], axis=-1), (n_frames, 1, 1))
    for finger, p in points.items():
        xy[:, finger] = p
    return xy, np.ones((n_frames, 10), bool)


def test_onset_rule_takes_the_finger_on_the_key_and_breaks_ties_by_the_centre_line():
    times = np.arange(10) * 0.05
    y = G.centers[C4, 1]
    xy, valid = hands_at({2: (0.05, y + 0.008), 3: (0.05, y + 0.002), 1: (0.05, y - 0.03)})
    [label] = label_at_onset([Note(0.1, 0.3, 60)], xy, valid, times, 0.0, G)
    assert label.finger == 3 and label.on_key
    assert 0.5 < label.confidence < 1.0  # finger 2 is on the key too


def test_onset_rule_uses_the_frames_right_after_the_onset_in_video_time():
    times = np.arange(20) * 0.05
    y = G.centers[C4, 1]
    xy, valid = hands_at({}, n_frames=20)
    xy[:, 7] = (0.05, y)  # left index on C4 ...
    xy[8:, 7] = (0.05, y + 0.1)  # ... until 0.4 s video time
    xy[8:, 4] = (0.05, y)  # then the right little finger
    note = Note(0.05, 0.5, 60)
    assert label_at_onset([note], xy, valid, times, 0.0, G)[0].finger == 7
    assert label_at_onset([note], xy, valid, times, 0.4, G)[0].finger == 4  # onset at 0.45 s video time


def test_untracked_fingers_give_no_label():
    xy, valid = hands_at({})
    valid[:] = False
    [label] = label_at_onset([Note(0.1, 0.2, 60)], xy, valid, np.arange(10) * 0.05, 0.0, G)
    assert label.finger == -1 and label.confidence == 0.0


def test_priors_rule_averages_the_distance_to_the_key_centre_over_the_note():
    times = np.arange(10) * 0.05
    centre = G.centers[C4]
    xy, valid = hands_at({0: (centre[0] + 0.05, centre[1]), 6: (centre[0] + 0.01, centre[1] + 0.015)})
    [label] = label_by_mean_distance([Note(0.0, 0.45, 60)], xy, valid, times, 0.0, G)
    assert label.finger == 6  # nearer the key's centre, though beside the key
    assert not label.on_key
    assert label.distance_m == pytest.approx(np.hypot(0.01, 0.015))


def test_adjust_snaps_the_pressing_finger_to_the_centre_line_and_sets_z():
    times = np.array([0.0, 0.1, 0.2])
    y = G.centers[C4, 1]
    xy, valid = hands_at({1: (0.05, y + 0.006), 2: (0.05, G.centers[D4, 1] - 0.004)}, n_frames=3)
    notes = [Note(0.05, 0.25, 60), Note(0.15, 0.25, 62)]
    xyz, pressing = adjust(xy, valid, times, notes, [1, 2], G)
    assert not pressing[0].any()
    assert pressing[1].tolist() == [i == 1 for i in range(10)]
    assert xyz[1, 1, 1] == pytest.approx(y) and xyz[1, 1, 0] == pytest.approx(0.05)
    assert pressing[2, 1] and pressing[2, 2] and xyz[2, 2, 1] == pytest.approx(G.centers[D4, 1])
    assert xyz[2, 1, 2] == 0.0 and xyz[2, 0, 2] == pytest.approx(2 * G.white_height)  # PianoMime App. A step 4


def test_adjust_searches_the_neighbouring_keys_and_does_not_take_a_finger_twice():
    times = np.array([0.0])
    y_cs = G.centers[C4 + 1, 1]  # C#4
    xy, valid = hands_at({3: (0.05, G.centers[C4, 1])}, n_frames=1)  # over C4, beside C#4
    notes = [Note(0.0, 1.0, 60), Note(0.0, 1.0, 61)]  # C4 takes finger 3 first: C#4 finds nobody free
    _, pressing = adjust(xy, valid, times, notes, [-1, -1], G)
    assert pressing[0].sum() == 1 and pressing[0, 3]
    xyz, pressing = adjust(xy, valid, times, [Note(0.0, 1.0, 61)], [-1], G)
    assert pressing[0, 3] and xyz[0, 3, 1] == pytest.approx(y_cs)  # no finger on C#4: its neighbour's moves


def test_active_notes_per_time():
    notes = [Note(0.1, 0.3, 60), Note(0.0, 0.2, 62)]
    assert active_notes(notes, np.array([0.0, 0.1, 0.2, 0.3])) == [[1], [1, 0], [0], []]
