"""Typed configuration of the piano task (RP1M defaults).

Every number that shapes the task lives here, with the place it comes from.
`EnvConfig` mirrors the task; reward switches are grouped in `RewardConfig`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

FINGERING_MODES = ("ot", "human", "none")


@dataclass(frozen=True)
class RewardConfig:
    """Reward of RP1M Eq. 3: r = r_OT + r_press + r_sustain + a1 r_collision + a2 r_energy."""

    fingering: str = "ot"  # "ot" (RP1M Eq. 1-2), "human" (robopianist's, needs labels), "none"
    ot_reduction: str = "sum"  # "sum": Eq. 2 on the summed distance; "mean": RP1M code's per-key mean
    collision_coef: float = 0.5  # a1, RP1M Eq. 3 / Appendix A.1
    energy_coef: float = 5e-3  # a2, RP1M Eq. 3 / Appendix A.1

    def __post_init__(self) -> None:
        if self.fingering not in FINGERING_MODES:
            raise ValueError(f"RewardConfig.fingering={self.fingering!r}: expected one of {FINGERING_MODES}")
        if self.ot_reduction not in ("sum", "mean"):
            raise ValueError(f"RewardConfig.ot_reduction={self.ot_reduction!r}: expected 'sum' or 'mean'")
        if self.collision_coef < 0 or self.energy_coef < 0:
            raise ValueError(
                f"RewardConfig coefficients must be >= 0, got collision_coef={self.collision_coef}, "
                f"energy_coef={self.energy_coef}"
            )


@dataclass(frozen=True)
class EnvConfig:
    """The RP1M piano task for one chunk of music."""

    control_timestep: float = 0.05  # s, 20 Hz control (RP1M Table 4)
    # s, 200 Hz physics: robopianist's default, what RP1M ran. Chosen on evidence (issue 18,
    # benchmarks/reports/timestep.md): on the 11 dev chunks the ik specialist's F1 is no worse
    # than at 0.002 s (noise-free mean 0.466 vs 0.455, stored 0.440 vs 0.424), pressed
    # (step, key) cells agree on 98.7-99.9% when the same actions are replayed at both, and a
    # step costs 1/1.58 of one at 0.002 s. Specialists and shards made at 0.002 s stay readable
    # (their manifests store their EnvConfig); their run keys differ from new ones.
    physics_timestep: float = 0.005
    lookahead_steps: int = 10  # future goal steps, L = 11 with the current one (RP1M Table 4)
    gravity_compensation: bool = True  # RP1M Table 4
    reduced_action_space: bool = True  # 39-dim action (RP1M section 3)
    primitive_fingertip_collisions: bool = True  # capsule fingertips, as robopianist-rl trains
    four_fingers: bool = False  # little fingers disabled (RP1M section 4.2, cross-embodiment)
    change_color_on_activation: bool = False  # only useful when rendering
    reward: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        if not 0 < self.physics_timestep <= self.control_timestep:
            raise ValueError(
                f"EnvConfig: need 0 < physics_timestep ({self.physics_timestep}) <= "
                f"control_timestep ({self.control_timestep})"
            )
        ratio = self.control_timestep / self.physics_timestep
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(
                f"EnvConfig: control_timestep {self.control_timestep} is not a multiple of "
                f"physics_timestep {self.physics_timestep}"
            )
        if self.lookahead_steps < 0:
            raise ValueError(f"EnvConfig.lookahead_steps={self.lookahead_steps}: must be >= 0")

    @property
    def goal_steps(self) -> int:
        """L of RP1M Table 3: the current goal plus the lookahead."""
        return self.lookahead_steps + 1

    def with_reward(self, **changes) -> "EnvConfig":
        return replace(self, reward=replace(self.reward, **changes))

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Short stable hash of everything that changes the task's output."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict) -> "EnvConfig":
        data = dict(data)
        reward = RewardConfig(**data.pop("reward", {}))
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"EnvConfig: unknown fields {sorted(unknown)}")
        return cls(reward=reward, **data)
