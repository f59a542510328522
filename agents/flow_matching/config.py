"""Flow-matching policy configuration.

RP1M++ replaces the benchmark's diffusion sampler with flow matching (the
policy family of pi0, Black et al. 2024: conditional flow matching with a
linear path, Lipman et al. 2023). Its paper's hyperparameters are not in
shared/papers, so the network, horizons and optimizer are RP1M's Diffusion
Policy's (Table 8, `agents.diffusion.config`): the column differs from
"Diffusion Policy" only in the generative objective and the sampler.
"""

from __future__ import annotations

import dataclasses

from agents.common.config import check_fields
from agents.diffusion.config import DiffusionConfig, UNetPolicyConfig

TIME_SAMPLINGS = ("uniform", "beta")


@dataclasses.dataclass(frozen=True)
class FlowMatchingConfig(UNetPolicyConfig):
    """Hyperparameters of the flow-matching U-Net policy.

    Attributes:
      obs_horizon, pred_horizon, action_horizon: To, Tp, Ta. RP1M Table 8: 2, 4, 1.
      down_dims, kernel_size, n_groups, diffusion_step_embed_dim,
        cond_predict_scale: the U-Net (`agents.diffusion.networks`). RP1M Table 8 /
        diffusion_policy: (256, 512, 1024), 5, 8, 256, True.
      num_inference_steps: Euler steps from noise (t = 0) to actions (t = 1). Ours: 10
        (pi0 uses 10).
      time_scale: the U-Net's sinusoidal embedding sees t * time_scale (its
        frequencies were made for integer timesteps 0..99). Ours: 100.
      time_sampling: training times t ~ U(0, 1) ("uniform") or pi0's
        Beta(1.5, 1) emphasis on noisy times, t = 1 - 0.999 s ("beta").
      learning_rate, lr_schedule, warmup_steps, weight_decay, adam_*: as RP1M's
        Diffusion Policy (Table 8): 1e-4, linear, 500, 0.
      ema_*: EMA of the weights (RP1M Table 8 power 0.75), used for inference.
      batch_size: RP1M Table 8: 128.
    """

    num_inference_steps: int = 10
    time_scale: float = 100.0
    time_sampling: str = "uniform"
    learning_rate: float = 1e-4
    lr_schedule: str = "linear"
    warmup_steps: int = 500
    weight_decay: float = 0.0
    adam_b1: float = 0.95
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    ema_power: float = 0.75
    ema_inv_gamma: float = 1.0
    ema_min_decay: float = 0.0
    ema_max_decay: float = 0.9999
    batch_size: int = 128

    def __post_init__(self):
        owner = "FlowMatchingConfig"
        check_fields(self, ints={"num_inference_steps": 1}, positive=("time_scale",),
                     choices={"time_sampling": TIME_SAMPLINGS})
        # The shared fields are checked by the Diffusion Policy's own rules (U-Net sizes, optimizer, EMA).
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(DiffusionConfig)
                  if hasattr(self, f.name) and f.name != "num_inference_steps"}
        try:
            checked = DiffusionConfig(**shared)
        except ValueError as exc:
            raise ValueError(str(exc).replace("DiffusionConfig", owner)) from None
        object.__setattr__(self, "down_dims", checked.down_dims)
