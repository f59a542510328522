"""Key geometry from robopianist's model, the homography, and finding a drawn keyboard."""

import cv2
import numpy as np
import pytest
from robopianist.models.piano import piano_constants as consts

from envs.music.video.keyboard import (
    KeyboardError,
    background_plate,
    detect_keyboard,
    key_geometry,
    keyboard_from_corners,
    parse_corners,
)
from tests.envs.music.video.videogen import VideoSpec, _draw_keyboard

MIDDLE_C = 60 - 21


def test_key_geometry_is_robopianists_piano():
    g = key_geometry()
    assert g.centers.shape == (88, 2) and g.is_black.sum() == 36
    half_length = (consts.NUM_WHITE_KEYS * consts.WHITE_KEY_WIDTH
                   + consts.N_SPACES_BETWEEN_WHITE_KEYS * consts.SPACING_BETWEEN_WHITE_KEYS) / 2
    np.testing.assert_allclose(g.corners, [[-0.075, -half_length], [-0.075, half_length],
                                           [0.075, half_length], [0.075, -half_length]], atol=1e-9)
    assert not g.is_black[0] and g.is_black[1] and not g.is_black[MIDDLE_C] and g.is_black[MIDDLE_C + 1]
    assert np.all(np.diff(g.centers[:, 1]) > 0)  # A0 at -y, C8 at +y
    np.testing.assert_allclose(g.top_z[~g.is_black], consts.WHITE_KEY_HEIGHT)


def test_key_at_sees_black_keys_on_top_and_footprint_distance():
    g = key_geometry()
    assert g.key_at(g.centers[MIDDLE_C]) == MIDDLE_C
    c_sharp = g.centers[MIDDLE_C + 1]
    assert g.key_at(c_sharp) == MIDDLE_C + 1  # over the back of C and D, the black key is seen
    assert g.key_at(np.array([0.06, c_sharp[1] - 0.003])) == MIDDLE_C  # in front of it, the white keys
    assert g.key_at(np.array([0.06, c_sharp[1]])) == -1  # the gap between C and D
    assert g.key_at(np.array([0.2, 0.0])) == -1
    assert g.footprint_distance(g.centers[MIDDLE_C], MIDDLE_C) == 0.0
    beside = g.centers[MIDDLE_C] + [0.0, g.half_sizes[MIDDLE_C, 1] + 0.01]
    assert g.footprint_distance(beside, MIDDLE_C) == pytest.approx(0.01)


def test_homography_maps_the_corners_to_the_model_and_back():
    corners = np.array([[100.0, 50.0], [1180.0, 40.0], [1210.0, 260.0], [70.0, 270.0]])
    frame = keyboard_from_corners(corners, (1280, 720))
    np.testing.assert_allclose(frame.to_piano(corners), key_geometry().corners, atol=1e-9)
    pts = np.random.default_rng(0).uniform([0, 0], [1280, 720], size=(50, 2))
    np.testing.assert_allclose(frame.to_image(frame.to_piano(pts)), pts, atol=1e-6)


def test_corner_input_errors_name_the_problem():
    assert parse_corners("1,2 3,4;5,6 7 8").tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    with pytest.raises(KeyboardError, match="8 numbers"):
        parse_corners("1,2,3")
    with pytest.raises(KeyboardError, match="not numbers"):
        parse_corners("a,b,c,d,e,f,g,h")
    with pytest.raises(KeyboardError, match="C8 front outside"):
        keyboard_from_corners([[0, 0], [10, 0], [2000, 10], [0, 10]], (640, 480))


def _drawn(spec: VideoSpec, corners_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, _ = cv2.findHomography(key_geometry().corners, corners_px, 0)
    return _draw_keyboard(g / g[2, 2], spec), g


@pytest.mark.parametrize("turned", [False, True])
def test_detect_keyboard_finds_the_corners_and_which_end_is_a0(turned):
    spec = VideoSpec(width=960, height=540)
    corners = np.array([[60.0, 120.0], [900.0, 110.0], [930.0, 250.0], [35.0, 262.0]])
    if turned:  # camera on the other side of the piano: A0 at the image's right, the back at the bottom
        corners = np.array([spec.width - 1, spec.height - 1]) - corners
    image, _ = _drawn(spec, corners)
    found = detect_keyboard(image)
    assert np.linalg.norm(found.corners_px - corners, axis=1).max() < 1.0
    assert found.pattern_agreement > 0.95 and found.key_points >= 36  # every black key (gaps: too thin here)
    assert found.key_residual_px < 0.5


def test_background_plate_removes_a_hand_seen_in_one_frame_of_three():
    spec = VideoSpec(width=960, height=540)
    corners = np.array([[60.0, 120.0], [900.0, 110.0], [930.0, 250.0], [35.0, 262.0]])
    image, _ = _drawn(spec, corners)
    frames = []
    for x in (200, 450, 700):
        frame = image.copy()
        cv2.rectangle(frame, (x, 150), (x + 120, 540), (150, 170, 215), -1)  # a skin-coloured arm over the keys
        frames.append(frame)
    found = detect_keyboard(background_plate(frames))
    assert np.linalg.norm(found.corners_px - corners, axis=1).max() < 1.0


def test_no_keyboard_is_an_error():
    noise = np.random.default_rng(0).integers(0, 80, size=(360, 640, 3), dtype=np.uint8)
    with pytest.raises(KeyboardError):
        detect_keyboard(noise)
