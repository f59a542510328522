"""Where the 88 keys are, read from robopianist's piano model alone (no hands, no song).

The env attaches the piano at the world origin, so the key geoms of the
standalone model sit exactly where they are in every env (a test checks it
against `envs.control.nominal.geometry.KeyboardGeometry.from_env`). Building
the piano takes a fraction of a second, a whole env several seconds, so
policies that need the key positions (PianoMime's goal SDF, App. G; the
fingertip snap to the key midline, App. H) read them here.

Axes (robopianist): x towards the player, y along the keyboard (A0 at -y),
z up; keys at rest.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from envs.piano.spec import N_KEYS


@dataclasses.dataclass(frozen=True)
class KeyGeometry:
    """Key geoms at rest, world frame, metres; key i is MIDI note 21 + i."""

    centers: np.ndarray  # (88, 3) geom centres
    half_sizes: np.ndarray  # (88, 3) geom half extents (x: half length, y: half width, z: half height)

    @property
    def tops(self) -> np.ndarray:
        """(88, 3) centre of each key's top surface."""
        tops = self.centers.copy()
        tops[:, 2] += self.half_sizes[:, 2]
        return tops

    @property
    def is_black(self) -> np.ndarray:
        top = self.tops[:, 2]
        return top > top.min() + 1e-6

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) corners of the box around every key, grown by `margin` on each side."""
        low = (self.centers - self.half_sizes).min(0) - margin
        high = (self.centers + self.half_sizes).max(0) + margin
        return low, high


@functools.lru_cache(maxsize=1)
def key_geometry() -> KeyGeometry:
    """The piano's key geometry (computed once per process; arrays are read-only)."""
    from dm_control import mjcf
    from robopianist.models.piano import piano

    model = piano.Piano()
    physics = mjcf.Physics.from_mjcf_model(model.mjcf_model)
    bound = physics.bind([key.geom[0] for key in model.keys])
    centers = np.array(bound.xpos, dtype=np.float64)
    half_sizes = np.array(bound.size, dtype=np.float64)
    if centers.shape != (N_KEYS, 3):
        raise RuntimeError(f"robopianist's piano has {len(centers)} keys, expected {N_KEYS}")
    for array in (centers, half_sizes):
        array.setflags(write=False)
    return KeyGeometry(centers=centers, half_sizes=half_sizes)
