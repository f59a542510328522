"""Fingertip plan from the notes: step-wise OT assignment with penalties, then the phrase fingering
of `envs.control.fingering` as a hint.

Assignment (`plan_from_goals`), step by step through the chunk: a key that
stays down keeps its finger; the keys that go down at step t are matched
to the free fingers by a linear assignment (`scipy.optimize.
linear_sum_assignment`, as `envs.piano.ot`) against the planned fingertip
positions of step t-1, so the fingers move as little as possible. The cost
(`assignment_costs`) is the squared fingertip-key distance (1-D optimal
transport with a convex cost is monotone: the fingers of a hand do not
cross each other to reach a run of keys) plus penalties: a finger that
pressed another key a step earlier must lift first (`switch_cost`); the
thumb barely reaches a key top with this hand (`thumb_cost`); a key beyond
the other hand, or a finger passing a (non-thumb) finger of its own hand
that holds a key (`crossing_cost`); lookahead: a finger that leaves too
few fingers on one side for the keys its hand holds or presses within
`prepare_steps` (`room_cost`). A held key whose note ends within `early_release_steps` may
be let go to free its finger (legato overlaps would otherwise force the
thumb or a crossing). `envs.piano.ot.ot_assign` solves the plain Euclidean
problem of the reward; the penalties need this own cost matrix. Keys beyond
the available fingers stay unassigned (counted in `FingertipPlan.unassigned`).
Step by step, this "walks" one finger along a legato run (each walked note
starts ~4 steps late). So the first pass only splits the notes between the
hands; `envs.control.fingering.plan_fingering` then plans each hand's fingers over
the whole chunk (dynamic programming with hand shifts, walks, stretches,
crossings and thumbs as costs) and a second pass follows that plan at
`fingering_hint_cost` for any other finger.

Fingertip targets (PianoMime Appendix A, step 4): a pressing fingertip is
put on its key (`KeyboardGeometry.press_targets`), `press_depth` below the
key top; the other fingertips hover `hover_height` above the white key
tops, spread like a hand around the pressing fingers of their hand
(interpolated by finger index between them, natural spacing outside). A
hand with nothing to press moves ahead to where it presses next (within
`prepare_steps`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from envs.control.fingering import plan_fingering
from envs.control.nominal.config import HAND_DIRECTION, WHITE_KEY_PITCH, NominalConfig
from envs.control.nominal.geometry import FingertipPlan, KeyboardGeometry, hand_of, usable_fingers
from envs.piano.spec import FINGERS_PER_HAND, N_FINGERTIPS, N_KEYS

if TYPE_CHECKING:
    from envs.piano.env import PianoEnv

logger = logging.getLogger(__name__)


def assignment_costs(new_keys: np.ndarray, free: np.ndarray, prev_pos: np.ndarray, prev_key: np.ndarray,
                     held: dict[int, int], geometry: KeyboardGeometry, config: NominalConfig,
                     upcoming: np.ndarray | None = None, fingers: np.ndarray | None = None) -> np.ndarray:
    """(len(new_keys), len(free)) cost of pressing each new key with each free finger.

    Squared distance from the finger's previous planned position to the key's
    press point, plus the switch, thumb, crossing and room penalties (module
    docstring). `held` maps fingers still holding a key at this step to that
    key; `upcoming` are the keys going down in the next steps (room penalty);
    `fingers` the fingers that may press.
    """
    points = geometry.press_targets(config)[new_keys]  # (K, 3)
    cost = ((points[:, None, :] - prev_pos[free][None, :, :]) ** 2).sum(-1)
    cost += config.switch_cost * (prev_key[free] >= 0)[None, :]
    cost += config.thumb_cost * (free % FINGERS_PER_HAND == 0)[None, :]
    key_y = points[:, 1][:, None]
    for j, finger in enumerate(free):
        hand = hand_of(finger)
        direction = HAND_DIRECTION[hand]
        # Hands crossing: a key beyond the innermost finger of the other hand
        # (thumbs aside: they hang below the hand, and other fingers pass over them).
        other = np.array([f for f in range(N_FINGERTIPS) if hand_of(f) != hand and f % FINGERS_PER_HAND != 0])
        inner_other = (prev_pos[other, 1] * direction).min() * direction
        beyond = np.maximum(0.0, (inner_other - key_y[:, 0]) * direction)
        cost[:, j] += config.crossing_cost * (beyond > 0) + config.crossing_cost * beyond / WHITE_KEY_PITCH
        # Same hand: fingers keep their order across the keyboard relative to
        # the keys held now. Free fingers do not count: the hand moves them
        # along (a hand shift), they are laid out around the pressing ones.
        for other_finger in range(hand * FINGERS_PER_HAND, (hand + 1) * FINGERS_PER_HAND):
            if other_finger == finger or (other_finger % FINGERS_PER_HAND == 0) or finger % FINGERS_PER_HAND == 0:
                continue
            if other_finger not in held:
                continue
            order = np.sign(finger - other_finger) * direction  # +1: this finger lies at larger y
            other_y = geometry.centers[held[other_finger], 1]
            wrong = (key_y[:, 0] - other_y) * order <= 0
            cost[wrong, j] += config.crossing_cost
    if upcoming is not None and len(upcoming) and config.room_cost > 0:
        cost += _room_penalty(new_keys, free, held, upcoming, prev_pos, geometry, config,
                              np.arange(N_FINGERTIPS) if fingers is None else fingers)
    return cost


def _room_penalty(new_keys: np.ndarray, free: np.ndarray, held: dict[int, int], upcoming: np.ndarray,
                  prev_pos: np.ndarray, geometry: KeyboardGeometry, config: NominalConfig,
                  fingers: np.ndarray) -> np.ndarray:
    """Lookahead: a finger should leave enough fingers on each side of it for the keys its
    hand holds or will press soon (else the hand must cross fingers or jump later).

    The keys of a hand are those on its side of the midpoint between the hands;
    thumbs are not counted as available (see `thumb_cost`). Cost `room_cost`
    per missing finger.
    """
    boundary = 0.5 * (prev_pos[:FINGERS_PER_HAND, 1].min() + prev_pos[FINGERS_PER_HAND:, 1].max())
    keys = np.union1d(np.asarray(upcoming, dtype=int), np.array(list(held.values()), dtype=int))
    key_y_all = geometry.centers[keys, 1]
    penalty = np.zeros((len(new_keys), len(free)))
    usable = set(int(f) for f in fingers if f % FINGERS_PER_HAND != 0)
    for j, finger in enumerate(free):
        hand = hand_of(finger)
        direction = HAND_DIRECTION[hand]
        mine = key_y_all[(key_y_all - boundary) * direction > 0]
        base = hand * FINGERS_PER_HAND
        thumb_side = sum(1 for f in usable if base <= f < finger)
        little_side = sum(1 for f in usable if finger < f < base + FINGERS_PER_HAND)
        for r, k in enumerate(new_keys):
            offset = (mine - geometry.centers[k, 1]) * direction
            need_thumb_side = int((offset < -1e-6).sum())
            need_little_side = int((offset > 1e-6).sum())
            penalty[r, j] = config.room_cost * (max(0, need_thumb_side - thumb_side)
                                                + max(0, need_little_side - little_side))
    return penalty


def _hand_layout(fingers: np.ndarray, pressing_y: dict[int, float], prev_y: np.ndarray,
                 config: NominalConfig) -> dict[int, float]:
    """y of the hovering fingers of one hand around its pressing fingers."""
    if not pressing_y:
        return {f: float(prev_y[f]) for f in fingers}
    hand = hand_of(int(fingers[0]))
    direction = HAND_DIRECTION[hand]
    spacing = np.asarray(config.finger_spacing_keys) * WHITE_KEY_PITCH * direction
    base = hand * FINGERS_PER_HAND
    known = sorted(pressing_y)
    layout = {}
    for f in fingers:
        if f in pressing_y:
            layout[f] = pressing_y[f]
            continue
        lower = [k for k in known if k < f]
        upper = [k for k in known if k > f]
        if lower and upper:  # between two pressing fingers: interpolate by finger index
            a, b = lower[-1], upper[0]
            w = (f - a) / (b - a)
            layout[f] = (1 - w) * pressing_y[a] + w * pressing_y[b]
        else:  # outside them: natural spacing from the nearest pressing finger
            ref = lower[-1] if lower else upper[0]
            layout[f] = pressing_y[ref] + spacing[f - base] - spacing[ref - base]
    return layout


def plan_from_goals(goal_keys: np.ndarray, geometry: KeyboardGeometry, start_fingertips: np.ndarray,
                    config: NominalConfig | None = None, fingers: np.ndarray | None = None,
                    hint: np.ndarray | None = None) -> FingertipPlan:
    """Assign fingers to the goal keys of every step and place the fingertips (module docstring, 1-2).

    Args:
        goal_keys: (T, 88) bool, the keys that must be down at (the end of) each step.
        geometry: key press points and tops.
        start_fingertips: (10, 3) fingertip positions before the first step.
        fingers: finger indices that may press (default all 10).
        hint: (T, 88) int, a planned finger per goal key-step (-1: none); a new
            key pays `fingering_hint_cost` for any other finger.
    """
    config = config or NominalConfig()
    goal_keys = np.asarray(goal_keys, dtype=bool)
    if goal_keys.ndim != 2 or goal_keys.shape[1] != N_KEYS:
        raise ValueError(f"plan_from_goals: goal_keys shape {goal_keys.shape}, expected (T, {N_KEYS})")
    start = np.asarray(start_fingertips, dtype=np.float64)
    if start.shape != (N_FINGERTIPS, 3):
        raise ValueError(f"plan_from_goals: start_fingertips shape {start.shape}, expected ({N_FINGERTIPS}, 3)")
    fingers = np.arange(N_FINGERTIPS) if fingers is None else np.asarray(fingers, dtype=int)
    n_steps = len(goal_keys)
    targets = np.zeros((n_steps, N_FINGERTIPS, 3))
    key = np.full((n_steps, N_FINGERTIPS), -1, dtype=np.int32)
    unassigned = np.zeros(n_steps, dtype=np.int32)
    hover_z = geometry.white_top + config.hover_height
    hover_x = geometry.hover_x(config)
    press = geometry.press_targets(config)
    hands = [np.arange(FINGERS_PER_HAND), np.arange(FINGERS_PER_HAND, N_FINGERTIPS)]

    # Run length of each key's goal from each step (steps left in its note).
    remaining = np.zeros((n_steps + 1, N_KEYS), dtype=np.int32)
    for t in range(n_steps - 1, -1, -1):
        remaining[t] = np.where(goal_keys[t], remaining[t + 1] + 1, 0)
    dropped: set[int] = set()  # keys released early to free their finger, until their note ends

    prev_pos, prev_key = start.copy(), np.full(N_FINGERTIPS, -1, dtype=np.int32)
    for t in range(n_steps):
        keys_now = np.flatnonzero(goal_keys[t])
        dropped &= set(int(k) for k in keys_now)
        held = {int(f): int(prev_key[f]) for f in fingers if prev_key[f] >= 0 and goal_keys[t, prev_key[f]]}
        new_keys = np.array([k for k in keys_now if k not in held.values() and k not in dropped], dtype=int)
        # A finger whose note ends within `early_release_steps` may let go of it
        # for a new key (legato overlaps would otherwise force a thumb or crossing).
        releasable = {f: k for f, k in held.items() if remaining[t, k] <= config.early_release_steps}
        free = np.array([f for f in fingers if f not in held or f in releasable], dtype=int)
        assigned = dict(held)
        if len(new_keys) and len(free):
            window = goal_keys[t:t + config.prepare_steps + 1]
            before = goal_keys[t - 1:t] if t > 0 else np.zeros((1, N_KEYS), dtype=bool)
            onsets = window & ~np.vstack([before, window[:-1]])
            upcoming = np.flatnonzero(onsets.any(axis=0))
            cost = assignment_costs(new_keys, free, prev_pos, prev_key, held, geometry, config, upcoming, fingers)
            if hint is not None:
                wanted = hint[t, new_keys][:, None]
                cost += config.fingering_hint_cost * ((wanted >= 0) & (wanted != free[None, :]))
            for j, f in enumerate(free):
                if f in releasable:
                    cost[:, j] += config.early_release_cost * remaining[t, releasable[f]]
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                finger = int(free[c])
                if finger in releasable:
                    dropped.add(releasable[finger])
                assigned[finger] = int(new_keys[r])
        unassigned[t] = len(keys_now) - len(assigned)
        for f, k in assigned.items():
            key[t, f] = k
        pos = np.empty((N_FINGERTIPS, 3))
        for hand_fingers in hands:
            pressing_y = {f: float(press[key[t, f], 1]) for f in hand_fingers if key[t, f] >= 0}
            layout = _hand_layout(hand_fingers, pressing_y, prev_pos[:, 1], config)
            for f in hand_fingers:
                if key[t, f] >= 0:
                    pos[f] = press[key[t, f]]
                else:
                    pos[f] = (hover_x, layout[f], hover_z)
        targets[t] = pos
        prev_pos, prev_key = pos, key[t].copy()

    _prepare_idle_hands(targets, key, hands, config.prepare_steps)
    return FingertipPlan(targets=targets, pressing=key >= 0, key=key, unassigned=unassigned)


def _prepare_idle_hands(targets: np.ndarray, key: np.ndarray, hands: list, prepare_steps: int) -> None:
    """A hand with no key down moves (hovering) to its fingers' y at its next press, up to
    `prepare_steps` ahead (in place)."""
    if prepare_steps <= 0:
        return
    n_steps = len(key)
    for hand_fingers in hands:
        busy = (key[:, hand_fingers] >= 0).any(axis=1)
        next_busy = n_steps  # first busy step after t
        for t in range(n_steps - 1, -1, -1):
            if busy[t]:
                next_busy = t
                continue
            if next_busy < n_steps and next_busy - t <= prepare_steps:
                targets[t, hand_fingers, :2] = targets[next_busy, hand_fingers, :2]



def plan_fingertips(env: "PianoEnv", config: NominalConfig | None = None) -> FingertipPlan:
    """The goal-timed fingertip plan of the env's chunk (resets the env)."""
    config = config or NominalConfig()
    env.reset()
    geometry = KeyboardGeometry.from_env(env)
    start = env.task.fingertip_positions(env.physics)
    goal = env.task.goal_keys()
    fingers = usable_fingers(env.config)
    plan = plan_from_goals(goal, geometry, start, config, fingers)
    if config.fingering_hint_cost <= 0:
        return plan
    hint = plan_fingering(goal, plan.key, geometry.press_targets(config)[:, 1], fingers, config.finger_spacing_keys,
                          WHITE_KEY_PITCH, config.fingering)
    return plan_from_goals(goal, geometry, start, config, fingers, hint)

