"""Failure causes of missed notes (envs/piano/failure.py) on constructed traces and on episodes of
scripted controllers recorded from the physics (envs/piano/trace.py)."""

import numpy as np
import pytest
from note_seq import music_pb2
from robopianist.music.midi_file import MidiFile

from envs.music.chunks import Chunk
from envs.piano.config import EnvConfig
from envs.piano.env import make_env
from envs.piano.failure import CAUSES, FailureConfig, classify_missed_notes, false_presses, goal_notes, reach_coverage
from envs.piano.metrics import key_press_metrics
from envs.control.nominal import NominalConfig, nominal_trajectory
from envs.piano.trace import EpisodeTrace, KeyLayout, record_episode, replay_actions

T = 40
MIDDLE_C = 39  # key index of MIDI 60


def make_chunk(notes, n_steps=T, name="constructed"):
    """A chunk of (key, first step, last step) notes."""
    seq = music_pb2.NoteSequence()
    seq.tempos.add(qpm=60.0)
    for key, on, off in notes:
        seq.notes.add(start_time=on * 0.05 + 1e-6, end_time=(off + 1) * 0.05 - 1e-6, pitch=key + 21, velocity=80)
    seq.total_time = (n_steps + 10) * 0.05
    return Chunk(song_id=name, index=0, n_steps=n_steps, lookahead_steps=10, title=name, midi=MidiFile(seq=seq))


@pytest.fixture(scope="module")
def layout():
    env = make_env(make_chunk([(MIDDLE_C, 5, 10)]), EnvConfig(), seed=0)
    env.reset()
    out = KeyLayout.from_env(env)
    env.close()
    return out


def trace_of(goal, pressed, fingertips, layout, hand_hand=None, edge=None):
    n = len(goal)
    return EpisodeTrace(goal=goal, pressed=pressed, fingertips=fingertips, key_qpos=np.zeros((n, 88)),
                        hand_hand=np.zeros(n, bool) if hand_hand is None else hand_hand,
                        edge_contact=np.zeros((n, 88), bool) if edge is None else edge,
                        key_touch=np.zeros((n, 88), bool), n_contacts=np.zeros(n, int), actions=np.zeros((n, 39)),
                        layout=layout)


def resting(layout, n=T):
    return np.repeat(layout.start_fingertips[None], n, axis=0)


def over(layout, tips, key, steps, finger=1):
    """Fingertip `finger` held over `key` (3 cm above its centre) during `steps`."""
    tips = tips.copy()
    tips[steps, finger] = layout.centers[key] + np.array([0.0, 0.0, 0.03])
    return tips


def test_goal_notes_are_contiguous_intervals():
    goal = np.zeros((10, 88), bool)
    goal[2:5, 40] = True
    goal[6:8, 40] = True  # re-struck after a gap: a second note
    goal[0:10, 3] = True
    assert goal_notes(goal) == [(3, 0, 9), (40, 2, 4), (40, 6, 7)]


def test_each_constructed_failure_gets_its_cause(layout):
    k = 60  # well right of the resting right hand, reachable within the 20 steps before its onset
    goal = np.zeros((T, 88), bool)
    goal[20:30, k] = True
    notes = {}
    rest = resting(layout)
    pressed = np.zeros((T, 88), bool)
    notes["never_reached"] = (pressed, rest, None)
    late = pressed.copy()
    late[26:30, k] = True  # 4 of 10 steps, first 6 steps after the onset
    notes["late"] = (late, over(layout, rest, k, slice(18, 30)), None)
    short = pressed.copy()
    short[20:22, k] = True
    notes["other/short"] = (short, over(layout, rest, k, slice(18, 30)), None)
    neighbour = pressed.copy()
    neighbour[21:30, k + 2] = True  # the next white key is down instead
    notes["wrong_neighbour"] = (neighbour, over(layout, rest, k + 2, slice(18, 30)), None)
    jam = np.zeros(T, bool)
    jam[22:25] = True  # 3 of the note's 10 steps: over jam_min_share (0.25)
    notes["jam"] = (pressed, over(layout, rest, k, slice(18, 30)), jam)
    brush = np.zeros(T, bool)
    brush[24] = True  # one step of contact is not a jam
    notes["other/not_pressed"] = (pressed, over(layout, rest, k, slice(18, 30)), brush)
    for expected, (pressed_keys, tips, hand_hand) in notes.items():
        report = classify_missed_notes(trace_of(goal, pressed_keys, tips, layout, hand_hand))
        assert report.n_notes == 1 and report.n_missed == 1, expected
        cause, _, detail = expected.partition("/")
        assert report.missed[0]["cause"] == cause, (expected, report.missed, report.flags)
        if detail:
            assert report.other_detail[detail] == 1
        assert sum(report.causes.values()) == report.n_missed


def test_false_presses_are_split_by_kind(layout):
    goal = np.zeros((20, 88), bool)
    goal[5:10, 40] = True
    pressed = goal.copy()
    pressed[10:12, 40] = True  # released 2 steps late
    pressed[3:5, 40] = True  # down 2 steps early
    pressed[6:8, 42] = True  # the white key next to it
    pressed[15, 80] = True  # far from anything
    assert false_presses(goal, pressed) == {"held_past_note": 2, "early": 2, "neighbour": 2, "other": 1}
    tips = over(layout, resting(layout, 20), 42, slice(6, 7))  # a fingertip over key 42 at step 6 only
    assert false_presses(goal, pressed, fingertips=tips, layout=layout)["not_by_fingertip"] == 6


def test_a_played_note_is_not_missed(layout):
    goal = np.zeros((T, 88), bool)
    goal[20:30, 60] = True
    pressed = goal.copy()
    pressed[20:24, 60] = False  # down for 6 of 10 steps: over min_share
    report = classify_missed_notes(trace_of(goal, pressed, resting(layout), layout))
    assert report.n_notes == 1 and report.n_missed == 0 and sum(report.causes.values()) == 0
    strict = classify_missed_notes(trace_of(goal, pressed, resting(layout), layout),
                                   config=FailureConfig(min_share=0.7))
    assert strict.n_missed == 1 and strict.missed[0]["cause"] == "late"


def test_reach_and_speed_come_from_geometry(layout):
    # The top key in the first step: 0.5 m from the resting right hand, 0.02 m of travel per step.
    goal = np.zeros((T, 88), bool)
    goal[0:3, 87] = True
    report = classify_missed_notes(trace_of(goal, np.zeros_like(goal), resting(layout), layout))
    assert report.missed[0]["cause"] == "beyond_reach_speed"
    # Three keys far apart at once, late enough to move: two hands cover two of them.
    goal = np.zeros((T, 88), bool)
    goal[30:40, [2, 44, 85]] = True
    covered = reach_coverage(goal, layout, 0.05)
    assert covered[30:40].sum(axis=1).max() == 2
    report = classify_missed_notes(trace_of(goal, np.zeros_like(goal), resting(layout), layout))
    assert report.causes["beyond_reach_speed"] == 1 and report.n_missed == 3
    # A left-hand key right of the right hand's: the forearms cannot cross, but each hand takes one.
    goal = np.zeros((T, 88), bool)
    goal[30:40, [MIDDLE_C - 1, MIDDLE_C + 1]] = True
    assert reach_coverage(goal, layout, 0.05)[30:40].all(axis=0)[[MIDDLE_C - 1, MIDDLE_C + 1]].all()


def test_plans_flag_the_notes_they_never_pressed(layout):
    goal = np.zeros((T, 88), bool)
    goal[20:30, [50, 60]] = True
    plan = np.zeros_like(goal)
    plan[18:22, 50] = True  # the plan pressed key 50 (within the lead before its onset), never key 60
    report = classify_missed_notes(trace_of(goal, np.zeros_like(goal), resting(layout), layout),
                                   plans={"commanded": plan})
    assert report.n_missed == 2 and report.flags["not_commanded"] == 1
    with pytest.raises(ValueError, match="plan 'bad' has shape"):
        classify_missed_notes(trace_of(goal, goal, resting(layout), layout), plans={"bad": plan[:5]})


def test_a_controller_that_never_moves_reaches_nothing():
    chunk = make_chunk([(10, 12, 20), (MIDDLE_C + 24, 15, 25)])
    env = make_env(chunk, EnvConfig(), seed=0)
    spec = env.action_spec()
    rest = np.clip(np.zeros(spec.shape), spec.minimum, spec.maximum)
    trace = record_episode(env, lambda t, ts: rest)
    env.close()
    assert trace.n_steps == T and trace.fingertips.shape == (T, 10, 3) and trace.key_qpos.shape == (T, 88)
    assert not trace.pressed.any() and trace.goal.sum() == 9 + 11
    report = classify_missed_notes(trace)
    assert report.n_missed == 2
    assert report.causes["never_reached"] == 2, report.missed


def test_pressing_the_next_white_key_is_a_wrong_neighbour():
    key = MIDDLE_C + 7  # G4; the planned key is the A next to it
    config = NominalConfig(search=False)
    neighbour_chunk = make_chunk([(key + 2, 10, 30)], name="neighbour")
    actions = nominal_trajectory(neighbour_chunk, EnvConfig(), config).actions
    played = replay_actions(neighbour_chunk, EnvConfig(), actions)
    assert played.pressed[10:31, key + 2].mean() > 0.5  # the plan does press its own key
    trace = replay_actions(make_chunk([(key, 10, 30)], name="goal"), EnvConfig(), actions)
    np.testing.assert_array_equal(trace.pressed, played.pressed)  # same actions, same physics
    report = classify_missed_notes(trace)
    assert report.n_missed == 1 and report.missed[0]["cause"] == "wrong_neighbour", (report.missed, report.flags)
    assert key_press_metrics(trace.goal, trace.pressed).f1 < 0.5


def test_hands_driven_into_each_other_jam():
    chunk = make_chunk([(MIDDLE_C, 20, 35)])
    env = make_env(chunk, EnvConfig(), seed=0)
    spec = env.action_spec()
    names = [a.name for hand in (env.task.right_hand, env.task.left_hand) for a in hand.actuators]
    action = np.clip(np.zeros(spec.shape), spec.minimum, spec.maximum)
    action[[i for i, n in enumerate(names) if n.endswith("forearm_tx")]] = (-0.2, 0.2)  # both towards the middle
    trace = record_episode(env, lambda t, ts: action)
    env.close()
    assert trace.hand_hand[20:].all() and not trace.hand_hand[0]
    assert trace.hand_hand_parts.shape == (T, 3) and trace.hand_hand_parts[20:].any(axis=1).all()
    report = classify_missed_notes(trace)
    assert report.n_missed == 1 and report.missed[0]["cause"] == "jam"


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="min_share"):
        FailureConfig(min_share=0.0)
    with pytest.raises(ValueError, match="hand_span_m"):
        FailureConfig(hand_span_m=0.0)
    assert CAUSES[-1] == "other"
