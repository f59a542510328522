"""Press timing: commanded keys per finger with press/release leads, the IK targets, lifts (step 3).

Timing (`schedule_presses`, `command_targets`): the plan says which keys
must be *down at the end of* step t (the env scores step t's goal after
step t's physics). Position servos lag, so a finger is commanded down
`press_lead_steps` before its note and lifted `release_lead_steps` before
the note ends (0: lifted in the first step the goal no longer has the
key), with a hovering step between two keys of one finger. A finger goes
down only once the IK has had it above its key for a step (else it lands
on a neighbour and sticks there), and a finger leaving a key first lifts
straight up for a step (`lift_in_place`). The forearm slides, much slower
(critically damped servos, time constant 0.11 s), get controls that invert
their dynamics (`SlideServo.feedforward`), so the hand is where the IK has it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from envs.control.nominal.config import NominalConfig
from envs.control.nominal.geometry import FingertipPlan, KeyboardGeometry
from envs.piano.spec import N_FINGERTIPS

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def schedule_presses(plan: FingertipPlan, config: NominalConfig) -> np.ndarray:
    """(T, 10) int: the key each finger is *commanded* to press at each step, -1 to hover.

    Each finger's press of a key over goal steps [on, off] is commanded over
    [on - press_lead, off - release_lead]; a finger that moves to another key
    keeps at least one hovering step in between (the later press starts later).
    """
    n_steps = plan.n_steps
    command = np.full((n_steps, N_FINGERTIPS), -1, dtype=np.int32)
    for f in range(N_FINGERTIPS):
        col = plan.key[:, f]
        intervals = []  # (on, off, key), goal timing
        t = 0
        while t < n_steps:
            if col[t] < 0:
                t += 1
                continue
            on, k = t, col[t]
            while t + 1 < n_steps and col[t + 1] == k:
                t += 1
            intervals.append((on, t, int(k)))
            t += 1
        last_end = -10**9
        for on, off, k in intervals:
            start = max(0, on - config.press_lead_steps)
            end = min(n_steps - 1, off - config.release_lead_steps)
            end = max(end, on)  # a note is commanded at least over its first goal step
            start = max(start, last_end + 2)  # one hovering step after the previous press
            if start > end:
                continue
            command[start:end + 1, f] = k
            last_end = end
    return command


def command_targets(plan: FingertipPlan, command: np.ndarray, geometry: KeyboardGeometry,
                    config: NominalConfig) -> np.ndarray:
    """(T, 10, 3) fingertip targets at command timing: commanded presses on their keys,
    the other fingertips hovering where the plan has them `press_lead_steps` later."""
    n_steps = plan.n_steps
    ahead = np.minimum(np.arange(n_steps) + config.press_lead_steps, n_steps - 1)
    targets = plan.targets[ahead].copy()
    hover_z = geometry.white_top + config.hover_height
    down = command >= 0
    targets[down] = geometry.press_targets(config)[command[down]]
    lifted = ~down & plan.pressing[ahead]  # pressing in the plan but not commanded (no hover gap yet)
    targets[lifted, 2] = hover_z
    if config.lift_in_place:
        press = geometry.press_targets(config)
        steps, fingers = np.nonzero(leaving_keys(command))
        targets[steps, fingers, :2] = press[command[steps - 1, fingers], :2]
        targets[steps, fingers, 2] = hover_z
    return targets


def leaving_keys(command: np.ndarray) -> np.ndarray:
    """(T, 10) bool: the finger was commanded onto a key at t-1 and is not on that key at t."""
    leaving = np.zeros(command.shape, dtype=bool)
    leaving[1:] = (command[:-1] >= 0) & (command[1:] != command[:-1])
    return leaving

