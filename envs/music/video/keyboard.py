"""The keyboard frame: robopianist's key geometry, the keyboard found in an image, the homography.

Piano frame: robopianist's MuJoCo piano (metres, world frame of our env, where
the piano sits at the origin): keys along +y (A0 at y = -0.599, C8 at +0.599),
x from the back of the keys (-0.075) to the front edge (+0.075, the player's
side), z up. The homography maps image pixels to (x, y) on the key tops
(PianoMime Appendix A step 1, there from hand-picked points, here from the
four corners of the white-key area found automatically or given).

Corners are always listed in key order: A0 back, C8 back, C8 front, A0 front.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

N_KEYS = 88
CORNER_NAMES = ("A0 back", "C8 back", "C8 front", "A0 front")


class KeyboardError(ValueError):
    """No usable keyboard in an image, or corners that do not describe one."""


@dataclass(frozen=True)
class KeyGeometry:
    """Top-view rectangles of the 88 keys of robopianist's piano (metres, piano frame)."""

    centers: np.ndarray  # (88, 2) key top centre, (x, y)
    half_sizes: np.ndarray  # (88, 2) half length along x, half width along y
    is_black: np.ndarray  # (88,) bool
    top_z: np.ndarray  # (88,) height of the key top surface
    white_height: float  # robopianist WHITE_KEY_HEIGHT, the h_key of PianoMime Appendix A

    @property
    def corners(self) -> np.ndarray:
        """The white-key area's corners (4, 2) in `CORNER_NAMES` order."""
        white = ~self.is_black
        lo = self.centers[white] - self.half_sizes[white]
        hi = self.centers[white] + self.half_sizes[white]
        x0, y0 = lo.min(axis=0)
        x1, y1 = hi.max(axis=0)
        return np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]])

    def footprint_distance(self, xy: np.ndarray, key: int) -> np.ndarray:
        """Distance (m) from points (..., 2) to a key's top-view rectangle; 0 inside."""
        d = np.abs(np.asarray(xy, dtype=float) - self.centers[key]) - self.half_sizes[key]
        return np.linalg.norm(np.maximum(d, 0.0), axis=-1)

    def key_at(self, xy: np.ndarray) -> np.ndarray:
        """The key seen from above at points (..., 2) (black keys lie on top); -1 off the keys."""
        xy = np.asarray(xy, dtype=float)
        inside = np.all(np.abs(xy[..., None, :] - self.centers) <= self.half_sizes, axis=-1)  # (..., 88)
        black_hit = np.where(inside & self.is_black, np.arange(N_KEYS), -1).max(axis=-1)
        white_hit = np.where(inside & ~self.is_black, np.arange(N_KEYS), -1).max(axis=-1)
        return np.where(black_hit >= 0, black_hit, white_hit)


@functools.lru_cache(maxsize=1)
def key_geometry() -> KeyGeometry:
    """Key rectangles read from robopianist's piano model (the same MJCF our env builds)."""
    from dm_control import mjcf
    from robopianist.models.piano import piano, piano_constants

    model = piano.Piano()
    physics = mjcf.Physics.from_mjcf_model(model.mjcf_model)
    ids = [physics.model.name2id(key.geom[0].full_identifier, "geom") for key in model.keys]
    pos = np.array(physics.data.geom_xpos[ids])
    size = np.array(physics.model.geom_size[ids])
    if len(ids) != N_KEYS:
        raise RuntimeError(f"robopianist's piano has {len(ids)} keys, expected {N_KEYS}")
    return KeyGeometry(
        centers=pos[:, :2].copy(),
        half_sizes=size[:, :2].copy(),
        is_black=size[:, 1] < 0.75 * piano_constants.WHITE_KEY_WIDTH / 2,
        top_z=pos[:, 2] + size[:, 2],
        white_height=float(piano_constants.WHITE_KEY_HEIGHT),
    )


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    h, _ = cv2.findHomography(np.asarray(src, np.float64), np.asarray(dst, np.float64), 0)
    if h is None:
        raise KeyboardError(f"corners {np.round(src, 1).tolist()}: degenerate (no homography)")
    return h / h[2, 2]


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maps points (..., 2) by a 3x3 homography."""
    p = np.asarray(points, dtype=float)
    q = p @ h[:, :2].T + h[:, 2]
    return q[..., :2] / q[..., 2:3]


@dataclass(frozen=True)
class KeyboardFrame:
    """Image pixels <-> piano frame (x, y) on the key tops."""

    corners_px: np.ndarray  # (4, 2) in CORNER_NAMES order
    image_size: tuple[int, int]  # (width, height)
    source: str  # "auto" | "given"
    key_residual_px: float | None = None  # RMS distance of the key landmarks found from where H puts them
    key_points: int = 0  # key landmarks (black keys, gaps between white keys) the homography was fitted to
    pattern_agreement: float | None = None  # fraction of the back strip whose black/white matches the model

    @functools.cached_property
    def homography(self) -> np.ndarray:
        return _homography(self.corners_px, key_geometry().corners)

    @functools.cached_property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.homography)

    def to_piano(self, px: np.ndarray) -> np.ndarray:
        return apply_homography(self.homography, px)

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        return apply_homography(self.inverse, xy)

    def metres_per_pixel(self) -> float:
        """Metres per pixel along the keyboard's front edge."""
        c = self.corners_px
        return float(np.ptp(key_geometry().corners[:, 1]) / np.linalg.norm(c[2] - c[3]))

    def as_dict(self) -> dict:
        return {
            "corners_px": np.round(self.corners_px, 3).tolist(),
            "corner_names": list(CORNER_NAMES),
            "image_size": list(self.image_size),
            "source": self.source,
            "homography_px_to_piano": self.homography.tolist(),
            "key_residual_px": self.key_residual_px,
            "key_points": self.key_points,
            "pattern_agreement": self.pattern_agreement,
        }


def keyboard_from_corners(corners_px, image_size: tuple[int, int], source: str = "given") -> KeyboardFrame:
    corners = np.asarray(corners_px, dtype=float).reshape(-1, 2)
    if corners.shape != (4, 2):
        raise KeyboardError(f"corners {corners_px!r}: need 4 points ({', '.join(CORNER_NAMES)})")
    width, height = image_size
    outside = [CORNER_NAMES[i] for i, (u, v) in enumerate(corners) if not (-1 <= u <= width and -1 <= v <= height)]
    if outside:
        raise KeyboardError(f"corners {corners.tolist()}: {', '.join(outside)} outside the {width}x{height} image")
    frame = KeyboardFrame(corners_px=corners, image_size=(int(width), int(height)), source=source)
    _ = frame.homography  # fail early on a degenerate quadrilateral
    return frame


def parse_corners(text: str) -> np.ndarray:
    """'u,v u,v u,v u,v' (or 8 numbers separated by commas/spaces/semicolons) -> (4, 2)."""
    numbers = text.replace(";", " ").replace(",", " ").split()
    try:
        values = [float(n) for n in numbers]
    except ValueError as exc:
        raise KeyboardError(f"--corners {text!r}: not numbers ({exc})") from None
    if len(values) != 8:
        raise KeyboardError(f"--corners {text!r}: need 8 numbers (u,v for {', '.join(CORNER_NAMES)}), "
                            f"got {len(values)}")
    return np.array(values).reshape(4, 2)


# ----------------------------------------------------------------------------- detection


def background_plate(frames: list[np.ndarray]) -> np.ndarray:
    """The keyboard without the hands, from a few frames.

    Per pixel the least saturated sample where that one is achromatic (keys
    are, skin is not: one frame with the key uncovered is enough), else the
    median (a median alone needs the key uncovered in most frames).
    """
    if not frames:
        raise KeyboardError("no frames to find the keyboard in")
    stack = np.stack(frames)
    saturation = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2HSV)[..., 1] for f in frames])
    pick = np.argmin(saturation, axis=0)
    least = np.take_along_axis(stack, pick[None, ..., None], axis=0)[0]
    median = np.median(stack, axis=0).astype(np.uint8)
    achromatic = np.take_along_axis(saturation, pick[None], axis=0)[0] < 25
    return np.where(achromatic[..., None], least, median)


def _white_mask(image: np.ndarray) -> np.ndarray:
    """Bright, achromatic pixels: white keys. Skin (arms, hands) is bright too, but more saturated
    than the keys' white, whose saturation is read off the brightest pixels."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    value, saturation = hsv[..., 2], hsv[..., 1].astype(float)
    threshold, _ = cv2.threshold(value, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    brightest = value >= np.percentile(value, 98)
    white_saturation = float(np.median(saturation[brightest]))
    max_saturation = float(np.clip(white_saturation + 20, 25, 60))
    white = (value > max(threshold, 110)) & (saturation < max_saturation)
    # Bridge the thin gaps between white keys; black keys (much wider) stay notches.
    return cv2.morphologyEx(white.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 5), np.uint8))


def _quadrilateral(contour: np.ndarray) -> np.ndarray:
    hull = cv2.convexHull(contour)
    perimeter = cv2.arcLength(hull, True)
    for fraction in np.linspace(0.005, 0.1, 40):
        approx = cv2.approxPolyDP(hull, fraction * perimeter, True)
        if len(approx) == 4:
            return approx[:, 0, :].astype(float)
    raise KeyboardError("the brightest large region is not a quadrilateral (no keyboard in view?)")


def _line_intersection(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (p, d), (q, e) = a, b
    t = np.linalg.solve(np.array([d, -e]).T, q - p)[0]
    return p + t * d


def _refine_corners(quad: np.ndarray, contour: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Fits each side to the contour points near it (away from the corners); corners = side intersections."""
    points = contour[:, 0, :].astype(float)
    centre = quad.mean(axis=0)
    lines = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        d = (b - a) / np.linalg.norm(b - a)
        n = np.array([-d[1], d[0]])
        t = (points - a) @ d
        dist = (points - a) @ n
        near = (np.abs(dist) < tolerance_px) & (t > 0.05 * np.linalg.norm(b - a)) & (t < 0.95 * np.linalg.norm(b - a))
        if near.sum() < 10:
            lines.append((a, d))
            continue
        vx, vy, x0, y0 = cv2.fitLine(points[near].astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        p, d = np.array([x0, y0], float), np.array([vx, vy], float)
        outward = np.array([-d[1], d[0]])
        if outward @ (p - centre) < 0:
            outward = -outward
        lines.append((p + 0.5 * outward, d))  # contour pixels are the inner boundary: the edge is half a pixel out
    return np.array([_line_intersection(lines[i - 1], lines[i]) for i in range(4)])


def _profile(gray: np.ndarray, frame: KeyboardFrame, x: float, ys: np.ndarray) -> np.ndarray:
    """Grey values along the key-frame line x = const, at the given ys."""
    px = frame.to_image(np.stack([np.full_like(ys, x), ys], axis=-1)).astype(np.float32)
    return cv2.remap(gray, px[None, :, 0], px[None, :, 1], cv2.INTER_LINEAR)[0].astype(float)


def _dark(profile: np.ndarray) -> np.ndarray:
    threshold, _ = cv2.threshold(np.clip(profile, 0, 255).astype(np.uint8)[None], 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return profile < threshold


_SAMPLES = 6000  # along the keyboard: 0.2 mm apart


def _black_line() -> float:
    geometry = key_geometry()
    return float(geometry.centers[geometry.is_black, 0].mean())


def _pattern_agreement(gray: np.ndarray, frame: KeyboardFrame) -> float:
    """Fraction of the black-key line whose dark/bright matches the model (edges and gaps left out)."""
    geometry = key_geometry()
    ys = np.linspace(*geometry.corners[[0, 1], 1], _SAMPLES)
    line = np.stack([np.full_like(ys, _black_line()), ys], axis=-1)
    expected = geometry.key_at(line)
    expected_black = (expected >= 0) & geometry.is_black[np.maximum(expected, 0)]
    margin = 0.0015
    clear = (geometry.key_at(line - [0, margin]) == expected) & (geometry.key_at(line + [0, margin]) == expected)
    clear &= expected >= 0
    dark = _dark(_profile(gray, frame, _black_line(), ys))
    return float(np.mean((dark == expected_black)[clear]))


def _orient(quad: np.ndarray, gray: np.ndarray, image_size: tuple[int, int]) -> KeyboardFrame:
    """Chooses which long side is the back and which end is A0: the black-key pattern decides."""
    sides = [np.linalg.norm(quad[(i + 1) % 4] - quad[i]) for i in range(4)]
    if sides[0] + sides[2] < sides[1] + sides[3]:
        quad = np.roll(quad, -1, axis=0)  # c0c1 is now a long side
    c0, c1, c2, c3 = quad
    hypotheses = [(c0, c1, c2, c3), (c1, c0, c3, c2), (c3, c2, c1, c0), (c2, c3, c0, c1)]
    scored = []
    for corners in hypotheses:
        frame = KeyboardFrame(corners_px=np.array(corners), image_size=image_size, source="auto")
        scored.append((_pattern_agreement(gray, frame), frame))
    agreement, frame = max(scored, key=lambda s: s[0])
    if agreement < 0.8:
        raise KeyboardError(
            f"keyboard-like region found but its black keys do not match an 88-key piano "
            f"(best pattern agreement {agreement:.2f} < 0.80); give --corners"
        )
    return frame


def _key_points(gray: np.ndarray, frame: KeyboardFrame) -> tuple[np.ndarray, np.ndarray]:
    """Key landmarks found near where `frame` puts them: (image points, model points).

    Black keys: the centre of each dark run on the black-key line. White keys:
    the dark line between two white keys, in front of the black keys.
    """
    geometry = key_geometry()
    ys = np.linspace(*geometry.corners[[0, 1], 1], _SAMPLES)
    image_pts, model_pts = [], []
    x_black = _black_line()
    dark = _dark(_profile(gray, frame, x_black, ys))
    for key in np.flatnonzero(geometry.is_black):
        i = j = int(np.argmin(np.abs(ys - geometry.centers[key, 1])))
        if not dark[i]:
            continue
        while i > 0 and dark[i - 1]:
            i -= 1
        while j < len(ys) - 1 and dark[j + 1]:
            j += 1
        if ys[j] - ys[i] > 3 * geometry.half_sizes[key, 1]:
            continue  # merged with something else (a hand left on the plate)
        image_pts.append(frame.to_image(np.array([x_black, 0.5 * (ys[i] + ys[j])])))
        model_pts.append([x_black, geometry.centers[key, 1]])
    white = np.flatnonzero(~geometry.is_black)
    black_front = float((geometry.centers[geometry.is_black, 0] + geometry.half_sizes[geometry.is_black, 0]).max())
    x_front = 0.5 * (black_front + geometry.corners[2, 0])  # halfway between the black keys' ends and the front edge
    profile = _profile(gray, frame, x_front, ys)
    step = ys[1] - ys[0]
    for a, b in zip(white[:-1], white[1:]):
        y_gap = 0.5 * (geometry.centers[a, 1] + geometry.half_sizes[a, 1]
                       + geometry.centers[b, 1] - geometry.half_sizes[b, 1])
        window = np.flatnonzero(np.abs(ys - y_gap) < 0.004)
        k = window[np.argmin(profile[window])]
        if k in (window[0], window[-1]) or np.median(profile[window]) - profile[k] < 15:
            continue
        left, mid, right = profile[k - 1:k + 2]
        denominator = left - 2 * mid + right
        sub = 0.5 * (left - right) / denominator if denominator > 0 else 0.0
        image_pts.append(frame.to_image(np.array([x_front, ys[k] + sub * step])))
        model_pts.append([x_front, y_gap])
    return np.array(image_pts).reshape(-1, 2), np.array(model_pts).reshape(-1, 2)


def _refine(gray: np.ndarray, frame: KeyboardFrame, iterations: int = 3) -> KeyboardFrame:
    """Homography from the corners and every key landmark found: an 8:1 quadrilateral's four
    corners alone leave the middle of the keyboard a few millimetres off."""
    corners_model = key_geometry().corners
    for _ in range(iterations):
        image_pts, model_pts = _key_points(gray, frame)
        if len(image_pts) < 20:
            break
        h = _homography(np.vstack([frame.corners_px, image_pts]), np.vstack([corners_model, model_pts]))
        frame = KeyboardFrame(corners_px=apply_homography(np.linalg.inv(h), corners_model),
                              image_size=frame.image_size, source="auto")
    image_pts, model_pts = _key_points(gray, frame)
    residual = float(np.sqrt(np.mean(np.sum((frame.to_image(model_pts) - image_pts) ** 2, axis=-1)))) \
        if len(image_pts) else None
    return KeyboardFrame(corners_px=frame.corners_px, image_size=frame.image_size, source="auto",
                         key_residual_px=residual, key_points=len(image_pts),
                         pattern_agreement=_pattern_agreement(gray, frame))


def detect_keyboard(image: np.ndarray) -> KeyboardFrame:
    """Finds an 88-key keyboard seen from above in a BGR image (best on a `background_plate`)."""
    height, width = image.shape[:2]
    mask = _white_mask(image)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        raise KeyboardError(f"no bright region in the {width}x{height} image")
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[biggest, cv2.CC_STAT_WIDTH] < 0.2 * width and stats[biggest, cv2.CC_STAT_HEIGHT] < 0.2 * width:
        raise KeyboardError(f"the largest bright region is {stats[biggest, cv2.CC_STAT_WIDTH]} px wide: "
                            f"no full keyboard in the {width}x{height} image; give --corners")
    # A hand lying across the keys cuts the white keys in pieces: keep every large piece in the same row.
    across = (cv2.CC_STAT_TOP, cv2.CC_STAT_HEIGHT) if stats[biggest, cv2.CC_STAT_WIDTH] >= \
        stats[biggest, cv2.CC_STAT_HEIGHT] else (cv2.CC_STAT_LEFT, cv2.CC_STAT_WIDTH)

    def overlap(i: int) -> float:
        a0, a1 = stats[biggest, across[0]], stats[biggest, across[0]] + stats[biggest, across[1]]
        b0, b1 = stats[i, across[0]], stats[i, across[0]] + stats[i, across[1]]
        return (min(a1, b1) - max(a0, b0)) / max(1, min(a1 - a0, b1 - b0))

    pieces = [i for i in range(1, n)
              if stats[i, cv2.CC_STAT_AREA] > 0.05 * stats[biggest, cv2.CC_STAT_AREA] and overlap(i) > 0.5]
    region = np.isin(labels, pieces).astype(np.uint8)
    span = max(region.any(axis=0).sum(), region.any(axis=1).sum())
    if span < 0.3 * width:
        raise KeyboardError(f"the bright key-like regions span {span} px: no full keyboard in the "
                            f"{width}x{height} image; give --corners")
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = np.vstack(contours)
    quad = _quadrilateral(contour)
    quad = _refine_corners(quad, contour, tolerance_px=max(2.0, 0.004 * width))
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    frame = _refine(gray, _orient(quad, gray, (width, height)))
    logger.info("keyboard found: corners %s, pattern agreement %.3f, %d key points, residual %s px",
                np.round(frame.corners_px, 1).tolist(), frame.pattern_agreement, frame.key_points,
                frame.key_residual_px)
    return frame
