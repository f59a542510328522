"""OT-IK nominal controller: a fingertip plan from the notes alone, IK, open-loop actions.

PianoMime (section 3.2) learns a residual on top of the IK solution of human
fingertip trajectories; we plan those fingertips from the chunk's notes with
RP1M's OT fingering (Eq. 1-2), so a nominal exists for any song. The steps,
one module each: `plan` (step-wise OT assignment, then the phrase fingering of
`envs.control.fingering` as a hint), `timing` (press/release leads, lifts),
`servo` (forearm feed-forward), `trajectory` (IK along the chunk) and
`controller` (an open-loop search over `SEARCH_VARIANTS`, the cache, and the
actions as a policy). The README's "Specialists" section explains the choices.
Imports: envs.piano and envs.control only.
"""

from envs.control.nominal.config import NominalConfig
from envs.control.nominal.controller import (
    SEARCH_VARIANTS,
    NominalController,
    chunk_digest,
    clear_nominal_cache,
    nominal_actions,
    nominal_trajectory,
    open_loop_metrics,
    play_actions,
    run_open_loop,
)
from envs.control.nominal.geometry import FingertipPlan, KeyboardGeometry, hand_of, usable_fingers
from envs.control.nominal.plan import assignment_costs, plan_fingertips, plan_from_goals
from envs.control.nominal.servo import SlideServo
from envs.control.nominal.timing import command_targets, schedule_presses
from envs.control.nominal.trajectory import NominalTrajectory, ready_posture, solve_trajectory, sustain_goal

__all__ = [
    "SEARCH_VARIANTS", "FingertipPlan", "KeyboardGeometry", "NominalConfig", "NominalController",
    "NominalTrajectory", "SlideServo", "assignment_costs", "chunk_digest", "clear_nominal_cache",
    "command_targets", "hand_of", "nominal_actions", "nominal_trajectory", "open_loop_metrics", "play_actions",
    "plan_fingertips", "plan_from_goals", "ready_posture", "run_open_loop", "schedule_presses",
    "solve_trajectory", "sustain_goal", "usable_fingers",
]
