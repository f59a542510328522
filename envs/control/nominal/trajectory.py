"""IK along the commanded fingertips: the nominal trajectory of one chunk (step 4).

IK (`envs.control.ik.HandsIK`) along the commanded fingertip trajectory, warm
started step to step, posture-regularised towards both hands hovering
(`ready_posture`), gives (T, 39) actions (sustain pedal from the goal).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.control.ik import HandsIK
from envs.control.nominal.config import NominalConfig
from envs.control.nominal.geometry import FingertipPlan, KeyboardGeometry
from envs.control.nominal.plan import plan_fingertips
from envs.control.nominal.servo import SlideServo
from envs.control.nominal.timing import leaving_keys, command_targets, schedule_presses
from envs.piano.spec import N_FINGERTIPS

if TYPE_CHECKING:
    from envs.music.chunks import Chunk
    from envs.piano.env import PianoEnv

logger = logging.getLogger(__name__)


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
    # The actions of the search's other candidates, in the order of `search[1:]`
    # (e.g. the MPC's alternative nominals, `envs.control.mpc`).
    alternatives: tuple = ()


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



def solve_trajectory(env: "PianoEnv", sustain: np.ndarray, config: NominalConfig | None = None) -> NominalTrajectory:
    """Plan, schedule and solve the IK for the env's chunk (resets the env, does not step it)."""
    config = config or NominalConfig()
    plan = plan_fingertips(env, config)  # resets the env
    geometry = KeyboardGeometry.from_env(env)
    command = schedule_presses(plan, config)
    targets = command_targets(plan, command, geometry, config)
    anchored = command >= 0
    if config.lift_in_place:
        anchored |= leaving_keys(command)
    return ik_along(env, plan, command, targets, anchored, sustain, config, geometry)


def ik_along(env: "PianoEnv", plan: FingertipPlan, command: np.ndarray, targets: np.ndarray, anchored: np.ndarray,
             sustain: np.ndarray, config: NominalConfig, geometry: KeyboardGeometry,
             first_targets: np.ndarray | None = None, weights: np.ndarray | None = None) -> NominalTrajectory:
    """The IK along fingertip `targets` (T, 10, 3): fingers commanded onto a key (`command` >= 0)
    go down only once above it; `anchored` fingers are held with the press weight. The IK's
    posture hovers over `first_targets` (default: the plan's first step); `weights` (T, 10, 3)
    replace the press/hover weights."""
    press = geometry.press_targets(config)
    targets = np.array(targets, dtype=np.float64)
    ik = HandsIK(env.physics, env.task, config.ik)
    first = plan.targets[0] if first_targets is None else first_targets
    ik.set_posture(ready_posture(ik, first, geometry, config))
    if weights is None:
        weights = np.where(anchored[..., None], np.asarray(config.press_weight), np.asarray(config.hover_weight))
    weights = np.array(weights, dtype=np.float64)  # changed per step below
    n_steps = len(targets)
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
            if config.align_steps > 1:  # ... and has been for a step: the servos lag the IK by about one.
                away |= np.any(np.abs(previous[pressing] - press[keys, :2]) > tolerance, axis=1)
            if away.any():
                step_targets = step_targets.copy()
                step_targets[pressing[away], 2] = geometry.key_tops[keys[away]] + config.hover_height
                targets[t] = step_targets
                if config.unaligned_weight is not None:
                    step_weights = weights[t].copy()
                    step_weights[pressing[away]] = config.unaligned_weight
                    weights[t] = step_weights
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
