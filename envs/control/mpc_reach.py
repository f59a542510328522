"""Reach candidates of the MPC: action offsets that move free fingertips onto missed goal keys.

Sampling near the nominal rarely finds the coordinated move a note far from the
plan needs (the finger must come over its key, then down). `ReachCandidates`
linearises the hands at the executed state: fingertip site Jacobians
(`mujoco.mj_jacSite`) times the map from actuator targets to joint motion
(a position actuator moves its joint by its target change; a coupled J1+J2
tendon splits it evenly) give a small damped least-squares problem per step,
whose solution moves one free fingertip of the owning hand onto each goal key
that is about to sound and is not down, lifts the fingertip nearest each key
that is down but should not be, and keeps the other fingertips in place.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.piano.lean import LeanPiano

PRESS_DEPTH = 0.015  # m below the key top for a pressing fingertip site (envs.control.nominal NominalConfig)
LIFT = 0.02  # m a fingertip on a wrong key is raised
HOLD_WEIGHT = 0.3  # weight of "stay in place" for the fingertips without a target
DAMPING = 1e-4  # Tikhonov weight on the actuator change, per squared half range
FREE_DISTANCE = 0.012  # m: a fingertip within this (across and along the key) of a sounding key is busy


class ReachCandidates:
    """Action offsets (39,) at a lane's state towards the goal keys of a coming step."""

    def __init__(self, lean: LeanPiano, low: np.ndarray, high: np.ndarray) -> None:
        m, tab = lean.model, lean.tables
        self.model, self.lean = m, lean
        self.sites = [int(s) for s in tab.fingertip_site_ids]
        self.half = 0.5 * (np.asarray(high[:-1]) - np.asarray(low[:-1]))
        n_act = len(tab.actuator_ids)
        dof_map = np.zeros((m.nv, n_act))  # joint motion per unit change of each actuator's target
        for i, a in enumerate(tab.actuator_ids):
            a, target = int(a), int(m.actuator_trnid[int(a), 0])
            if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT:
                dof_map[m.jnt_dofadr[target], i] = 1.0
            elif m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_TENDON:
                adr, num = m.tendon_adr[target], m.tendon_num[target]
                for w in range(adr, adr + num):
                    dof_map[m.jnt_dofadr[m.wrap_objid[w]], i] = 1.0 / (num * m.wrap_prm[w])
        if tab.curl_index.size:
            dof_map[:, tab.curl_index] = 0.0  # four fingers: the curled little fingers stay
        self.dof_map = dof_map
        data = mujoco.MjData(m)
        mujoco.mj_forward(m, data)
        self.key_points = data.geom_xpos[tab.key_geom_ids] + tab.key_press_offset
        self.key_tops = data.geom_xpos[tab.key_geom_ids, 2] + m.geom_size[tab.key_geom_ids, 2]
        self._jac = np.zeros((3, m.nv))

    def offset(self, data: mujoco.MjData, goal: np.ndarray, pressed: np.ndarray, right_keys: np.ndarray
               ) -> np.ndarray | None:
        """(39,) actuator target offsets (pedal 0) for `goal` (88,) bool keys that should sound
        soon given the keys `pressed` (88,) now; None when nothing is to be moved."""
        tips = data.site_xpos[self.sites]  # (10, 3)
        targets: dict[int, np.ndarray] = {}
        sounding = np.flatnonzero(goal & pressed)
        busy = set()
        for k in sounding:  # a fingertip over a sounding goal key keeps it
            d = np.linalg.norm(tips[:, :2] - self.key_points[k, :2], axis=1)
            if d.min() < FREE_DISTANCE:
                busy.add(int(np.argmin(d)))
        for k in np.flatnonzero(goal & ~pressed):
            fingers = [f for f in (range(5) if right_keys[k] else range(5, 10)) if f not in busy and f not in targets]
            if not fingers:
                continue
            d = np.linalg.norm(tips[fingers, :2] - self.key_points[k, :2], axis=1)
            f = fingers[int(np.argmin(d))]
            target = self.key_points[k].copy()
            target[2] = self.key_tops[k] - PRESS_DEPTH
            targets[f] = target
        for k in np.flatnonzero(pressed & ~goal):
            d = np.linalg.norm(tips[:, :2] - self.key_points[k, :2], axis=1)
            f = int(np.argmin(d))
            if f not in targets and f not in busy:
                targets[f] = tips[f] + np.array([0.0, 0.0, LIFT])
        if not targets:
            return None
        rows, errors, weights = [], [], []
        for f in range(len(self.sites)):
            mujoco.mj_jacSite(self.model, data, self._jac, None, self.sites[f])
            rows.append(self._jac @ self.dof_map)
            if f in targets:
                errors.append(targets[f] - tips[f])
                weights.append(np.ones(3))
            else:
                errors.append(np.zeros(3))
                weights.append(np.full(3, HOLD_WEIGHT))
        jac = np.concatenate(rows)  # (30, 38)
        err = np.concatenate(errors)
        w = np.concatenate(weights) ** 2
        lhs = jac.T @ (w[:, None] * jac) + DAMPING * np.diag(1.0 / np.maximum(self.half, 1e-6) ** 2)
        delta = np.linalg.solve(lhs, jac.T @ (w * err))
        return np.append(delta, 0.0)
