"""The forearm slides as critically damped position servos, and controls that invert them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


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

