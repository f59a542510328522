"""Diffusion Policy configuration. Defaults are RP1M Table 8 (Appendix B.1.4) unless noted.

RP1M uses "a CNN-based Diffusion Policy with DDIM as the sampler" and "the
same code and hyperparameters as Chi et al." (Sec. 5), with a training
pipeline "based on Robomimic and DROID" (B.1.4). Where Table 8 is silent the
default is diffusion_policy's low-dim U-Net workspace
(`train_diffusion_unet_lowdim_workspace.yaml`, Chi et al. 2023) and, for the
DDIM sampler, robomimic's `diffusion_policy_config.py` (the `algo.ddim` block:
100 train / 10 inference steps), which RP1M's pipeline is built on; we sample
with 5 (see `num_inference_steps`).
"""

from __future__ import annotations

import dataclasses

from agents.common.config import PolicyConfig, check_fields, check_unet, is_number

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclasses.dataclass(frozen=True)
class UNetPolicyConfig(PolicyConfig):
    """The horizons and the conditional 1-D U-Net (`agents.diffusion.networks`) of the policies
    built on it, Diffusion Policy and flow matching: RP1M Table 8 / diffusion_policy's low-dim
    U-Net workspace (the fields' meanings: `DiffusionConfig`). Its fields come first in each
    subclass, in this order."""

    obs_horizon: int = 2
    pred_horizon: int = 4
    action_horizon: int = 1
    down_dims: tuple[int, ...] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 256
    cond_predict_scale: bool = True

    chunk_starts_at_first_obs = True  # diffusion_policy's `oa_step_convention`


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(UNetPolicyConfig):
    """Hyperparameters of the CNN (1-D temporal U-Net) Diffusion Policy.

    Attributes:
      obs_horizon: observations the policy is conditioned on, To. RP1M Table 8: 2.
      pred_horizon: actions predicted per denoising run, Tp. RP1M Table 8: 4.
      action_horizon: actions executed per call, Ta. RP1M Table 8: 1.
      down_dims: channels of the U-Net levels. RP1M Table 8 "U-Net hidden
        layer sizes": [256, 512, 1024]. `pred_horizon` must be divisible by
        2 ** (len(down_dims) - 1) (each level but the last halves the length).
      kernel_size: temporal kernel of the U-Net convolutions. diffusion_policy: 5.
      n_groups: GroupNorm groups; must divide every entry of `down_dims`.
        diffusion_policy: 8.
      diffusion_step_embed_dim: width of the sinusoidal timestep embedding
        and its MLP. diffusion_policy (low-dim) and robomimic: 256.
      cond_predict_scale: FiLM predicts a per-channel scale and bias (True)
        or only a bias (False). diffusion_policy: True.
      num_train_timesteps: DDPM noise levels used in training. diffusion_policy
        and robomimic: 100.
      num_inference_steps: DDIM denoising steps at inference. RP1M Table 8
        "Diffusion method DDIM", no count. DEVIATION: 5, where robomimic's
        `algo.ddim.num_inference_timesteps` is 10 (diffusion_policy's real-robot
        eval uses 16): each step reads the U-Net's weights once, and with 5 a
        batch-1 decision at paper sizes fits the 20 Hz control rate on one CPU
        core (10 does not); the same fit on the toy task and the same F1 on the
        tiny benchmark (`benchmarks/diffusion_steps.py`). Set 10 for robomimic's.
      beta_schedule: "squaredcos_cap_v2" (the cosine schedule of Nichol &
        Dhariwal 2021, as diffusers) or "linear". diffusion_policy: squaredcos_cap_v2.
      beta_start, beta_end: ends of the "linear" schedule (unused by
        squaredcos_cap_v2). diffusion_policy: 1e-4, 0.02.
      clip_sample: clip the predicted clean sample x0 to [-1, 1] at every
        denoising step (actions are normalized to [-1, 1]). diffusion_policy: True.
      set_alpha_to_one: the DDIM step after t = 0 uses alpha_bar = 1 (the
        last step returns the clipped x0). diffusion_policy's DDIM config: True.
      ema_power, ema_inv_gamma, ema_min_decay, ema_max_decay: EMA of the
        weights with decay 1 - (1 + step / inv_gamma) ** -power clamped to
        [min, max] (diffusion_policy's `EMAModel`). RP1M Table 8: power 0.75;
        diffusion_policy: inv_gamma 1.0, min 0.0, max 0.9999. The EMA weights
        are the ones used for inference and saved.
      learning_rate: peak learning rate. RP1M Table 8: 1e-4.
      lr_schedule: "linear" (linear warm-up, then linear decay to 0 at the
        last training step, as diffusers' `get_scheduler("linear")`),
        "cosine" (warm-up, then half-cosine to 0: diffusion_policy's default)
        or "constant" (warm-up, then flat). RP1M Table 8: Linear.
      warmup_steps: linear learning-rate warm-up from 0. diffusion_policy: 500.
      weight_decay: decoupled (AdamW) weight decay on all parameters. RP1M
        Table 8 lists plain Adam, i.e. 0.0 (diffusion_policy's AdamW uses 1e-6).
      adam_b1, adam_b2, adam_eps: Adam moments. diffusion_policy: 0.95, 0.999, 1e-8.
      batch_size: windows per gradient step. RP1M Table 8: 128. (Training
        steps, Table 8: 1M, are the `steps` argument of `train`.)
    """

    num_train_timesteps: int = 100
    num_inference_steps: int = 5
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    clip_sample: bool = True
    set_alpha_to_one: bool = True
    ema_power: float = 0.75
    ema_inv_gamma: float = 1.0
    ema_min_decay: float = 0.0
    ema_max_decay: float = 0.9999
    learning_rate: float = 1e-4
    lr_schedule: str = "linear"
    warmup_steps: int = 500
    weight_decay: float = 0.0
    adam_b1: float = 0.95
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 128

    def __post_init__(self):
        owner = "DiffusionConfig"
        self.check_horizons()
        check_unet(self)  # down_dims back to a tuple: the config is a static argument of the jitted update and sampler
        check_fields(self, ints={"num_train_timesteps": 1, "num_inference_steps": 1, "batch_size": 1, "warmup_steps": 0},
                     choices={"beta_schedule": BETA_SCHEDULES, "lr_schedule": LR_SCHEDULES},
                     positive=("learning_rate", "adam_eps", "ema_power", "ema_inv_gamma"), non_negative=("weight_decay",),
                     unit=("adam_b1", "adam_b2"), bools=("cond_predict_scale", "clip_sample", "set_alpha_to_one"))
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"DiffusionConfig.num_inference_steps={self.num_inference_steps} must be <= "
                f"num_train_timesteps={self.num_train_timesteps}"
            )
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(
                f"DiffusionConfig.beta_start, beta_end must satisfy 0 < beta_start < beta_end < 1, "
                f"got {self.beta_start!r}, {self.beta_end!r}"
            )
        if not (is_number(self.ema_min_decay) and is_number(self.ema_max_decay)
                and 0.0 <= self.ema_min_decay <= self.ema_max_decay < 1.0):
            raise ValueError(
                f"{owner}.ema_min_decay, ema_max_decay must satisfy 0 <= min <= max < 1, "
                f"got {self.ema_min_decay!r}, {self.ema_max_decay!r}"
            )
