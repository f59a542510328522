"""Rescaling between the agents' canonical action range [-1, 1] and an env's [low, high].

Policies here always output actions in [-1, 1] (tanh-squashed). An env whose
action spec has bounds [low, high] per dimension receives
    env_action = low + (action + 1) * (high - low) / 2,
and logged env actions are mapped back with the inverse. Both are affine, so
they work on numpy or JAX arrays with any leading batch axes.
"""

from __future__ import annotations

import numpy as np


def _checked_bounds(low, high) -> tuple[np.ndarray, np.ndarray]:
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    if low.shape != high.shape:
        raise ValueError(
            f"action bounds disagree in shape: low {low.shape} vs high {high.shape}"
        )
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"action bounds must be finite to rescale, got low={low} high={high}"
        )
    bad = np.flatnonzero(~(high > low))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"action bound high must exceed low in every dimension; dimension {i} has "
            f"low={float(low.ravel()[i])} high={float(high.ravel()[i])}"
        )
    return low, high


def to_env_action(action, low, high):
    """Maps actions in [-1, 1] to [low, high] (elementwise, broadcasting over batch)."""
    low, high = _checked_bounds(low, high)
    return low + (action + 1.0) * (0.5 * (high - low))


def from_env_action(env_action, low, high):
    """Inverse of `to_env_action`: maps [low, high] to [-1, 1]."""
    low, high = _checked_bounds(low, high)
    return 2.0 * (env_action - low) / (high - low) - 1.0
