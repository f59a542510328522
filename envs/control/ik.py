"""Differential inverse kinematics for robopianist's two Shadow hands (mink).

`HandsIK` solves, on the env's own MuJoCo model, for hand joint positions that
put the 10 fingertips (right hand first, thumb..little, as `envs.piano.task`) on
given world positions, and maps them to the env's action (position servos).
It is the low-level half of PianoMime's nominal behaviour (PianoMime section
3.2 and Appendix C: a QP-based differential IK over 10 fingertip position
tasks, no orientation); `envs.control.nominal` feeds it fingertip targets planned
from the notes.

The QP (mink 1.3.0, solver daqp), per iteration, in joint displacements dq:

    min  sum_f w_f |J_f dq + g e_f|^2 + |W_post (dq + g_post (q - q_post))|^2
         + damping |dq|^2
    s.t. piano key DOFs frozen (mink.DofFreezingTask as an equality constraint),
         J1 = J2 on each coupled finger (see below, equality constraint),
         joint ranges (mink.ConfigurationLimit), joint speeds (mink.VelocityLimit).

Only the 46 hand DOFs move: the forearm slides (tx along the keyboard, ty
away from the player), the wrist and the fingers. The piano's 88 key joints
are part of the model but frozen, so the IK never "presses" a key kinematically.

Coupled finger joints: the reduced Shadow hand drives J1 and J2 of the index,
middle, ring and little fingers through one tendon actuator (A_xFJ0, a
position servo on the fixed tendon J1 + J2). The split between J1 and J2 is
not commanded; in free motion the simulator moves both equally (equal
torques on equally damped joints: measured J1 - J2 < 0.01 rad during a 1 rad
step). The IK therefore constrains J1 = J2, so that the fingertip it solves
for is the one the servo produces. `qpos_to_ctrl` maps joint positions to
actuator targets through the actuators' transmissions: a joint actuator gets
its joint's position, a tendon actuator the tendon length sum(coef_i q_i).

Iterations and dt: `solve` runs `IKConfig.iterations` QP steps per call (one
control step); mink's dt is set to control_timestep / iterations so that the
velocity limits bound the joint speed over the control step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import mink
import mujoco
import numpy as np

from envs.piano.spec import HAND_ACTION_DIM, N_FINGERTIPS

if TYPE_CHECKING:
    from envs.piano.task import PianoTask



@dataclass(frozen=True)
class IKConfig:
    """Differential IK settings (mink). Defaults from PianoMime Table 2 where it gives them."""

    iterations: int = 4  # QP steps per control step (ours; warm started along a trajectory, 8 gave the same F1)
    control_timestep: float = 0.05  # s, 20 Hz (RP1M Table 4); dt = control_timestep / iterations
    fingertip_cost: float = 1.0  # weight of each fingertip position task; PianoMime App. C: all equal
    gain: float = 1.0  # task gain, PianoMime Table 2 ("Gain")
    # mink ConfigurationLimit gain. PianoMime Table 2 has 0.05 ("Limit Gain"):
    # with 4 iterations per control step joints then approach their limits too
    # slowly (open-loop F1 on the three easy chunks 0.527 vs 0.712 with 0.5, 0.701 with 0.95).
    limit_gain: float = 0.5
    damping: float = 1e-6  # global Levenberg-Marquardt damping, PianoMime Table 2 ("Damping")
    lm_damping: float = 1e-6  # fingertip task LM damping, PianoMime Table 2 ("Levenberg-Marquardt Damping")
    # Posture regulariser (ours; PianoMime lists none). Costs per DOF group, in
    # units of fingertip cost per radian (per metre for the forearm slides).
    posture_cost_fingers: float = 0.02
    posture_cost_wrist: float = 0.05
    posture_cost_forearm_tx: float = 0.0  # the hand travels freely along the keyboard
    posture_cost_forearm_ty: float = 0.2  # keep the hand near its default depth
    # Joint speed limits (ours, from the env's servos): fingers (kp 1, damping
    # 0.05 -> time constant 0.05 s) can swing their range in ~0.15 s; the
    # forearm servo (kp 300 N/m, critically damped, 3.8 kg -> 0.11 s) reaches
    # ~0.3 m/s on a 10 cm step, faster with the feedforward of envs.control.nominal.
    max_speed_fingers: float = 10.0  # rad/s
    max_speed_wrist: float = 6.0  # rad/s
    max_speed_forearm: float = 0.4  # m/s
    solver: str = "daqp"
    # Least distance (m, world y) the IK keeps between the two forearm bodies (0: no limit). The
    # forearm geoms touch at 0.1495 m (envs.piano.failure.FOREARM_GAP_M); closer targets jam both
    # hands (issue 18: the forearms touched in most "jam" misses of a dev chorale, bwv10.7). Dev
    # set only (benchmarks/nominal_dev.py, first 200 steps of the 11 dev chunks, open-loop ik F1
    # mean): 0 (no limit) 0.551, 0.155 0.615, 0.17 0.599; bwv10.7 0.453 -> 0.594, dichterliebe
    # 0.314 -> 0.578, none lower.
    forearm_gap: float = 0.155
    # Least distance (m) the IK keeps between each hand's thumb geoms and the other hand's thumb
    # and index finger geoms (0: no limit; mink's CollisionAvoidanceLimit on those geom pairs).
    # With the forearms at their gap the thumbs, which stick out ~0.1 m towards the other hand,
    # overlap. Issue 18, dev set only (open-loop ik nominal, first 200 steps of the 11 dev
    # chunks): without the limit the two thumbs touched in 53 of 200 steps of bwv846 (3 with
    # 0.015), and a thumb-thumb or thumb-index contact was under way in 68 of the 90 notes
    # classified `jam`. Open-loop F1 mean (benchmarks/nominal_dev.py): 0 0.679, 0.005 0.681,
    # 0.015 0.684 (5 chunks up, polonaise_op1n2 0.478 -> 0.519, 3 down by <= 0.013): the
    # contacts mostly did not cost the notes; the limit is kept for the physically clean play.
    thumb_clearance: float = 0.015

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"IKConfig.iterations={self.iterations}: must be >= 1")
        if self.control_timestep <= 0:
            raise ValueError(f"IKConfig.control_timestep={self.control_timestep}: must be > 0")
        if not 0.0 <= self.gain <= 1.0:
            raise ValueError(f"IKConfig.gain={self.gain}: must be in [0, 1]")
        if not 0.0 < self.limit_gain <= 1.0:
            raise ValueError(f"IKConfig.limit_gain={self.limit_gain}: must be in (0, 1]")
        for name in ("fingertip_cost", "damping", "lm_damping", "posture_cost_fingers", "posture_cost_wrist",
                     "posture_cost_forearm_tx", "posture_cost_forearm_ty"):
            if getattr(self, name) < 0:
                raise ValueError(f"IKConfig.{name}={getattr(self, name)}: must be >= 0")
        for name in ("max_speed_fingers", "max_speed_wrist", "max_speed_forearm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"IKConfig.{name}={getattr(self, name)}: must be > 0")
        if self.forearm_gap < 0:
            raise ValueError(f"IKConfig.forearm_gap={self.forearm_gap}: must be >= 0")
        if self.thumb_clearance < 0:
            raise ValueError(f"IKConfig.thumb_clearance={self.thumb_clearance}: must be >= 0")

    @property
    def dt(self) -> float:
        """mink integration step per QP iteration, s."""
        return self.control_timestep / self.iterations


class FingertipPositionTask(mink.Task):
    """Position-only task for a set of sites, error and weights in world axes.

    Error e = p(q) - p*, Jacobian the sites' translational Jacobians (mj_jacSite);
    `weights` (n, 3) scale each site's world-axis rows (0 switches one off).
    mink's FrameTask weights its error in the site's local frame and carries an
    orientation part; a position-only task in world axes is simpler and cheaper.
    """

    def __init__(self, model: mujoco.MjModel, site_ids: np.ndarray, cost: float = 1.0,
                 gain: float = 1.0, lm_damping: float = 0.0) -> None:
        self.site_ids = np.asarray(site_ids, dtype=np.int64)
        n = len(self.site_ids)
        super().__init__(cost=np.full(3 * n, float(cost)), gain=gain, lm_damping=lm_damping)
        self.k = 3 * n
        self._base_cost = float(cost)
        self._targets = None
        self._jac = np.zeros((3, model.nv))

    def set_targets(self, targets: np.ndarray, weights: np.ndarray | None = None) -> None:
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != (len(self.site_ids), 3):
            raise ValueError(f"fingertip targets: expected shape ({len(self.site_ids)}, 3), got {targets.shape}")
        if not np.all(np.isfinite(targets)):
            raise ValueError(f"fingertip targets: non-finite values {targets}")
        self._targets = targets.copy()
        n = len(self.site_ids)
        if weights is None:
            w = np.ones((n, 3))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape == (n,):  # one weight per site
                w = w[:, None]
            try:
                w = np.broadcast_to(w, (n, 3))
            except ValueError:
                raise ValueError(f"fingertip weights: shape {w.shape} does not broadcast to ({n}, 3)") from None
            if np.any(w < 0):
                raise ValueError(f"fingertip weights must be >= 0, got {w}")
        self.cost = self._base_cost * w.ravel()

    def compute_error(self, configuration: mink.Configuration) -> np.ndarray:
        if self._targets is None:
            raise mink.TargetNotSet(self.__class__.__name__)
        return (configuration.data.site_xpos[self.site_ids] - self._targets).ravel()

    def compute_jacobian(self, configuration: mink.Configuration) -> np.ndarray:
        model, data = configuration.model, configuration.data
        rows = np.empty((self.k, model.nv))
        for i, site in enumerate(self.site_ids):
            mujoco.mj_jacSite(model, data, self._jac, None, int(site))
            rows[3 * i: 3 * i + 3] = self._jac
        return rows


class JointCouplingTask(mink.Task):
    """q[a_i] - q[b_i] = 0 for pairs of hinge/slide joints (used as an equality constraint)."""

    def __init__(self, model: mujoco.MjModel, pairs: list[tuple[int, int]], gain: float = 1.0) -> None:
        if not pairs:
            raise ValueError("JointCouplingTask: no joint pairs given")
        super().__init__(cost=np.ones(len(pairs)), gain=gain)
        self.k = len(pairs)
        self._qpos_a = np.array([model.jnt_qposadr[a] for a, _ in pairs])
        self._qpos_b = np.array([model.jnt_qposadr[b] for _, b in pairs])
        self._jacobian = np.zeros((len(pairs), model.nv))
        for i, (a, b) in enumerate(pairs):
            self._jacobian[i, model.jnt_dofadr[a]] = 1.0
            self._jacobian[i, model.jnt_dofadr[b]] = -1.0

    def compute_error(self, configuration: mink.Configuration) -> np.ndarray:
        q = configuration.q
        return q[self._qpos_a] - q[self._qpos_b]

    def compute_jacobian(self, configuration: mink.Configuration) -> np.ndarray:
        del configuration
        return self._jacobian


@dataclass
class HandConfigurationLimit(mink.ConfigurationLimit):
    """mink's joint-range limit restricted to the given DOFs (the hands').

    The piano key joints are limited too, but frozen by an equality constraint;
    leaving their 176 range rows out of the QP halves its inequality count.
    """

    def __init__(self, model: mujoco.MjModel, dofs: np.ndarray, gain: float = 0.95) -> None:
        super().__init__(model, gain=gain)
        keep = np.isin(self.indices, np.asarray(dofs))
        self.indices = self.indices[keep]
        self.indices.setflags(write=False)
        self.projection_matrix = np.eye(model.nv)[self.indices] if len(self.indices) else None


class ForearmGapLimit(mink.Limit):
    """The right forearm body stays at least `gap` further along +y (the keyboard) than the left one.

    Linearised per QP step as G dq <= h with G = -(J_right - J_left) (the y rows of the
    bodies' Jacobians) and h = gain * (y_right - y_left - gap); a violated gap is closed at
    most `max_step` per step (what the forearm speed limit allows both hands), so that
    the QP stays feasible.
    """

    def __init__(self, model: mujoco.MjModel, right_body: int, left_body: int, gap: float,
                 gain: float, max_step: float) -> None:
        self.model, self.bodies, self.gap, self.gain, self.max_step = model, (right_body, left_body), gap, gain, max_step
        self._jac = np.zeros((2, 3, model.nv))

    def compute_qp_inequalities(self, configuration: mink.Configuration, dt: float) -> mink.Constraint:
        data = configuration.data
        for i, body in enumerate(self.bodies):
            mujoco.mj_jacBody(self.model, data, self._jac[i], None, body)
        right, left = self.bodies
        slack = float(data.xpos[right, 1] - data.xpos[left, 1] - self.gap)
        G = -(self._jac[0, 1] - self._jac[1, 1])[None, :]
        return mink.Constraint(G=G, h=np.array([max(self.gain * slack, -self.max_step)]))


def thumb_collision_limit(physics, hands, clearance: float, gain: float) -> mink.Limit:
    """mink's collision avoidance between each hand's thumb and the other hand's thumb and index
    finger (their colliding geoms), keeping `clearance` between them."""
    model = physics.model.ptr

    def colliding(hand, parts: tuple[str, ...]) -> list[int]:
        geoms = [g for g in hand.mjcf_model.find_all("geom") if (g.parent.name or "").endswith(parts)]
        ids = [int(i) for i in physics.bind(geoms).element_id] if geoms else []
        return [i for i in ids if model.geom_contype[i] or model.geom_conaffinity[i]]

    thumb = ("thbase", "thproximal", "thhub", "thmiddle", "thdistal")
    index = ("ffproximal", "ffmiddle", "ffdistal")
    right, left = hands
    pairs = [(colliding(right, thumb), colliding(left, thumb + index)),
             (colliding(left, thumb), colliding(right, index))]
    if not all(a and b for a, b in pairs):
        raise ValueError("HandsIK: thumb_clearance needs the hands' thumb and index finger geoms; found "
                         f"{[(len(a), len(b)) for a, b in pairs]}")
    return mink.CollisionAvoidanceLimit(model, pairs, gain=gain, minimum_distance_from_collisions=clearance,
                                        collision_detection_distance=clearance + 0.02)


@dataclass
class IKStats:
    """Running totals of `HandsIK.solve` calls (for benchmarks)."""

    calls: int = 0
    seconds: float = 0.0
    residuals_m: list = field(default_factory=list)  # per call: max fingertip error after solving

    @property
    def ms_per_call(self) -> float:
        return 1e3 * self.seconds / max(self.calls, 1)


class HandsIK:
    """Differential IK for both hands on the env's own model (its MjData untouched).

    Usage::

        ik = HandsIK(env.physics, env.task)       # starts from the env's current state
        q = ik.solve(targets)                     # (10, 3) fingertip targets, world frame
        action = ik.action(sustain=0.0)           # (39,) for env.step
    """

    def __init__(self, physics, task: "PianoTask", config: IKConfig | None = None) -> None:
        self.config = config or IKConfig()
        cfg = self.config
        model: mujoco.MjModel = physics.model.ptr
        self.model = model
        # mink.Configuration owns a fresh MjData: the env's data is never written.
        self.configuration = mink.Configuration(model, q=np.array(physics.data.qpos, dtype=np.float64))

        hands = (task.right_hand, task.left_hand)
        self.site_ids = np.array([
            mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, s.full_identifier)
            for hand in hands for s in hand.fingertip_sites
        ])
        if len(self.site_ids) != N_FINGERTIPS or np.any(self.site_ids < 0):
            raise ValueError(f"HandsIK: expected {N_FINGERTIPS} fingertip sites, found ids {self.site_ids}")
        joint_names = [j.full_identifier for hand in hands for j in hand.joints]
        self.joint_ids = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names])
        if np.any(self.joint_ids < 0):
            raise ValueError(f"HandsIK: hand joints missing from the model: "
                             f"{[n for n, i in zip(joint_names, self.joint_ids) if i < 0]}")
        self.joint_names = joint_names
        for jid, name in zip(self.joint_ids, joint_names):
            if int(model.jnt_type[jid]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ValueError(f"HandsIK: joint {name} is not a hinge or slide joint")
        self.hand_qpos = model.jnt_qposadr[self.joint_ids]
        self.hand_dofs = model.jnt_dofadr[self.joint_ids]
        frozen = np.setdiff1d(np.arange(model.nv), self.hand_dofs)

        # Actuators -> linear map ctrl = A @ qpos, from their transmissions.
        actuators = [a.full_identifier for hand in hands for a in hand.actuators]
        if len(actuators) != HAND_ACTION_DIM:
            raise ValueError(f"HandsIK: expected {HAND_ACTION_DIM} hand actuators, the env has {len(actuators)}")
        self.actuator_ids = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in actuators])
        self.actuation = np.zeros((len(actuators), model.nq))
        coupled_pairs = []
        for row, aid in enumerate(self.actuator_ids):
            trn, target = int(model.actuator_trntype[aid]), int(model.actuator_trnid[aid, 0])
            gear = model.actuator_gear[aid, 0]
            if trn == int(mujoco.mjtTrn.mjTRN_JOINT):
                self.actuation[row, model.jnt_qposadr[target]] = 1.0 / gear
            elif trn == int(mujoco.mjtTrn.mjTRN_TENDON):
                adr, num = model.tendon_adr[target], model.tendon_num[target]
                joints = []
                for w in range(adr, adr + num):
                    if int(model.wrap_type[w]) != int(mujoco.mjtWrap.mjWRAP_JOINT):
                        raise ValueError(f"HandsIK: actuator {actuators[row]} drives a spatial tendon; "
                                         "only fixed (joint) tendons are supported")
                    self.actuation[row, model.jnt_qposadr[model.wrap_objid[w]]] += model.wrap_prm[w] / gear
                    joints.append(int(model.wrap_objid[w]))
                if len(joints) == 2:
                    coupled_pairs.append((joints[0], joints[1]))
            else:
                raise ValueError(f"HandsIK: actuator {actuators[row]} has unsupported transmission {trn}")
        self.ctrl_range = model.actuator_ctrlrange[self.actuator_ids].copy()

        # Tasks.
        self.fingertips = FingertipPositionTask(model, self.site_ids, cost=cfg.fingertip_cost,
                                                gain=cfg.gain, lm_damping=cfg.lm_damping)
        self.posture = mink.PostureTask(model, cost=self._posture_costs(joint_names), gain=cfg.gain)
        self.posture.set_target(self.configuration.q)
        self.constraints = [mink.DofFreezingTask(model, dof_indices=[int(d) for d in frozen])]
        if coupled_pairs:
            self.constraints.append(JointCouplingTask(model, coupled_pairs))
        self.limits = [
            HandConfigurationLimit(model, self.hand_dofs, gain=cfg.limit_gain),
            mink.VelocityLimit(model, self._speed_limits(joint_names)),
        ]
        if cfg.forearm_gap > 0:
            forearms = [next(b for b in hand.mjcf_model.find_all("body") if b.name and b.name.endswith("forearm"))
                        for hand in hands]
            ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b.full_identifier) for b in forearms]
            self.limits.append(ForearmGapLimit(model, ids[0], ids[1], cfg.forearm_gap, gain=cfg.limit_gain,
                                               max_step=1.8 * cfg.max_speed_forearm * cfg.dt))
        if cfg.thumb_clearance > 0:
            self.limits.append(thumb_collision_limit(physics, hands, cfg.thumb_clearance, cfg.limit_gain))
        self.stats = IKStats()

    # --- setup helpers ------------------------------------------------------------------

    def _group(self, name: str) -> str:
        short = name.rsplit("/", 1)[-1]
        if short == "forearm_tx":
            return "forearm_tx"
        if short == "forearm_ty":
            return "forearm_ty"
        if "WRJ" in short:
            return "wrist"
        return "fingers"

    def _posture_costs(self, joint_names: list[str]) -> np.ndarray:
        cfg = self.config
        per_group = {"forearm_tx": cfg.posture_cost_forearm_tx, "forearm_ty": cfg.posture_cost_forearm_ty,
                     "wrist": cfg.posture_cost_wrist, "fingers": cfg.posture_cost_fingers}
        costs = np.zeros(self.model.nv)
        for dof, name in zip(self.hand_dofs, joint_names):
            costs[dof] = per_group[self._group(name)]
        return costs

    def _speed_limits(self, joint_names: list[str]) -> dict[str, float]:
        cfg = self.config
        per_group = {"forearm_tx": cfg.max_speed_forearm, "forearm_ty": cfg.max_speed_forearm,
                     "wrist": cfg.max_speed_wrist, "fingers": cfg.max_speed_fingers}
        model_names = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.joint_ids]
        return {m: per_group[self._group(n)] for m, n in zip(model_names, joint_names)}

    # --- state --------------------------------------------------------------------------

    @property
    def q(self) -> np.ndarray:
        """Full model qpos of the IK configuration (piano keys at their reset values)."""
        return self.configuration.q.copy()

    def reset(self, qpos: np.ndarray) -> None:
        """Restart the IK from a full model qpos (e.g. `physics.data.qpos` after `env.reset()`)."""
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.shape != (self.model.nq,):
            raise ValueError(f"HandsIK.reset: qpos shape {qpos.shape}, the model has nq={self.model.nq}")
        self.configuration.update(q=qpos.copy())

    def set_posture(self, qpos: np.ndarray) -> None:
        """Target of the posture regulariser (full model qpos)."""
        self.posture.set_target(np.asarray(qpos, dtype=np.float64))

    def fingertip_positions(self) -> np.ndarray:
        """(10, 3) fingertip site positions at the IK configuration."""
        return self.configuration.data.site_xpos[self.site_ids].copy()

    # --- solving ------------------------------------------------------------------------

    def solve(self, targets: np.ndarray, weights: np.ndarray | None = None,
              iterations: int | None = None) -> np.ndarray:
        """Move the IK configuration towards fingertip `targets` ((10, 3), world frame).

        `weights` (default 1) scale the fingertip tasks: a scalar, (10,) per
        fingertip, (3,) per world axis or (10, 3).
        Runs `iterations` (default `IKConfig.iterations`) QP steps from the
        current IK configuration (warm start: call it once per control step
        along a trajectory) and returns the hand joint positions (46,), in
        `HandsIK.joint_names` order.
        """
        cfg = self.config
        n_iter = cfg.iterations if iterations is None else int(iterations)
        start = time.perf_counter()
        self.fingertips.set_targets(targets, weights)
        tasks = [self.fingertips, self.posture]
        for _ in range(n_iter):
            velocity = mink.solve_ik(self.configuration, tasks, cfg.dt, cfg.solver, damping=cfg.damping,
                                     limits=self.limits, constraints=self.constraints)
            self.configuration.integrate_inplace(velocity, cfg.dt)
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - start
        error = self.fingertip_positions() - self.fingertips._targets
        self.stats.residuals_m.append(float(np.linalg.norm(error, axis=-1).max()))
        return self.configuration.q[self.hand_qpos].copy()

    # --- actions ------------------------------------------------------------------------

    def qpos_to_ctrl(self, qpos: np.ndarray) -> np.ndarray:
        """(38,) hand actuator targets for a full model qpos, clipped to the ctrl ranges."""
        ctrl = self.actuation @ np.asarray(qpos, dtype=np.float64)
        return np.clip(ctrl, self.ctrl_range[:, 0], self.ctrl_range[:, 1])

    def action(self, sustain: float = 0.0, qpos: np.ndarray | None = None) -> np.ndarray:
        """(39,) env action: hand actuator targets for `qpos` (default: the IK configuration) + sustain."""
        qpos = self.configuration.q if qpos is None else qpos
        return np.concatenate([self.qpos_to_ctrl(qpos), [float(np.clip(sustain, 0.0, 1.0))]])
