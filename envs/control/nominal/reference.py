"""The nominal from a demonstration's fingertips (PianoMime 3.2: IK of the video's fingertip trajectory).

A chunk cut from a ``video:`` song carries the video's fingertips on its steps
(`envs.music.reference.ChunkReference`). `reference_plan` turns them into a
`FingertipPlan` at goal timing, the same object the note-based planner makes,
so the press schedule, the hover/lift rules and the IK (`trajectory.ik_along`)
are shared:

- a finger the video has pressing goes onto the key under it (the key whose
  footprint holds the fingertip, black keys first; the nearest key by x
  otherwise), at that key's press target; a hovering finger keeps the video's
  y (across the keys: where the hand is), at the plan's hover x and height (a
  human fingertip's depth along the key is not one the Shadow hand can take:
  the IK missed video x by a median 36 mm on a test video, against 0.5 mm in y);
- where the video lost a finger (NaN), the note-based plan's entry for that
  finger is used, unless a tracked finger presses that key within
  `TAKEN_WINDOW_STEPS` (the video's and the goal's note edges differ by a step
  or so); a lost finger that hovers is held with `LOST_WEIGHT` of the hover
  weight, so that it does not pull its hand away from the tracked fingers.

`reference_trajectory` is `nominal_trajectory`'s counterpart (cached the same
way), without the open-loop search: the video decides the fingering.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from envs.control.nominal.config import NominalConfig
from envs.control.nominal.geometry import FingertipPlan, KeyboardGeometry
from envs.control.nominal.plan import plan_fingertips
from envs.control.nominal.timing import leaving_keys, command_targets, schedule_presses
from envs.control.nominal.trajectory import NominalTrajectory, ik_along, sustain_goal

if TYPE_CHECKING:
    from envs.music.chunks import Chunk
    from envs.music.reference import ChunkReference
    from envs.piano.config import EnvConfig
    from envs.piano.env import PianoEnv

logger = logging.getLogger(__name__)


TAKEN_WINDOW_STEPS = 3
LOST_WEIGHT = 0.05


class NoReferenceError(ValueError):
    """A chunk without a fingertip reference asked for the reference nominal."""


def keys_under(xy: np.ndarray, geometry: KeyboardGeometry) -> np.ndarray:
    """(...,) the key whose footprint holds each x-y point (black keys first), else the nearest key
    by y among the white keys (a fingertip just in front of or behind the keys)."""
    d = np.abs(xy[..., None, :] - geometry.centers[:, :2])  # (..., 88, 2)
    inside = np.all(d <= geometry.half_sizes[:, :2], axis=-1)
    black = np.where(inside & geometry.is_black, np.arange(len(geometry.centers)), -1).max(axis=-1)
    white = np.where(inside & ~geometry.is_black, np.arange(len(geometry.centers)), -1).max(axis=-1)
    whites = np.flatnonzero(~geometry.is_black)
    nearest = whites[np.argmin(np.abs(xy[..., None, 1] - geometry.centers[whites, 1]), axis=-1)]
    return np.where(black >= 0, black, np.where(white >= 0, white, nearest))


def reference_plan(reference: "ChunkReference", fallback: FingertipPlan, geometry: KeyboardGeometry,
                   config: NominalConfig) -> FingertipPlan:
    """The video's fingertips as a goal-timed `FingertipPlan` (see module docstring)."""
    n_steps = fallback.n_steps
    if len(reference.positions) != n_steps:
        raise ValueError(f"reference of {len(reference.positions)} steps for a chunk of {n_steps}")
    valid = reference.valid
    press = geometry.press_targets(config)
    key = np.where(valid & reference.pressing, keys_under(np.nan_to_num(reference.positions[..., :2]), geometry), -1)
    targets = np.array(reference.positions, dtype=np.float64)
    targets[..., 0] = geometry.hover_x(config)
    targets[..., 2] = geometry.white_top + config.hover_height
    down = key >= 0
    targets[down] = press[key[down]]
    tracked_keys = key.copy()
    for t, f in zip(*np.nonzero(~valid)):  # lost fingers: the note plan's, unless the key is taken
        k = fallback.key[t, f]
        near = tracked_keys[max(0, t - TAKEN_WINDOW_STEPS): t + TAKEN_WINDOW_STEPS + 1]
        if k >= 0 and (k in near or k in key[t]):
            k = -1
        key[t, f] = k
        targets[t, f] = fallback.targets[t, f]
        if k < 0:
            targets[t, f, 2] = max(targets[t, f, 2], geometry.white_top + config.hover_height)
    pressing = key >= 0
    return FingertipPlan(targets=targets, pressing=pressing, key=key, unassigned=fallback.unassigned.copy())


def solve_reference_trajectory(env: "PianoEnv", reference: "ChunkReference", sustain: np.ndarray,
                               config: NominalConfig | None = None) -> NominalTrajectory:
    """Schedule and solve the IK along the video's fingertips (resets the env, does not step it)."""
    config = config or NominalConfig()
    fallback = plan_fingertips(env, config)  # resets the env
    geometry = KeyboardGeometry.from_env(env)
    plan = reference_plan(reference, fallback, geometry, config)
    command = schedule_presses(plan, config)
    targets = command_targets(plan, command, geometry, config)
    anchored = command >= 0
    if config.lift_in_place:
        anchored |= leaving_keys(command)
    weights = np.where(anchored[..., None], np.asarray(config.press_weight), np.asarray(config.hover_weight))
    weights = np.where((~reference.valid & ~anchored)[..., None], LOST_WEIGHT * weights, weights)
    return ik_along(env, plan, command, targets, anchored, sustain, config, geometry, first_targets=plan.targets[0],
                    weights=weights)


def reference_trajectory(chunk: "Chunk", env_config: "EnvConfig | None" = None,
                         config: NominalConfig | None = None) -> NominalTrajectory:
    """The reference nominal of a chunk cut from a ``video:`` song."""
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env

    if chunk.reference is None:
        raise NoReferenceError(f"{chunk.chunk_id}: the chunk has no fingertip reference (only songs loaded from "
                               "a video demonstration, video:<folder>, have one); use nominal_source: plan")
    env = make_env(chunk, env_config or EnvConfig(), seed=0)
    try:
        trajectory = solve_reference_trajectory(env, chunk.reference, sustain_goal(chunk, chunk.n_steps), config)
    finally:
        env.close()
    logger.info("%s: reference nominal of %d steps (%.0f%% of fingertip-steps tracked)", chunk.chunk_id,
                len(trajectory.actions), 100 * chunk.reference.valid.mean())
    return trajectory
