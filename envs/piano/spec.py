"""Sizes and names of the RP1M piano task, with no MuJoCo import, so every layer can use them.

Finger order everywhere (OT assignment, fingertip positions, hand state):
right hand first, then left; thumb, first, middle, ring, little within a hand
(robopianist's fingering convention: fingers 0-4 right, 5-9 left).
"""

from __future__ import annotations

from collections import OrderedDict

N_KEYS = 88  # piano keys, A0 (MIDI 21) to C8
N_HANDS = 2
FINGERS_PER_HAND = 5
N_FINGERTIPS = N_HANDS * FINGERS_PER_HAND
LITTLE_FINGER = 4  # index within a hand
HAND_ACTION_DIM = 38  # 19 reduced Shadow-hand actuators per hand incl. forearm x/y, right first
ACTION_DIM = HAND_ACTION_DIM + 1  # RP1M section 3: ... then the sustain pedal
LOOKAHEAD_STEPS = 10  # RP1M Table 4 (L = 11 goal steps with the current one)
GOAL_STEPS = LOOKAHEAD_STEPS + 1

# Weighted reward terms of RP1M Eq. 3 as the env reports them (`fingering` is
# robopianist's human-fingering term, used instead of `ot` in that mode).
REWARD_TERMS = ("ot", "fingering", "press", "sustain", "collision", "energy")


def observation_sizes(goal_steps: int = GOAL_STEPS) -> "OrderedDict[str, int]":
    """Sizes of the RP1M observation (Table 3), in storage order (1144 values with L = 11)."""
    return OrderedDict(
        piano_goal=goal_steps * N_KEYS,  # keys to press now and in the next steps
        sustain_goal=goal_steps,  # sustain pedal targets, same steps
        piano_state=N_KEYS,  # key joint positions
        sustain_state=1,  # pedal state
        fingertip_positions=3 * N_FINGERTIPS,  # 10 fingertips x (x, y, z), right hand first
        hand_state=46,  # joint positions, 23 per hand, right first
    )


OBSERVATION_KEYS = tuple(observation_sizes())
OBS_DIM = sum(observation_sizes().values())  # RP1M Table 3: 1144
