"""How the nominal controller plans and times: `NominalConfig` (tuned open loop, see the README)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from envs.control.fingering import FingeringCosts
from envs.control.ik import IKConfig
from envs.checks import check_fields
from envs.piano.spec import FINGERS_PER_HAND

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)



RIGHT, LEFT = 0, 1
# Right hand fingers 0-4 lie at increasing y (thumb nearest the middle of the
# keyboard), left hand fingers 5-9 at decreasing y (envs.piano.task finger order).
HAND_DIRECTION = np.array([+1.0, -1.0])
WHITE_KEY_PITCH = 0.0235  # m, white key width + gap (robopianist piano_constants: 0.0225 + 0.001)


# The open-loop F1 of one config swings by up to 0.3 on a chunk with one step
# of press lead or 5 mm of hover height (a finger catching a key edge), and
# the best setting differs between chunks. Measured (open-loop F1; default,
# then the three variants in order): CMajorScaleTwoHands:0 0.868 0.531 0.770
# 0.764; TwinkleTwinkleRousseau:0 0.870 0.882 0.798 0.807;
# TwinkleTwinkleLittleStar:0 0.611 0.443 0.680 0.707; NocturneRousseau:0 0.179
# 0.172 0.191 0.158. Press lead 5 and hover 0.035 m (at lead 4) never won on
# those four; on the quality benchmark's dev chunks (issue 18,
# benchmarks/reports/nominal_dev.md) they were the best single changes (dev
# open-loop means 0.673 and 0.669 against 0.663), each best on other chunks,
# so they are candidates too. The list is part of `NominalConfig.digest`.
SEARCH_VARIANTS: tuple[dict, ...] = (
    {"press_lead_steps": 3},
    {"fingering_hint_cost": 0.0},  # the step-by-step OT fingering alone
    {"fingering_hint_cost": 0.0, "press_lead_steps": 3, "hover_height": 0.035},  # and the earlier timing
    {"press_lead_steps": 5},
    {"hover_height": 0.035},
)


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
    # of its key's press target (x along the key, y across); under half a white
    # key's width (22.5 mm) across. Issue 18, dev set only (open-loop F1 of the
    # 11 dev chunks' first 200 steps, mean): 0.015/0.005 (half a black key, the
    # old values) 0.491; 0.015/0.008 0.520; 0.025/0.008 0.523. Most missed notes
    # had never been let down: the stricter gate kept the finger hovering. With the reach-aware
    # fingering and `unaligned_weight` below (mean 0.641 at y 8 mm): y 10 mm 0.658, 12 mm 0.663
    # (9 of 11 chunks up, none down), 15 mm 0.661, 12 mm with x 35 mm 0.653. The IK keeps pulling
    # the fingertip to the key's midline while it descends.
    align_tolerance_x: float = 0.025
    align_tolerance_y: float = 0.012
    # An idle hand moves to its next keys this many steps ahead (RP1M's lookahead
    # L-1 is 10). Issue 18, dev as above (with the tolerances): 10 0.523, 15 0.550,
    # 20 0.579 on 10 of the 11 (15: 0.581 on those); 15 kept.
    prepare_steps: int = 15
    align_steps: int = 2  # ... and was at the step before (the servos lag the IK by about one; 1: dev F1 0.920 -> 0.799, 0.879 -> 0.672 on the first two)
    # IK weight of a commanded finger not yet over its key (None: `press_weight`), so that a key
    # the hand cannot reach does not drag its other pressing fingers off theirs. Issue 18, dev
    # open-loop F1 of the 11 dev chunks' first 200 steps, mean: press weight 0.615, (1, 1, 1)
    # 0.635, (3, 3, 3) 0.627; with `FingeringCosts.reach_cost` 3: 0.641 (10 of 11 chunks >= 0.615's).
    unaligned_weight: tuple | None = (1.0, 1.0, 1.0)
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
    # Phrase fingering (`envs.control.fingering`): a second assignment pass pays this
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
        check_fields(self, non_negative=("hover_height", "switch_cost", "crossing_cost", "thumb_cost", "room_cost",
                                         "white_press_fraction", "black_press_fraction", "align_tolerance_x",
                                         "align_tolerance_y", "early_release_cost", "fingering_hint_cost"),
                     ints={"press_lead_steps": 0, "prepare_steps": 0, "early_release_steps": 0, "align_steps": 1})
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

    def digest_doc(self) -> dict:
        """`as_dict` and, with the search on, its candidates: they make the trajectory as much as
        the fields do, so every key built on this config (the nominal cache, run keys) follows them."""
        doc = self.as_dict()
        if self.search:
            doc["search_variants"] = list(SEARCH_VARIANTS)
        return doc

    def digest(self) -> str:
        blob = json.dumps(self.digest_doc(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

