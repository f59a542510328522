"""Phrase-level fingering: which finger of a hand plays each note, planned over the chunk.

The step-by-step OT assignment of `envs.control.nominal.plan_from_goals` moves the
fingers as little as possible *now*. On a run of legato notes that makes it
"walk" one finger along the run: once a hand has used its fingers in the run's
direction, its outermost finger takes every further note, and each of those
notes starts ~4 control steps late (the finger must lift, move and land while
the note is already due). A pianist shifts the hand instead: one jump, then a
fresh set of fingers for the next notes.

This module plans that shift with dynamic programming (Viterbi) over the
note onsets of each hand, in the spirit of the classic piano-fingering cost
models (Parncutt et al. 1997; Hart et al. 2000), with costs in the unit of
"one note started late":

- `walk_cost`: a finger plays a new note while its previous note ended less
  than `walk_gap_steps` before (it cannot be there in time);
- `shift_cost` per white key the hand moves between onsets (a hand position
  is the index finger's y implied by a finger on a key, `finger_spacing_keys`);
- `stretch_cost` per white key a chord's fingers deviate from the natural
  spacing of the hand;
- `crossing_cost`: a new note on the wrong side of a finger that still holds
  a key;
- `thumb_cost`: the reduced Shadow thumb barely reaches a key top;
- `reach_cost` per white key two fingers of a chord (or a new note and a
  held key) lie beyond what the hand can spread (`reach_keys`, measured).

Which hand plays a note is not decided here: `plan_fingering` takes it from a
first OT pass (`envs.control.nominal`), whose per-step assignment already splits the
keys between the hands well. Chords are fingered in key order (the fingers of
a hand do not cross within a chord). The result is a per-step hint that the
second OT pass follows (`NominalConfig.fingering_hint_cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from envs.piano.spec import FINGERS_PER_HAND

N_HANDS = 2
HAND_DIRECTION = np.array([+1.0, -1.0])  # right fingers at increasing y, left at decreasing (envs.control.nominal)
FINGER_PAIRS = tuple(combinations(range(FINGERS_PER_HAND), 2))  # (thumb, index), (thumb, middle), ... (ring, little)


@dataclass(frozen=True)
class FingeringCosts:
    """Costs of the phrase fingering DP, in units of one late note."""

    walk_cost: float = 1.0
    walk_gap_steps: int = 4  # a finger needs about this many steps between two keys (lift, move, land)
    # A key may be let go this many steps before its note ends to let another
    # finger pass (`NominalConfig.early_release_steps` - 1: the plan's release).
    release_slack_steps: int = 1
    shift_cost: float = 0.1  # per white key the hand moves between onsets
    stretch_cost: float = 0.3  # per white key of deviation from the natural spacing within a chord
    crossing_cost: float = 2.0
    # The reduced Shadow thumb misses most keys it is given (`envs.control.nominal`
    # thumb_cost): about three late notes.
    thumb_cost: float = 3.0
    # How far apart (white keys, |u_a - u_b|) two fingers of one hand can press at once, for the
    # finger pairs of `FINGER_PAIRS`: measured with `HandsIK` (two pressing fingertips a given
    # number of white keys apart, the others hovering between; reach = the largest distance
    # solved to within ~5 mm, plus half a key). Issue 18's dev diagnosis: half the presses of
    # chords spanning 8+ semitones were never let down, the IK could not spread the fingers.
    reach_keys: tuple = (2.5, 4.5, 5.5, 7.5, 2.5, 3.5, 4.5, 2.5, 3.5, 2.5)
    # Per white key beyond `reach_keys`, in a chord or against a held key (0: off). Issue 18, dev
    # open-loop F1 mean (as `NominalConfig.unaligned_weight`): 0 0.615, 1 0.605, 3 0.626.
    reach_cost: float = 3.0

    def __post_init__(self) -> None:
        for name in ("walk_cost", "walk_gap_steps", "release_slack_steps", "shift_cost", "stretch_cost",
                     "crossing_cost", "thumb_cost", "reach_cost"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"FingeringCosts.{name}={value}: must be a finite number >= 0")
        if len(self.reach_keys) != len(FINGER_PAIRS) or not all(np.isfinite(r) and r > 0 for r in self.reach_keys):
            raise ValueError(f"FingeringCosts.reach_keys={self.reach_keys}: need {len(FINGER_PAIRS)} "
                             "positive numbers, one per finger pair (thumb-index, thumb-middle, ...)")

    def reach_matrix(self) -> np.ndarray:
        """(5, 5) symmetric reach in white keys (inf on the diagonal)."""
        reach = np.full((FINGERS_PER_HAND, FINGERS_PER_HAND), np.inf)
        for (a, b), r in zip(FINGER_PAIRS, self.reach_keys):
            reach[a, b] = reach[b, a] = r
        return reach


@dataclass(frozen=True)
class Note:
    """One note of the goal: key `key` must be down over goal steps [on, off]."""

    on: int
    off: int
    key: int


def notes_from_goals(goal_keys: np.ndarray) -> list[Note]:
    """The notes (runs of consecutive goal steps per key) of a (T, 88) goal, by onset then key."""
    goal = np.asarray(goal_keys, dtype=bool)
    padded = np.vstack([np.zeros((1, goal.shape[1]), bool), goal, np.zeros((1, goal.shape[1]), bool)])
    change = np.diff(padded.astype(np.int8), axis=0)
    notes = []
    for key in range(goal.shape[1]):
        ons = np.flatnonzero(change[:, key] == 1)
        offs = np.flatnonzero(change[:, key] == -1) - 1
        notes.extend(Note(int(a), int(b), key) for a, b in zip(ons, offs))
    return sorted(notes, key=lambda n: (n.on, n.key))


def _transit_cost(note: Note, finger: int, onset: int, last: dict, u: dict, costs: FingeringCosts) -> float:
    """Cost of `finger` (0-4 within its hand) getting to `note` at `onset`, given the last note of each finger.

    A finger travels once it has let go of its previous key and no finger it
    would pass still holds a key: fingers of a hand keep their order (thumbs
    aside, they pass under). If a finger it must pass still holds at the onset,
    the fingers cross (`crossing_cost`); if the way was clear less than
    `walk_gap_steps` before the onset, the note starts late (`walk_cost`).
    """
    prev = last.get(finger)
    clear = prev.off if prev is not None else None
    cost = 0.0
    for other, held in last.items():
        if other == finger or other == 0 or finger == 0 or held.key == note.key:
            continue
        if (u[note] - u[held]) * (finger - other) > 0:  # on the right side of it
            continue
        if prev is not None and held.off < prev.off:  # released before this finger left its key
            continue
        if held.off > onset + costs.release_slack_steps:
            cost += costs.crossing_cost
        clear = held.off if clear is None else max(clear, held.off)
    if clear is not None and clear >= onset - costs.walk_gap_steps:
        cost += costs.walk_cost
    return cost


def _hand_fingering(notes: list[Note], hand: int, key_y: np.ndarray, fingers: np.ndarray,
                    spacing: np.ndarray, pitch: float, costs: FingeringCosts) -> dict[Note, int]:
    """Viterbi over the onsets of one hand's notes: the finger (0-9) of each note."""
    direction = HAND_DIRECTION[hand]
    base = hand * FINGERS_PER_HAND
    local = sorted(int(f) - base for f in fingers if base <= f < base + FINGERS_PER_HAND)
    if not local or not notes:
        return {}
    onsets = sorted({n.on for n in notes})
    events = [sorted((n for n in notes if n.on == t), key=lambda n: key_y[n.key] * direction) for t in onsets]
    # position along the hand, in white keys (increasing from thumb side to little side)
    u = {n: float(key_y[n.key] * direction / pitch) for n in notes}

    def options(event: list[Note]) -> list[tuple[int, ...]]:
        k = min(len(event), len(local))
        return list(combinations(local, k))  # increasing fingers for keys in increasing u

    reach = costs.reach_matrix()

    def beyond_reach(f: int, ua: float, g: int, ub: float) -> float:
        return costs.reach_cost * max(0.0, abs(ua - ub) - reach[f, g])

    def local_cost(event: list[Note], fing: tuple[int, ...]) -> tuple[float, float]:
        """(cost, hand position) of one event's fingering."""
        anchors = np.array([u[n] - spacing[f] for n, f in zip(event, fing)])
        cost = costs.thumb_cost * sum(f == 0 for f in fing)
        cost += costs.stretch_cost * float(np.abs(anchors - anchors.mean()).sum())
        if costs.reach_cost > 0:
            cost += sum(beyond_reach(f, u[n], g, u[m]) for (n, f), (m, g) in combinations(zip(event, fing), 2))
        return cost, float(anchors.mean())

    def held_reach(event: list[Note], fing: tuple[int, ...], onset: int, last: dict) -> float:
        """Reach cost of the event's fingers against keys other fingers still hold at its onset."""
        if costs.reach_cost <= 0:
            return 0.0
        held = [(g, m) for g, m in last.items() if g not in fing and m.off > onset + costs.release_slack_steps]
        return sum(beyond_reach(f, u[n], g, u[m]) for n, f in zip(event, fing) for g, m in held)

    # state: (event index, option index); keep for each state the last note each finger played
    layers = []
    for event in events:
        opts = options(event)
        layers.append([(fing, *local_cost(event, fing)) for fing in opts])
    best = [np.array([c for _, c, _ in layers[0]])]
    back: list[np.ndarray] = []
    # the last note of each finger along the best path into each state
    last_notes = [[{f: n for n, f in zip(events[0], fing)} for fing, _, _ in layers[0]]]
    for e in range(1, len(events)):
        event, t = events[e], onsets[e]
        cur_best = np.full(len(layers[e]), np.inf)
        cur_back = np.zeros(len(layers[e]), dtype=int)
        cur_last = [None] * len(layers[e])
        for j, (fing, cost_j, pos_j) in enumerate(layers[e]):
            for i, (_, _, pos_i) in enumerate(layers[e - 1]):
                total = best[-1][i] + cost_j + costs.shift_cost * abs(pos_j - pos_i)
                last = last_notes[-1][i]
                for n, f in zip(event, fing):
                    total += _transit_cost(n, f, t, last, u, costs)
                total += held_reach(event, fing, t, last)
                if total < cur_best[j]:
                    cur_best[j], cur_back[j] = total, i
            i = cur_back[j]
            merged = dict(last_notes[-1][i])
            merged.update({f: n for n, f in zip(event, fing)})
            cur_last[j] = merged
        best.append(cur_best)
        back.append(cur_back)
        last_notes.append(cur_last)
    # trace back
    j = int(np.argmin(best[-1]))
    out: dict[Note, int] = {}
    for e in range(len(events) - 1, -1, -1):
        fing = layers[e][j][0]
        for n, f in zip(events[e], fing):
            out[n] = base + f
        if e > 0:
            j = int(back[e - 1][j])
    return out


def plan_fingering(goal_keys: np.ndarray, first_pass_key: np.ndarray, key_y: np.ndarray, fingers: np.ndarray,
                   spacing_keys: tuple, pitch: float, costs: FingeringCosts | None = None) -> np.ndarray:
    """(T, 88) int: the finger (0-9) planned for each goal key-step, -1 where none.

    Args:
        goal_keys: (T, 88) bool goal.
        first_pass_key: (T, 10) key per finger of a step-by-step OT plan; a
            note's hand is the hand of the finger that played most of it there
            (the hand on its side of the keyboard's middle when the first pass
            left it out).
        key_y: (88,) y of each key's press point.
        fingers: usable finger indices (0-9).
        spacing_keys: natural finger spacing of a hand in white keys from the
            index finger (thumb..little), `NominalConfig.finger_spacing_keys`.
        pitch: white key pitch (m).
    """
    costs = costs or FingeringCosts()
    goal = np.asarray(goal_keys, dtype=bool)
    first = np.asarray(first_pass_key)
    spacing = np.asarray(spacing_keys, dtype=np.float64)
    notes = notes_from_goals(goal)
    by_hand: list[list[Note]] = [[], []]
    for n in notes:
        owners = first[n.on:n.off + 1]
        votes = np.zeros(N_HANDS)
        for hand in range(N_HANDS):
            cols = owners[:, hand * FINGERS_PER_HAND:(hand + 1) * FINGERS_PER_HAND]
            votes[hand] = (cols == n.key).sum()
        if votes.max() > 0:
            hand = int(np.argmax(votes))
        else:  # unassigned in the first pass: the hand on its side of the keyboard's middle
            hand = 0 if key_y[n.key] >= np.median(key_y) else 1
        by_hand[hand].append(n)
    hint = np.full(goal.shape, -1, dtype=np.int32)
    for hand in range(N_HANDS):
        for n, f in _hand_fingering(by_hand[hand], hand, key_y, np.asarray(fingers), spacing, pitch, costs).items():
            hint[n.on:n.off + 1, n.key] = f
    return hint
