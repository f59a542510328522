"""Optimal-transport fingering (RP1M section 4.1, Eq. 1-2).

Each control step, the keys that should be down are matched to fingertips so
that the summed fingertip-to-key distance is minimal (each key gets one finger,
each finger presses at most one key). The matching is a rectangular linear
assignment problem solved with SciPy's modified Jonker-Volgenant algorithm.

Edge cases (decided here, documented in README):
- No key to press: the assignment is empty, d_OT = 0 and r_OT = 1 (the empty
  sum of Eq. 1; RP1M's released code also returns 1 here).
- More keys than fingers (K > F): the assignment covers the F keys whose
  matching is cheapest overall; the other keys are left unassigned (-1) and add
  nothing to d_OT. Songs that need this are marked unplayable in the catalog
  (max polyphony > number of fingers), so it only happens on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# RP1M Eq. 2: full reward within 1 cm of the key.
OT_CLOSE_ENOUGH = 0.01  # metres
# Gaussian tolerance margin, as robopianist's fingering reward (10x the bound).
OT_MARGIN = 0.1  # metres
# dm_control `tolerance` value at the margin (its default), i.e. the "c" of Eq. 2
# is log(0.1) / margin^2 (Tassa et al., dm_control suite).
OT_VALUE_AT_MARGIN = 0.1


@dataclass(frozen=True)
class OTResult:
    """Outcome of one step's OT fingering."""

    finger_for_key: np.ndarray  # (K,) int: fingertip index for each key, -1 if none
    key_for_finger: np.ndarray  # (F,) int: piano key (0-87) each finger should press, -1 if idle
    distances: np.ndarray  # (K,) matched fingertip-key distances (nan when unassigned)
    d_ot: float  # sum of matched distances, metres (Eq. 1)


def gaussian_tolerance(x: np.ndarray | float, bound: float, margin: float,
                       value_at_margin: float = OT_VALUE_AT_MARGIN) -> np.ndarray:
    """dm_control `rewards.tolerance(x, bounds=(0, bound), margin, sigmoid="gaussian")`
    for non-negative x: 1 inside [0, bound], exp(c * (x - bound)^2) beyond, with c
    chosen so that the value at x = bound + margin is `value_at_margin`."""
    x = np.asarray(x, dtype=np.float64)
    scale = np.sqrt(-2.0 * np.log(value_at_margin))
    beyond = np.maximum(x - bound, 0.0) / margin
    return np.where(x <= bound, 1.0, np.exp(-0.5 * (beyond * scale) ** 2))


def ot_assign(fingertips: np.ndarray, key_positions: np.ndarray, keys: np.ndarray) -> OTResult:
    """Match keys to fingertips minimising the summed Euclidean distance (Eq. 1).

    Args:
        fingertips: (F, 3) fingertip positions (only the fingers that may press).
        key_positions: (K, 3) press points of the keys that should be down.
        keys: (K,) their piano key indices (0-87), used to fill `key_for_finger`.
    """
    fingertips = np.asarray(fingertips, dtype=np.float64).reshape(-1, 3)
    key_positions = np.asarray(key_positions, dtype=np.float64).reshape(-1, 3)
    n_fingers, n_keys = len(fingertips), len(key_positions)
    finger_for_key = np.full(n_keys, -1, dtype=np.int32)
    key_for_finger = np.full(n_fingers, -1, dtype=np.int32)
    distances = np.full(n_keys, np.nan)
    if n_keys == 0 or n_fingers == 0:
        return OTResult(finger_for_key, key_for_finger, distances, 0.0)
    cost = np.linalg.norm(key_positions[:, None, :] - fingertips[None, :, :], axis=-1)
    key_idx, finger_idx = linear_sum_assignment(cost)
    finger_for_key[key_idx] = finger_idx
    key_for_finger[finger_idx] = np.asarray(keys)[key_idx]
    distances[key_idx] = cost[key_idx, finger_idx]
    return OTResult(finger_for_key, key_for_finger, distances, float(cost[key_idx, finger_idx].sum()))


def ot_reward(result: OTResult, reduction: str = "sum") -> float:
    """r_OT of RP1M Eq. 2.

    reduction="sum" (default, the paper): tolerance of d_OT, the summed distance.
    reduction="mean": mean of the per-key tolerances, as RP1M's released code does;
    it shapes better when many keys are down at once.
    """
    if not np.isfinite(result.distances).any():
        return 1.0
    if reduction == "sum":
        return float(gaussian_tolerance(result.d_ot, OT_CLOSE_ENOUGH, OT_MARGIN))
    if reduction == "mean":
        matched = result.distances[np.isfinite(result.distances)]
        return float(gaussian_tolerance(matched, OT_CLOSE_ENOUGH, OT_MARGIN).mean())
    raise ValueError(f"ot reduction {reduction!r}: expected 'sum' or 'mean'")
