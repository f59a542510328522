"""The nominal from a demonstration's fingertips (PianoMime 3.2): the video's fingering is what the
IK plays, hovering fingers follow the video across the keys, the residual env uses it."""

from dataclasses import replace

import numpy as np
import pytest
from note_seq import music_pb2

from envs.control.nominal import KeyboardGeometry, NominalConfig, play_actions
from envs.control.nominal.reference import NoReferenceError, keys_under, reference_trajectory
from envs.control.residual import ResidualConfig, make_residual_env
from envs.music.chunks import make_chunks
from envs.music.reference import FingertipReference
from envs.music.songs import make_song
from envs.music.video.keyboard import key_geometry
from envs.piano.config import EnvConfig

PITCHES = (76, 79, 77, 81)  # right hand, one at a time, in its own half of the keyboard
FINGER = 2  # right middle finger plays them all in the "video"; the OT plan would spread them
TIMESTEP = 0.05
SPACING = 0.0235  # m, one white key


def _song():
    seq = music_pb2.NoteSequence()
    for i, pitch in enumerate(PITCHES):
        seq.notes.add(start_time=0.6 * i, end_time=0.6 * i + 0.45, pitch=pitch, velocity=80, part=FINGER)
    seq.total_time = 0.6 * len(PITCHES)
    return make_song(seq, source="midi", title="one finger", ref="one-finger.mid")


def _reference(song) -> FingertipReference:
    """Finger 2 over each note's key (pressing while it sounds, hovering over the next one before),
    the other right-hand fingers hovering one white key apart beside it, the left hand lost."""
    geometry = key_geometry()
    times = np.arange(int(song.midi.seq.total_time / TIMESTEP) + 2) * TIMESTEP
    positions = np.full((len(times), 10, 3), np.nan)
    pressing = np.zeros((len(times), 10), bool)
    for t, now in enumerate(times):
        i = min(int(now // 0.6), len(PITCHES) - 1)
        key = PITCHES[i] - 21
        positions[t, FINGER] = [*geometry.centers[key], 0.0]
        pressing[t, FINGER] = now - 0.6 * i < 0.45
        for finger in (0, 1, 3, 4):
            positions[t, finger] = [geometry.centers[key, 0], geometry.centers[key, 1] + SPACING * (finger - FINGER),
                                    0.05]
    return FingertipReference(TIMESTEP, positions, pressing)


@pytest.fixture(scope="module")
def chunk():
    song = _song()
    [chunk] = make_chunks(replace(song, reference=_reference(song)))
    return chunk


@pytest.fixture(scope="module")
def trajectory(chunk):
    return reference_trajectory(chunk, EnvConfig())


def test_the_video_finger_is_commanded_onto_every_note(chunk, trajectory):
    commanded = {int(k) for k in np.unique(trajectory.command[:, FINGER]) if k >= 0}
    assert commanded == {p - 21 for p in PITCHES}
    others = np.delete(trajectory.command, FINGER, axis=1)
    assert not np.isin(others, list(commanded)).any()  # no other finger takes the video's keys


def test_hovering_tracked_finger_follows_the_video_across_the_keys(chunk, trajectory):
    thumb_y = chunk.reference.positions[:, 0, 1]  # the right thumb
    err = np.abs(trajectory.ik_fingertips[5:, 0, 1] - thumb_y[5:])  # after the first approach
    assert np.median(err) < 0.01, np.median(err)


def test_open_loop_the_reference_nominal_plays_the_notes(chunk, trajectory):
    metrics = play_actions(chunk, EnvConfig(), trajectory.actions).metrics
    assert metrics.f1 >= 0.6, metrics


def test_residual_env_follows_the_reference_and_keys_stay_for_plan():
    assert "nominal_source" not in ResidualConfig().as_dict()  # run keys from before the field hold
    with pytest.raises(ValueError, match="nominal_source='video'"):
        ResidualConfig(nominal_source="video")


def test_residual_env_on_the_reference(chunk, trajectory):
    env = make_residual_env(chunk, EnvConfig(), ResidualConfig(nominal_source="reference", mimic_weight=0.5))
    env.reset()
    env.step(np.zeros(env.action_spec().shape))
    np.testing.assert_allclose(env.step_info()["applied_action"], trajectory.actions[0], atol=1e-9)
    assert "mimic" in env.step_info()["reward_terms"]


def test_a_chunk_without_reference_is_refused_by_name():
    [plain] = make_chunks(_song())
    with pytest.raises(NoReferenceError, match=plain.chunk_id):
        make_residual_env(plain, EnvConfig(), ResidualConfig(nominal_source="reference"))


def test_keys_under_prefers_black_keys_and_falls_back_to_the_nearest_white_key():
    geometry = KeyboardGeometry(centers=np.array([[0, 0, 0.0], [-0.03, 0.01, 0.01], [0, 0.02, 0.0]]),
                                half_sizes=np.array([[0.075, 0.011, 0.01], [0.045, 0.005, 0.01],
                                                     [0.075, 0.011, 0.01]]),
                                press_points=np.zeros((3, 3)))
    points = np.array([[-0.03, 0.009], [0.05, 0.009], [0.2, 0.019]])
    assert keys_under(points, geometry).tolist() == [1, 0, 2]
    assert NominalConfig().hover_height > 0
