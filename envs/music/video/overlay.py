"""The check video: detected keyboard, hand landmarks, adjusted fingertips and the fingering, per frame."""

from __future__ import annotations

import cv2
import numpy as np

from envs.music.video.fingering import finger_number
from envs.music.video.keyboard import KeyboardFrame, key_geometry

HAND_CONNECTIONS = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
                    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (17, 18), (18, 19), (19, 20), (0, 17))
HAND_COLOURS = ((255, 160, 40), (40, 110, 255))  # BGR: left blue, right orange
FINGER_COLOURS = ((60, 60, 230), (60, 200, 60), (230, 140, 40), (200, 60, 200), (40, 200, 220))  # thumb .. little


def _key_polygons(keyboard: KeyboardFrame) -> list[np.ndarray]:
    geometry = key_geometry()
    signs = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]])
    return [keyboard.to_image(centre + signs * half) for centre, half in zip(geometry.centers, geometry.half_sizes)]


class OverlayPainter:
    def __init__(self, keyboard: KeyboardFrame) -> None:
        self.keyboard = keyboard
        self.polygons = [np.rint(p * 16).astype(np.int32) for p in _key_polygons(keyboard)]
        self.is_black = key_geometry().is_black

    def draw(self, frame: np.ndarray, landmarks: np.ndarray, tips_xyz: np.ndarray, pressing: np.ndarray,
             active: list[tuple[int, int]], header: str) -> np.ndarray:
        """landmarks (2, 21, 2) px (NaN: none); tips_xyz (10, 3) piano frame; active [(key, finger)]."""
        out = frame.copy()
        fill = out.copy()
        for key, finger in active:
            colour = FINGER_COLOURS[finger % 5] if finger >= 0 else (128, 128, 128)
            cv2.fillPoly(fill, [self.polygons[key]], colour, lineType=cv2.LINE_AA, shift=4)
        cv2.addWeighted(fill, 0.45, out, 0.55, 0, dst=out)
        corners = np.rint(self.keyboard.corners_px * 16).astype(np.int32)
        cv2.polylines(out, [corners], True, (0, 255, 0), 2, cv2.LINE_AA, shift=4)
        for key, poly in enumerate(self.polygons):
            if self.is_black[key]:
                cv2.polylines(out, [poly], True, (0, 200, 0), 1, cv2.LINE_AA, shift=4)
        for hand in range(2):
            pts = landmarks[hand]
            if np.isnan(pts).any():
                continue
            ipts = np.rint(pts).astype(int)
            for a, b in HAND_CONNECTIONS:
                cv2.line(out, tuple(ipts[a]), tuple(ipts[b]), HAND_COLOURS[hand], 1, cv2.LINE_AA)
            for p in ipts:
                cv2.circle(out, tuple(p), 2, HAND_COLOURS[hand], -1, cv2.LINE_AA)
        for finger in range(10):
            if np.isnan(tips_xyz[finger]).any():
                continue
            p = np.rint(self.keyboard.to_image(tips_xyz[finger, :2])).astype(int)
            radius = 6 if pressing[finger] else 3
            cv2.circle(out, tuple(p), radius, FINGER_COLOURS[finger % 5], -1 if pressing[finger] else 1, cv2.LINE_AA)
        for key, finger in active:
            anchor = np.rint(self.polygons[key].mean(axis=0) / 16).astype(int)
            label = "?" if finger < 0 else f"{'RL'[finger // 5]}{finger_number(finger)}"
            cv2.putText(out, label, (int(anchor[0]) - 8, int(anchor[1])), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, label, (int(anchor[0]) - 8, int(anchor[1])), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(out, header, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, header, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        return out
