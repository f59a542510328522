"""`MPCConfig`: the settings of the sampling MPC of `envs.control.mpc` (defaults chosen on the dev set)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from envs.checks import check_fields, check_range


@dataclass(frozen=True)
class MPCConfig:
    """Predictive sampling around a nominal action sequence (`envs.control.mpc`).

    At every control step the current plan (the next `horizon` actions) and
    `n_samples` noisy copies of it are played from the executed state, each is
    scored over the horizon, the best plan's first action is executed and the
    rest of it is kept as the next plan (its last action taken from the nominal).

    Attributes:
      horizon: control steps each candidate is played and scored over (20 Hz steps).
      n_samples: noisy copies of the plan per iteration (the plan itself is always scored too).
      n_iterations: sampling rounds per control step; round i > 0 samples around the best so far.
      n_knots: knots of the noise over the horizon; the noise is linear between them
        (1: one constant offset for the whole horizon).
      noise: standard deviation of the noise at the knots, as a fraction of each hand
        actuator's half range (the sustain pedal gets none).
      iteration_noise_decay: noise of round i is `noise * decay**i`.
      hand_split: also score one candidate that takes each hand's noise from the sample
        best for that hand's keys (keys belong to the hand with the nearest fingertip).
      time_shifts: also score the nominal itself shifted by these many control steps
        (negative: later, positive: earlier; 0: the nominal unshifted).
      f1_weight: weight of the per-step key-press F1 in the score.
      depth_weight: weight of the mean press depth (0..1 of the key travel) of the goal keys.
      wrong_weight: weight of the summed press depth of keys that should be up.
      reach_weight: weight of a reach term: minus the distance (m) from each goal key not
        yet pressed to the nearest fingertip, averaged over those keys (0: off).
      reach_scales: also score the best plan plus these multiples of the reach offset
        (`envs.control.mpc_reach`: free fingertips onto the goal keys of step t + reach_lead
        that are not down, fingertips off wrong keys); empty: off.
      reach_lead: control steps ahead whose goal keys the reach offset aims at.
      robust_samples: noisy replicas each candidate is also played with; its score is the
        mean over the clean play and the replicas (0: the clean play alone). Robust
        candidates keep their key presses under the noise of the rollouts.
      robust_noise: standard deviation of the replicas' white action noise, as a fraction
        of each hand actuator's half range (the same draws for every candidate of a step).
    """

    # Defaults: the best stored-rollout F1 on the dev chunks within the budget (benchmarks/mpc_dev.py,
    # benchmarks/reports/mpc_dev.md; first 200 steps of Nocturne, bwv846, polonaise_op1n2, dichterliebe_no2,
    # dt 0.005): horizon 10, 31 samples, 2 rounds give noise-free F1 0.69/0.89/0.53/0.76 against
    # 0.60/0.86/0.42/0.58 for (6, 15, 1; IK nominal 0.23/0.75/0.14/0.21), at
    # ~280 instead of ~45 CPU-s per 200 steps (~13 CPU-min per 550-step chunk, under issue 18's hour).
    horizon: int = 10
    n_samples: int = 31
    n_iterations: int = 2
    n_knots: int = 3
    noise: float = 0.1
    iteration_noise_decay: float = 0.5
    hand_split: bool = True
    time_shifts: tuple = ()
    f1_weight: float = 1.0
    depth_weight: float = 0.2
    wrong_weight: float = 0.2
    reach_weight: float = 0.0
    reach_scales: tuple = ()
    reach_lead: int = 2
    robust_samples: int = 0
    robust_noise: float = 0.0125

    def __post_init__(self) -> None:
        check_fields(self, ints={"horizon": 1, "n_iterations": 1, "n_knots": 1, "reach_lead": 1, "n_samples": 0,
                                 "robust_samples": 0},
                     unit_closed=("robust_noise",), non_negative=("f1_weight", "depth_weight", "wrong_weight", "reach_weight"))
        check_range("MPCConfig", "noise", self.noise, 0.0, 2.0)  # a fraction of the half range
        check_range("MPCConfig", "iteration_noise_decay", self.iteration_noise_decay, 0.0, 1.0, low_open=True)
        if self.n_knots > self.horizon:
            raise ValueError(f"MPCConfig.n_knots={self.n_knots}: must be <= horizon ({self.horizon})")
        shifts = tuple(self.time_shifts)
        if any(not isinstance(s, int) or isinstance(s, bool) for s in shifts):
            raise ValueError(f"MPCConfig.time_shifts={self.time_shifts!r}: must be integers")
        if len(set(shifts)) != len(shifts):
            raise ValueError(f"MPCConfig.time_shifts={self.time_shifts!r}: repeated shifts")
        object.__setattr__(self, "time_shifts", shifts)
        scales = tuple(float(s) for s in self.reach_scales)
        if any(not 0.0 < s <= 3.0 for s in scales):
            raise ValueError(f"MPCConfig.reach_scales={self.reach_scales!r}: must be in (0, 3]")
        object.__setattr__(self, "reach_scales", scales)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict | None, where: str = "MPCConfig") -> "MPCConfig":
        """Inverse of `as_dict`; `where` names the source in errors."""
        payload = dict(payload or {})
        unknown = sorted(set(payload) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown}; allowed: {sorted(f.name for f in fields(cls))}")
        for name in ("time_shifts", "reach_scales"):
            if isinstance(payload.get(name), list):
                payload[name] = tuple(payload[name])
        return cls(**payload)

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
