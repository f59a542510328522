"""MediaPipe from the wheel, the tracker's left/right by position, gap filling."""

import io
import json
import zipfile

import cv2
import numpy as np
import pytest

from envs.music.video.hands import (
    LEFT,
    RIGHT,
    TIP_LANDMARKS,
    HandsConfig,
    HandTracker,
    Landmarker,
    _model_bundle,
    fill_gaps,
)
from envs.music.video.keyboard import key_geometry, keyboard_from_corners
from tests.envs.music.video.videogen import FIXTURES, VideoSpec, _composite, _draw_keyboard, _similarity, load_photo


def test_the_tasks_bundle_is_built_from_the_wheel_models():
    names = zipfile.ZipFile(io.BytesIO(_model_bundle())).namelist()
    assert names == ["hand_detector.tflite", "hand_landmarks_detector.tflite"]


def test_landmarker_fingertips_agree_with_the_photo_annotation():
    """MediaPipe on the fixture photo itself: its fingertips land near the hand-made annotation."""
    image = cv2.imread(str(FIXTURES / "handSrc.jpg"))
    annotation = np.array(json.loads((FIXTURES / "hands.json").read_text())["handSrc"]["fingertips_px"])
    landmarker = Landmarker(HandsConfig())
    try:
        [hand] = landmarker.detect(image, (0, 0, image.shape[1], image.shape[0]))
    finally:
        landmarker.close()
    error = np.linalg.norm(hand.landmarks[list(TIP_LANDMARKS)] - annotation, axis=1)
    assert np.median(error) < 5.0  # pixels of a 320x240 photo, ~0.66 mm each


def _two_hands(mirror: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A drawn keyboard with a left hand on E3 and a right hand on G4; optionally mirrored left-right."""
    spec = VideoSpec(width=1280, height=720)
    corners = np.array([[70.0, 160.0], [1210.0, 160.0], [1250.0, 310.0], [30.0, 310.0]])
    g, _ = cv2.findHomography(key_geometry().corners, corners, 0)
    frame = _draw_keyboard(g, spec)
    photos = [load_photo("handDst"), load_photo("handSrc")]
    for hand, pitch in ((LEFT, 52), (RIGHT, 67)):
        target = np.array([0.045, key_geometry().centers[pitch - 21, 1]])
        _composite(frame, photos[hand], g @ _similarity(photos[hand], hand, 0.0, photos[hand].scale, 3, target))
    if mirror:
        frame = frame[:, ::-1].copy()
        corners = np.column_stack([spec.width - 1 - corners[:, 0], corners[:, 1]])
    return frame, corners, g


@pytest.mark.parametrize("mirror", [False, True])
def test_left_and_right_come_from_the_position_along_the_keys(mirror):
    frame, corners, _ = _two_hands(mirror)
    keyboard = keyboard_from_corners(corners, (frame.shape[1], frame.shape[0]))
    tracker = HandTracker(keyboard, fps=30.0)
    try:
        landmarks, scores = tracker.update(frame)
        calls_first = tracker.landmarker.calls
        again, _ = tracker.update(frame)  # tracked now: one crop per hand, no tile search
    finally:
        tracker.close()
    assert not np.isnan(landmarks).any() and (scores > 0).all()
    palm_y = keyboard.to_piano(landmarks[:, 9])[:, 1]
    assert palm_y[LEFT] < palm_y[RIGHT]  # whatever MediaPipe's handedness label says
    assert tracker.landmarker.calls - calls_first == 2
    assert np.abs(again - landmarks).max() < 8.0  # the same hands, seen through another crop
    middle_tip_y = keyboard.to_piano(landmarks[:, 12])[:, 1]
    expected = key_geometry().centers[[52 - 21, 67 - 21], 1]
    np.testing.assert_allclose(middle_tip_y, expected, atol=0.008)


def test_small_hands_in_a_wide_frame_need_the_crops():
    """The keyboard across half of a 2560 px frame: MediaPipe on the whole frame finds no hand, the tiles both."""
    frame, corners, _ = _two_hands(mirror=False)
    wide = cv2.copyMakeBorder(frame, 320, 320, 640, 640, cv2.BORDER_CONSTANT, value=(52, 60, 72))
    size = (wide.shape[1], wide.shape[0])
    landmarker = Landmarker(HandsConfig())
    try:
        assert landmarker.detect(wide, (0, 0, *size)) == []
    finally:
        landmarker.close()
    tracker = HandTracker(keyboard_from_corners(corners + [640, 320], size), fps=30.0)
    try:
        landmarks, _ = tracker.update(wide)
    finally:
        tracker.close()
    assert not np.isnan(landmarks).any()
    palm_y = tracker.keyboard.to_piano(landmarks[:, 9])[:, 1]
    assert palm_y[LEFT] < palm_y[RIGHT]


def test_fill_gaps_interpolates_short_gaps_only():
    landmarks = np.zeros((12, 2, 21, 2))
    landmarks[:, 0] = np.arange(12)[:, None, None]
    landmarks[3:5, 0] = np.nan  # 2 frames: filled
    landmarks[6:10, 0] = np.nan  # 4 frames: too long
    landmarks[:2, 1] = np.nan  # before the first detection: left alone
    filled, interpolated = fill_gaps(landmarks, max_gap=3)
    np.testing.assert_allclose(filled[3:5, 0, 0, 0], [3, 4])
    assert np.isnan(filled[6:10, 0]).all() and np.isnan(filled[:2, 1]).all()
    assert interpolated[:, 0].tolist() == [i in (3, 4) for i in range(12)] and not interpolated[:, 1].any()
