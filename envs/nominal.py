"""OT-IK nominal controller: fingertip plan from the notes, IK, open-loop actions.

PianoMime (section 3.2) learns a residual on top of a nominal behaviour: the
IK solution of human fingertip trajectories extracted from videos. We have no
videos; the fingertip trajectory is planned from the chunk's notes alone with
the OT fingering of RP1M (Eq. 1-2), so it exists for any song:

1. Assignment (`plan_from_goals`), step by step through the chunk: a key that
   stays down keeps its finger; the keys that go down at step t are matched
   to the free fingers by a linear assignment (`scipy.optimize.
   linear_sum_assignment`, as `envs.ot`) against the planned fingertip
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
   thumb or a crossing). `envs.ot.ot_assign` solves the plain Euclidean
   problem of the reward; the penalties need this own cost matrix. Keys beyond
   the available fingers stay unassigned (counted in `FingertipPlan.unassigned`).
   Step by step, this "walks" one finger along a legato run (each walked note
   starts ~4 steps late). So the first pass only splits the notes between the
   hands; `envs.fingering.plan_fingering` then plans each hand's fingers over
   the whole chunk (dynamic programming with hand shifts, walks, stretches,
   crossings and thumbs as costs) and a second pass follows that plan at
   `fingering_hint_cost` for any other finger.
2. Fingertip targets (PianoMime Appendix A, step 4): a pressing fingertip is
   put on its key (`KeyboardGeometry.press_targets`), `press_depth` below the
   key top; the other fingertips hover `hover_height` above the white key
   tops, spread like a hand around the pressing fingers of their hand
   (interpolated by finger index between them, natural spacing outside). A
   hand with nothing to press moves ahead to where it presses next (within
   `prepare_steps`).
3. Timing (`schedule_presses`, `command_targets`): the plan says which keys
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
4. IK (`envs.ik.HandsIK`) along the commanded fingertip trajectory, warm
   started step to step, posture-regularised towards both hands hovering
   (`ready_posture`), gives (T, 39) actions (sustain pedal from the goal).
5. Search (`NominalConfig.search`): the open-loop result of one config is
   brittle (a finger catching a key edge costs a note and can jam the hand),
   so `nominal_trajectory` also solves the chunk with each of
   `SEARCH_VARIANTS` (press timing, hover height, step-by-step fingering),
   plays every candidate in a fresh env and keeps the best key-press F1.
   The env is deterministic, so that F1 is what the open-loop controller
   gets; it costs one IK solve and one episode per candidate.

The numbers in `NominalConfig` were tuned open loop on the first chunks of
CMajorScaleTwoHands, TwinkleTwinkleLittleStar, TwinkleTwinkleRousseau and
NocturneRousseau (`benchmarks/ik_open_loop.py`); they are not from a paper
unless a comment says so.

`nominal_trajectory(chunk)` / `nominal_actions(chunk)` cache the result per
(chunk content, env config, nominal config). `NominalController` replays it as
a policy: `controller(t)` is the action of step t; `controller.residual_action(
t, residual)` adds and clips a residual (PianoMime's pi = pi_residual + q_ik,
the interface a residual specialist builds on); `controller.act` is an
`envs.rollout.Controller`. `NominalTrajectory` also holds the per-step
fingertip targets and IK joint positions (PianoMime Table 4 gives the residual
policy the demonstrator fingertips and the IK prior as observations).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields, replace
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from envs.config import EnvConfig
from envs.fingering import FingeringCosts, plan_fingering
from envs.ik import HandsIK, IKConfig, N_FINGERTIPS
from envs.task import FINGERS_PER_HAND, LITTLE_FINGER, N_KEYS

if TYPE_CHECKING:
    from envs.chunks import Chunk
    from envs.factory import PianoEnv
    from envs.metrics import KeyPressMetrics
    from envs.rollout import EpisodeRecord

logger = logging.getLogger(__name__)

RIGHT, LEFT = 0, 1
# Right hand fingers 0-4 lie at increasing y (thumb nearest the middle of the
# keyboard), left hand fingers 5-9 at decreasing y (envs.task finger order).
_HAND_DIRECTION = np.array([+1.0, -1.0])
WHITE_KEY_PITCH = 0.0235  # m, white key width + gap (robopianist piano_constants: 0.0225 + 0.001)


@dataclass(frozen=True)
class NominalConfig:
    """How the OT-IK nominal controller plans fingertips and times presses."""

    # PianoMime App. A step 4: pressing fingertips at z = 0 (the key bottom,
    # h_key = 22.5 mm below the white key top), hovering ones at 2 h_key, i.e.
    # h_key above the top. Ours are tuned on this env (module docstring);
    # heights are of the fingertip site, which sits ~7 mm inside the fingertip's
    # collision capsule. Pressing below the key makes the servo push (the key
    # spring needs ~1.7 N at the press point); a key counts as pressed within
    # 0.5 deg of its full 10 mm travel.
    press_depth: float = 0.015  # m below the key top for a pressing fingertip
    # Where along a key a fingertip presses, as a fraction of the key's half
    # length from its centre towards the player (robopianist's fingering target:
    # 0.35). Further forward on white keys than robopianist's point, so that the
    # curled finger's middle phalanx clears the black keys (their front edge is
    # at a white key's centre + 0.2 half lengths).
    white_press_fraction: float = 0.7
    black_press_fraction: float = 0.5
    # Tuned with the phrase fingering and press weights below (0.02-0.04 and 2-5 tried,
    # `benchmarks/ik_open_loop.py`); PianoMime: 0.0225.
    hover_height: float = 0.03  # m above the white key tops
    press_lead_steps: int = 4  # command a press this many control steps before its note
    release_lead_steps: int = 0  # lift this many steps before the note's last step (may be < 0)
    # The forearm slides (critically damped servos, time constant 0.11 s) get
    # controls computed by inverting their dynamics (`SlideServo`) so that the
    # hand follows the IK trajectory instead of lagging ~2 steps behind it.
    forearm_feedforward: bool = True
    # A pressing fingertip descends only when the IK has it within this distance
    # of its key's press target (x along the key, y across); half a black key
    # width across, so it does not land on a neighbour.
    align_tolerance_x: float = 0.015
    align_tolerance_y: float = 0.005
    prepare_steps: int = 10  # an idle hand moves to its next keys this many steps ahead (RP1M lookahead L-1)
    # Natural finger spacing of a hand, in white keys from the index finger
    # (thumb, index, middle, ring, little); outside the pressing fingers the
    # hovering fingers keep it.
    finger_spacing_keys: tuple = (-1.5, 0.0, 1.0, 2.0, 3.0)
    # IK weights of the fingertip targets (x, y, z; world axes). PianoMime App. C
    # weighs all fingertips equally; here a hovering fingertip's x (along the
    # keys) is nearly free: with x weighted >= 0.5 the hand cannot keep its
    # other fingers at hover height in front of the keys and still get the
    # pressing finger down (open-loop F1 collapses to < 0.15). A pressing
    # fingertip weighs 10 times a hovering one, so that hovering fingers moving
    # ahead (a hand shift) do not drag it sideways off its key (tuned: 1, 3, 5,
    # 10, 20 tried).
    press_weight: tuple = (10.0, 10.0, 10.0)
    hover_weight: tuple = (0.2, 1.0, 1.0)
    # A finger leaving a key first lifts straight up for a step, weighted as a
    # press: moved sideways while still down it catches on the key's edge.
    lift_in_place: bool = True
    # Assignment costs (m^2, the unit of the squared fingertip-key distance).
    switch_cost: float = 0.001  # finger pressed another key at t-1 (it must lift first; a 3 cm move)
    crossing_cost: float = 0.1  # key beyond the other hand / beyond a holding finger of the same hand
    # The reduced Shadow thumb (no THJ5 rotation, no THJ1) reaches a white key's
    # top only with the wrist at its yaw and flexion limits: use it when the
    # other fingers cannot (ours, measured with HandsIK).
    thumb_cost: float = 0.05
    room_cost: float = 0.01  # per finger missing on one side for the hand's next keys (lookahead)
    # A held key whose note ends within this many steps may be let go early to
    # free its finger for a new key, at `early_release_cost` per lost step.
    early_release_steps: int = 2
    early_release_cost: float = 0.003
    # Phrase fingering (`envs.fingering`): a second assignment pass pays this
    # for a finger other than the one the phrase-level DP planned (0: off, the
    # step-by-step assignment alone). Higher than the crossing cost.
    fingering_hint_cost: float = 0.2
    fingering: FingeringCosts = field(default_factory=FingeringCosts)
    # Open-loop search (`nominal_trajectory`): also plan with each of
    # `SEARCH_VARIANTS`, play every candidate in the simulator and keep the one
    # with the best key-press F1.
    search: bool = True
    ik: IKConfig = field(default_factory=IKConfig)

    def __post_init__(self) -> None:
        for name in ("hover_height", "switch_cost", "crossing_cost", "thumb_cost", "room_cost", "white_press_fraction",
                     "black_press_fraction"):
            if getattr(self, name) < 0:
                raise ValueError(f"NominalConfig.{name}={getattr(self, name)}: must be >= 0")
        for name in ("press_lead_steps", "prepare_steps", "align_tolerance_x", "align_tolerance_y",
                     "early_release_steps", "early_release_cost", "fingering_hint_cost"):
            if getattr(self, name) < 0:
                raise ValueError(f"NominalConfig.{name}={getattr(self, name)}: must be >= 0")
        if len(self.finger_spacing_keys) != FINGERS_PER_HAND or np.any(np.diff(self.finger_spacing_keys) <= 0):
            raise ValueError(
                f"NominalConfig.finger_spacing_keys={self.finger_spacing_keys}: need {FINGERS_PER_HAND} "
                "increasing offsets (thumb..little)"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict, where: str = "NominalConfig") -> "NominalConfig":
        """Inverse of `as_dict` (JSON lists back to tuples, nested configs rebuilt); `where`
        names the source in errors."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(payload) - names)
        if bad:
            raise ValueError(f"{where}: unknown fields {bad}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in payload.items()}
        for name, nested in (("ik", IKConfig), ("fingering", FingeringCosts)):
            if isinstance(values.get(name), dict):
                inner = values[name]
                unknown = sorted(set(inner) - {f.name for f in fields(nested)})
                if unknown:
                    raise ValueError(f"{where}.{name}: unknown fields {unknown}")
                values[name] = nested(**{k: tuple(v) if isinstance(v, list) else v for k, v in inner.items()})
        return cls(**values)

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class KeyboardGeometry:
    """Where the keys are (world frame, keys at rest)."""

    centers: np.ndarray  # (88, 3) key geom centres
    half_sizes: np.ndarray  # (88, 3) key geom half sizes (x: half length, towards the player is +x)
    press_points: np.ndarray  # (88, 3) robopianist's press point of each key (envs.task.key_press_points)

    @classmethod
    def from_env(cls, env: "PianoEnv") -> "KeyboardGeometry":
        """Read the geometry from a freshly reset env (keys at rest)."""
        physics, task = env.physics, env.task
        geoms = [key.geom[0] for key in task.piano.keys]
        bound = physics.bind(geoms)
        return cls(centers=np.array(bound.xpos, dtype=np.float64), half_sizes=np.array(bound.size, dtype=np.float64),
                   press_points=np.asarray(task.key_press_points(physics, np.arange(N_KEYS)), dtype=np.float64))

    @property
    def key_tops(self) -> np.ndarray:
        """(88,) z of each key's top surface."""
        return self.centers[:, 2] + self.half_sizes[:, 2]

    @property
    def white_top(self) -> float:
        return float(self.key_tops.min())

    @property
    def is_black(self) -> np.ndarray:
        return self.key_tops > self.white_top + 1e-6

    def press_targets(self, config: "NominalConfig") -> np.ndarray:
        """(88, 3) fingertip target of a finger pressing each key."""
        fraction = np.where(self.is_black, config.black_press_fraction, config.white_press_fraction)
        targets = self.centers.copy()
        targets[:, 0] += fraction * self.half_sizes[:, 0]
        targets[:, 2] = self.key_tops - config.press_depth
        return targets

    def hover_x(self, config: "NominalConfig") -> float:
        """x of a hovering fingertip: over the white keys' press targets."""
        white = ~self.is_black
        return float(np.median(self.centers[white, 0] + config.white_press_fraction * self.half_sizes[white, 0]))


@dataclass(frozen=True)
class FingertipPlan:
    """Planned fingertips over a chunk, at goal timing (step t: end of step t)."""

    targets: np.ndarray  # (T, 10, 3) fingertip target positions, world frame
    pressing: np.ndarray  # (T, 10) bool: the fingertip is on a key that must be down
    key: np.ndarray  # (T, 10) int: the key (0-87) each fingertip presses, -1 when hovering
    unassigned: np.ndarray  # (T,) int: goal keys left without a finger (more keys than fingers)

    @property
    def n_steps(self) -> int:
        return len(self.key)


def hand_of(finger: int) -> int:
    return RIGHT if finger < FINGERS_PER_HAND else LEFT


def usable_fingers(env_config: EnvConfig | None = None) -> np.ndarray:
    """Finger indices that may press keys (little fingers out in the four-finger embodiment)."""
    fingers = np.arange(N_FINGERTIPS)
    if env_config is not None and env_config.four_fingers:
        fingers = fingers[fingers % FINGERS_PER_HAND != LITTLE_FINGER]
    return fingers


# ----------------------------------------------------------------------------------
# 1-2. Assignment and fingertip targets


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
        direction = _HAND_DIRECTION[hand]
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
        direction = _HAND_DIRECTION[hand]
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
    direction = _HAND_DIRECTION[hand]
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


# ----------------------------------------------------------------------------------
# 3. Timing


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
        steps, fingers = np.nonzero(_leaving_keys(command))
        targets[steps, fingers, :2] = press[command[steps - 1, fingers], :2]
        targets[steps, fingers, 2] = hover_z
    return targets


def _leaving_keys(command: np.ndarray) -> np.ndarray:
    """(T, 10) bool: the finger was commanded onto a key at t-1 and is not on that key at t."""
    leaving = np.zeros(command.shape, dtype=bool)
    leaving[1:] = (command[:-1] >= 0) & (command[1:] != command[:-1])
    return leaving


# ----------------------------------------------------------------------------------
# 4. IK along the chunk


@dataclass(frozen=True)
class NominalTrajectory:
    """Everything the nominal controller computed for one chunk."""

    actions: np.ndarray  # (T, 39) env actions
    plan: FingertipPlan  # goal-timed fingertip plan
    command: np.ndarray  # (T, 10) commanded key per finger (-1 hover)
    command_targets: np.ndarray  # (T, 10, 3) fingertip targets given to the IK
    hand_qpos: np.ndarray  # (T, 46) IK joint positions (HandsIK.joint_names order)
    ik_fingertips: np.ndarray  # (T, 10, 3) fingertips at the IK solution
    ik_seconds: float  # total IK time
    # The open-loop search: (config overrides as JSON, F1) of every candidate
    # played, the chosen one first; empty without search.
    search: tuple = ()


def sustain_goal(chunk: "Chunk", n_steps: int) -> np.ndarray:
    """(n_steps,) sustain pedal goal per step, as the task builds it (robopianist NoteTrajectory)."""
    from robopianist.music.midi_file import NoteTrajectory

    sustains = NoteTrajectory.from_midi(chunk.midi, chunk.control_timestep).sustains
    out = np.zeros(n_steps)
    m = min(n_steps, len(sustains))
    out[:m] = np.asarray(sustains[:m], dtype=np.float64)
    return out


def ready_posture(ik: HandsIK, first_targets: np.ndarray, geometry: KeyboardGeometry,
                  config: NominalConfig, iterations: int = 60) -> np.ndarray:
    """Posture target of the IK: both hands hovering, wrists straight, over their first targets.

    All ten fingertips hover `hover_height` above the keys at the y of the
    plan's first step; solved from the current IK configuration, which is
    restored afterwards. Returns a full model qpos.
    """
    start = ik.q
    hover = np.array(first_targets, dtype=np.float64)
    hover[:, 2] = geometry.white_top + config.hover_height
    ik.set_posture(start)
    ik.solve(hover, np.asarray(config.hover_weight), iterations=iterations)
    ready = ik.q
    ik.reset(start)
    return ready


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


@dataclass(frozen=True)
class SlideServo:
    """A position servo on a slide joint moving a rigid mass, as MuJoCo integrates it.

    m a = kp (u - x) - kd v, Euler with implicit damping (MuJoCo's default
    integrator) at `physics_timestep`, the control u held over a control step.
    The forearm slides are such servos (robopianist: kp 300 N/m, critical
    damping, 3.8 kg hand): time constant sqrt(m / kp) = 0.11 s, 2 control steps.
    """

    kp: float
    kd: float
    mass: float
    physics_timestep: float
    substeps: int

    @classmethod
    def for_actuator(cls, model, actuator_id: int, control_timestep: float) -> "SlideServo":
        joint = int(model.actuator_trnid[actuator_id, 0])
        dof = int(model.jnt_dofadr[joint])
        kp = float(model.actuator_gainprm[actuator_id, 0])
        if not np.isclose(model.actuator_biasprm[actuator_id, 1], -kp):
            raise ValueError(f"actuator {actuator_id}: not a position servo (gain {kp}, bias "
                             f"{model.actuator_biasprm[actuator_id, :3]})")
        mass = float(model.body_subtreemass[model.jnt_bodyid[joint]] + model.dof_armature[dof])
        h = float(model.opt.timestep)
        return cls(kp=kp, kd=float(model.dof_damping[dof]), mass=mass, physics_timestep=h,
                   substeps=int(round(control_timestep / h)))

    def step_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, B): state (x, v) after one control step, s' = A s + B u."""
        h, m = self.physics_timestep, self.mass
        # v' = (m v + h kp (u - x)) / (m + h kd); x' = x + h v'
        a = np.array([[1.0 - h * h * self.kp / (m + h * self.kd), h * m / (m + h * self.kd)],
                      [-h * self.kp / (m + h * self.kd), m / (m + h * self.kd)]])
        b = np.array([h * h * self.kp / (m + h * self.kd), h * self.kp / (m + h * self.kd)])
        big_a, big_b = np.eye(2), np.zeros(2)
        for _ in range(self.substeps):
            big_a, big_b = a @ big_a, a @ big_b + b
        return big_a, big_b

    def feedforward(self, desired: np.ndarray, x0: float, lower: float, upper: float,
                    smoothness: float = 1e-3) -> np.ndarray:
        """Controls u_0..u_{T-1} whose response tracks desired[t] at the end of step t.

        Bounded least squares (scipy lsq_linear) of the tracking error plus
        `smoothness` times the control increments; starts at rest at x0.
        """
        from scipy.optimize import lsq_linear

        desired = np.asarray(desired, dtype=np.float64)
        n = len(desired)
        a, b = self.step_matrices()
        response = np.zeros((n, n))  # position at the end of step t per unit u_j
        free = np.zeros(n)
        state_free = np.array([x0, 0.0])
        impulse = [b]
        for _ in range(n - 1):
            impulse.append(a @ impulse[-1])
        for t in range(n):
            state_free = a @ state_free
            free[t] = state_free[0]
            for j in range(t + 1):
                response[t, j] = impulse[t - j][0]
        diff = (np.eye(n) - np.eye(n, k=-1))[1:]
        lhs = np.vstack([response, np.sqrt(smoothness) * diff])
        rhs = np.concatenate([desired - free, np.zeros(n - 1)])
        result = lsq_linear(lhs, rhs, bounds=(lower, upper), method="bvls")
        return result.x


def solve_trajectory(env: "PianoEnv", sustain: np.ndarray, config: NominalConfig | None = None) -> NominalTrajectory:
    """Plan, schedule and solve the IK for the env's chunk (resets the env, does not step it)."""
    config = config or NominalConfig()
    plan = plan_fingertips(env, config)  # resets the env
    geometry = KeyboardGeometry.from_env(env)
    command = schedule_presses(plan, config)
    targets = command_targets(plan, command, geometry, config)
    press = geometry.press_targets(config)
    ik = HandsIK(env.physics, env.task, config.ik)
    ik.set_posture(ready_posture(ik, plan.targets[0], geometry, config))
    anchored = command >= 0
    if config.lift_in_place:
        anchored |= _leaving_keys(command)
    weights = np.where(anchored[..., None], np.asarray(config.press_weight), np.asarray(config.hover_weight))
    n_steps = plan.n_steps
    qpos = np.zeros((n_steps, env.physics.model.nq))
    tips = np.zeros((n_steps, N_FINGERTIPS, 3))
    tolerance = np.array([config.align_tolerance_x, config.align_tolerance_y])
    previous = ik.fingertip_positions()[:, :2]
    for t in range(n_steps):
        step_targets = targets[t]
        pressing = np.flatnonzero(command[t] >= 0)
        if len(pressing):
            # A finger goes down only once it is above its key; until then it
            # approaches at hover height (else it lands on a neighbour and sticks).
            now = ik.fingertip_positions()[pressing, :2]
            keys = command[t, pressing]
            away = np.any(np.abs(now - press[keys, :2]) > tolerance, axis=1)
            # ... and has been for a step: the servos lag the IK by about one.
            away |= np.any(np.abs(previous[pressing] - press[keys, :2]) > tolerance, axis=1)
            if away.any():
                step_targets = step_targets.copy()
                step_targets[pressing[away], 2] = geometry.key_tops[keys[away]] + config.hover_height
                targets[t] = step_targets
        previous = ik.fingertip_positions()[:, :2]
        ik.solve(step_targets, weights[t])
        qpos[t] = ik.q
        tips[t] = ik.fingertip_positions()
    ctrl = np.stack([ik.qpos_to_ctrl(q) for q in qpos])
    if config.forearm_feedforward:
        for col, aid in enumerate(ik.actuator_ids):
            if "forearm" not in ik.model.actuator(int(aid)).name:
                continue
            servo = SlideServo.for_actuator(ik.model, int(aid), config.ik.control_timestep)
            x0 = float(ik.actuation[col] @ env.physics.data.qpos)
            lo, hi = ik.ctrl_range[col]
            ctrl[:, col] = servo.feedforward(ctrl[:, col], x0, lo, hi)
    actions = np.concatenate([ctrl, np.clip(sustain[:n_steps, None], 0.0, 1.0)], axis=1)
    return NominalTrajectory(actions=actions, plan=plan, command=command, command_targets=targets,
                             hand_qpos=qpos[:, ik.hand_qpos], ik_fingertips=tips, ik_seconds=ik.stats.seconds)


_CACHE: "OrderedDict[tuple, NominalTrajectory]" = OrderedDict()
_CACHE_SIZE = 32


def _chunk_digest(chunk: "Chunk") -> str:
    from envs.chunks import chunk_to_json

    return hashlib.sha256(chunk_to_json(chunk).encode()).hexdigest()[:16]


# Config overrides the open-loop search also plans with (`NominalConfig.search`).
# The open-loop F1 of one config swings by up to 0.3 on a chunk with one step
# of press lead or 5 mm of hover height (a finger catching a key edge), and
# the best setting differs between chunks. Measured (open-loop F1; default,
# then the three variants in order): CMajorScaleTwoHands:0 0.868 0.531 0.770
# 0.764; TwinkleTwinkleRousseau:0 0.870 0.882 0.798 0.807;
# TwinkleTwinkleLittleStar:0 0.611 0.443 0.680 0.707; NocturneRousseau:0 0.179
# 0.172 0.191 0.158. Three more (press lead 5; hover 0.035 m with lead 3 or 4)
# never won and were dropped.
SEARCH_VARIANTS: tuple[dict, ...] = (
    {"press_lead_steps": 3},
    {"fingering_hint_cost": 0.0},  # the step-by-step OT fingering alone
    {"fingering_hint_cost": 0.0, "press_lead_steps": 3, "hover_height": 0.035},  # and the earlier timing
)


def nominal_trajectory(chunk: "Chunk", env_config: EnvConfig | None = None,
                       config: NominalConfig | None = None) -> NominalTrajectory:
    """`solve_trajectory` for a chunk, cached per (chunk content, env config, nominal config).

    With `config.search`, the trajectory of `config` and of each of
    `SEARCH_VARIANTS` is played open loop in a fresh env and the one with the
    best key-press F1 is returned (ties: the earlier candidate, `config` first).
    """
    from envs.factory import make_env

    env_config = env_config or EnvConfig()
    config = config or NominalConfig()
    cache_key = (_chunk_digest(chunk), env_config.digest(), config.digest())
    if cache_key in _CACHE:
        _CACHE.move_to_end(cache_key)
        return _CACHE[cache_key]
    candidates = [{}] + (list(SEARCH_VARIANTS) if config.search else [])
    sustain = sustain_goal(chunk, chunk.n_steps)
    best, scores = None, []
    env = make_env(chunk, env_config, seed=0)
    try:
        for overrides in candidates:
            trajectory = _single_threaded(solve_trajectory, env, sustain, replace(config, **overrides))
            f1 = play_actions(chunk, env_config, trajectory.actions).metrics.f1 if len(candidates) > 1 else None
            scores.append((json.dumps(overrides, sort_keys=True), f1))
            if best is None or f1 > best[1]:
                best = (trajectory, f1, len(scores) - 1)
    finally:
        env.close()
    trajectory, f1, chosen = best
    if len(candidates) > 1:
        trajectory = replace(trajectory, search=tuple([scores[chosen]] + scores[:chosen] + scores[chosen + 1:]))
        logger.info("%s: nominal search chose %s (open-loop F1 %.3f; %s)", chunk.chunk_id, scores[chosen][0], f1,
                    ", ".join(f"{o} {v:.3f}" for o, v in scores))
    logger.info("%s: nominal trajectory of %d steps, IK %.1f ms/step", chunk.chunk_id, len(trajectory.actions),
                1e3 * trajectory.ik_seconds / max(len(trajectory.actions), 1))
    _CACHE[cache_key] = trajectory
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return trajectory


def clear_nominal_cache() -> None:
    """Forget the cached nominal trajectories (e.g. to measure planning time)."""
    _CACHE.clear()


def _single_threaded(fn, *args):
    """Small dense QPs run fastest on one BLAS thread (several threads fight over a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return fn(*args)
    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


def nominal_actions(chunk: "Chunk", env_config: EnvConfig | None = None,
                    config: NominalConfig | None = None) -> np.ndarray:
    """(T, 39) open-loop nominal actions of the chunk (cached, deterministic)."""
    return nominal_trajectory(chunk, env_config, config).actions.copy()


# ----------------------------------------------------------------------------------
# As a policy


class NominalController:
    """The nominal actions of one chunk as a time-indexed policy.

    `controller(t)` is the action of control step t (the last one past the end).
    `residual_action(t, residual)` is nominal + residual clipped to the action
    bounds: the residual specialist's action (PianoMime section 3.2,
    pi = pi_residual + q_ik). `act` is an `envs.rollout.Controller`.
    """

    def __init__(self, trajectory: NominalTrajectory, action_minimum: np.ndarray | None = None,
                 action_maximum: np.ndarray | None = None) -> None:
        self.trajectory = trajectory
        self.actions = trajectory.actions
        self.minimum = None if action_minimum is None else np.asarray(action_minimum, dtype=np.float64)
        self.maximum = None if action_maximum is None else np.asarray(action_maximum, dtype=np.float64)
        self._t = 0

    @classmethod
    def for_chunk(cls, chunk: "Chunk", env_config: EnvConfig | None = None,
                  config: NominalConfig | None = None, env: "PianoEnv | None" = None) -> "NominalController":
        trajectory = nominal_trajectory(chunk, env_config, config)
        if env is not None:
            spec = env.action_spec()
            return cls(trajectory, spec.minimum, spec.maximum)
        return cls(trajectory)

    @property
    def n_steps(self) -> int:
        return len(self.actions)

    def __call__(self, t: int) -> np.ndarray:
        if t < 0:
            raise ValueError(f"NominalController: step index must be >= 0, got {t}")
        return self.actions[min(t, self.n_steps - 1)].copy()

    def residual_action(self, t: int, residual: np.ndarray) -> np.ndarray:
        action = self(t) + np.asarray(residual, dtype=np.float64)
        if self.minimum is not None:
            action = np.clip(action, self.minimum, self.maximum)
        return action

    def reset(self) -> None:
        """Restart `act`'s step counter (call at each episode start)."""
        self._t = 0

    def act(self, observation: dict, rng: np.random.Generator) -> np.ndarray:
        """`envs.rollout.Controller`: the action of the next step (counts calls since `reset`)."""
        del observation, rng
        action = self(self._t)
        self._t += 1
        return action


def run_open_loop(chunk: "Chunk", env_config: EnvConfig | None = None, config: NominalConfig | None = None,
                  *, n_steps: int | None = None) -> "EpisodeRecord":
    """Play the chunk's nominal actions open loop in a fresh env; the record has P/R/F1.

    `n_steps` shortens the episode (the first n steps of the chunk).
    """
    env_config = env_config or EnvConfig()
    if n_steps is not None:
        if not 0 < n_steps:
            raise ValueError(f"run_open_loop: n_steps must be positive, got {n_steps}")
        chunk = replace(chunk, n_steps=min(n_steps, chunk.n_steps))
    return play_actions(chunk, env_config, nominal_trajectory(chunk, env_config, config).actions)


def play_actions(chunk: "Chunk", env_config: EnvConfig | None, actions: np.ndarray) -> "EpisodeRecord":
    """Play a fixed action sequence (the last action past its end) in a fresh env of the chunk."""
    from envs.factory import make_env
    from envs.rollout import run_episode

    controller = NominalController(SimpleNamespace(actions=np.asarray(actions)))
    env = make_env(chunk, env_config or EnvConfig(), seed=0)
    try:
        return run_episode(env, controller.act, np.random.default_rng(0))
    finally:
        env.close()


def open_loop_metrics(chunk: "Chunk", env_config: EnvConfig | None = None, config: NominalConfig | None = None,
                      *, n_steps: int | None = None) -> "KeyPressMetrics":
    """Precision, recall and F1 of the nominal controller played open loop."""
    return run_open_loop(chunk, env_config, config, n_steps=n_steps).metrics
