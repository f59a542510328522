"""Index tables of the piano task, read once from a `make_env` env for the lean path.

`tables_from_env(env)` turns the task's MJCF elements (actuators, key joints,
fingertip sites, key geoms, sensors, forearm geoms) into MuJoCo ids and
addresses, and its note trajectory into dense goal arrays, so that
`envs.piano.lean` and `envs.piano.lean_rollout` read everything straight from MjData.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from envs.piano.env import PianoEnv

# dm_control `rewards.tolerance(..., sigmoid="gaussian")` with its default value
# at the margin (0.1): exp(-0.5 (d * scale)^2) with scale = sqrt(-2 ln 0.1).
GAUSSIAN_SCALE = np.sqrt(-2 * np.log(0.1))
# mujoco_utils.collision_utils.has_collision: contacts farther than this are ignored.
_COLLISION_MARGIN = 1e-8


def gaussian_tolerance(x, upper: float, margin: float) -> np.ndarray:
    """dm_control `rewards.tolerance(x, bounds=(0, upper), margin, sigmoid="gaussian")`,
    written out in the same operations so that the values are the same to the bit."""
    x = np.asarray(x, dtype=np.float64)
    in_bounds = np.logical_and(0.0 <= x, x <= upper)
    d = np.where(x < 0.0, 0.0 - x, x - upper) / margin
    return np.where(in_bounds, 1.0, np.exp(-0.5 * (d * GAUSSIAN_SCALE) ** 2))


@dataclass(frozen=True)
class TaskTables:
    actuator_ids: np.ndarray  # (38,) ctrl index of each hand action, right hand first
    curl_index: np.ndarray  # action indices held at the four-finger curl (empty unless four_fingers)
    curl_value: np.ndarray  # their targets
    key_qpos_adr: np.ndarray  # (88,) qpos address of each key joint, key order
    key_range: np.ndarray  # (88, 2) key joint range (robopianist's Piano._qpos_range)
    hand_qpos_adr: np.ndarray  # (46,) qpos of the hand joints, right hand first
    fingertip_site_ids: np.ndarray  # (10,) right thumb..little, then left
    key_geom_ids: np.ndarray  # (88,) the key geoms
    key_press_offset: np.ndarray  # (88, 3) press point on the key top, from the geom centre
    ot_fingers: np.ndarray  # fingers in the OT matching (all 10, or 8 with four_fingers)
    power_sensor_adr: tuple  # per hand: (actuatorfrc adr, actuatorvel adr) for the energy term
    right_forearm_geom: np.ndarray  # (ngeom,) bool: geoms matching the right forearm's prefixes
    left_forearm_geom: np.ndarray  # (ngeom,) bool: the same for the left forearm
    collision_margin: float
    goal: np.ndarray  # (rows, 89) goal rows (keys, sustain), padded with silence
    human_sites: tuple  # per episode step: (n,) fingertip index (0-9) of each labelled note
    human_keys: tuple  # per episode step: (n,) its key; right-hand notes first, as robopianist


def _prefix_mask(names: list[str], prefixes: list[str]) -> np.ndarray:
    # has_collision matches geom names by prefix (so "...geom_1" also matches "...geom_12").
    return np.array([any(name.startswith(p) for p in prefixes) for name in names], dtype=bool)


def _goal_rows(task, goal_steps: int, n_steps: int) -> np.ndarray:
    notes, sustains = task._goal_notes, task._goal_sustains
    rows = np.zeros((max(len(notes), n_steps) + goal_steps, task.piano.n_keys + 1))
    for t, step_notes in enumerate(notes):
        rows[t, [note.key for note in step_notes]] = 1.0
        rows[t, -1] = sustains[t]
    return rows


def _human_fingering(task) -> tuple[tuple, tuple]:
    """robopianist's `_update_fingering_state` per step: (fingertip, key) of every
    labelled note, right-hand notes first (the order its reward averages in)."""
    sites, keys = [], []
    for step_notes in task.notes:
        # robopianist indexes the hand's sites with the label (a negative one wraps
        # within the right hand, as Python indexing does).
        right = [(n.fingering % 5, n.key) for n in step_notes if n.fingering < 5]
        left = [(n.fingering, n.key) for n in step_notes if n.fingering >= 5]
        pairs = right + left
        sites.append(np.array([f for f, _ in pairs], dtype=np.int64))
        keys.append(np.array([k for _, k in pairs], dtype=np.int64))
    return tuple(sites), tuple(keys)


def tables_from_env(env: PianoEnv) -> TaskTables:
    task, physics = env.task, env.physics
    model = physics.model
    hands = (task.right_hand, task.left_hand)
    task._prepare_ids(physics)

    actuator_ids = np.array([model.name2id(a.full_identifier, "actuator") for h in hands for a in h.actuators])
    probe = task._curl_little_fingers(physics, np.full(len(actuator_ids) + 1, np.nan)) \
        if env.config.four_fingers else np.full(len(actuator_ids) + 1, np.nan)
    curl_index = np.flatnonzero(np.isfinite(probe[:-1]))

    def qpos_adr(joints) -> np.ndarray:
        return np.array([model.jnt_qposadr[model.name2id(j.full_identifier, "joint")] for j in joints])

    def sensor_adr(sensors) -> np.ndarray:
        return np.array([model.sensor_adr[model.name2id(s.full_identifier, "sensor")] for s in sensors])

    names = [mujoco.mj_id2name(model.ptr, mujoco.mjtObj.mjOBJ_GEOM, g) or "" for g in range(model.ngeom)]
    human_sites, human_keys = _human_fingering(task)
    return TaskTables(
        actuator_ids=actuator_ids,
        curl_index=curl_index,
        curl_value=probe[curl_index],
        key_qpos_adr=qpos_adr(task.piano.joints),
        key_range=np.array(task.piano._qpos_range, dtype=np.float64),
        hand_qpos_adr=np.concatenate([qpos_adr(h.joints) for h in hands]),
        fingertip_site_ids=np.asarray(task._fingertip_site_ids),
        key_geom_ids=np.asarray(task._key_geom_ids),
        key_press_offset=np.asarray(task._key_press_offset),
        ot_fingers=np.asarray(task._ot_fingers),
        power_sensor_adr=tuple((sensor_adr(h.actuator_force_sensors), sensor_adr(h.actuator_velocity_sensors))
                               for h in hands),
        right_forearm_geom=_prefix_mask(names, [g.full_identifier for g in task.right_hand.root_body.geom]),
        left_forearm_geom=_prefix_mask(names, [g.full_identifier for g in task.left_hand.root_body.geom]),
        collision_margin=_COLLISION_MARGIN,
        goal=_goal_rows(task, env.config.goal_steps, env.episode_steps),
        human_sites=human_sites,
        human_keys=human_keys,
    )
