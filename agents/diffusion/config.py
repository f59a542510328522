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

from agents.common.config import (
    PolicyConfig,
    check_bool,
    check_choice,
    check_dims,
    check_int,
    check_non_negative,
    check_positive,
    check_unit_interval,
)

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(PolicyConfig):
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

    obs_horizon: int = 2
    pred_horizon: int = 4
    action_horizon: int = 1
    down_dims: tuple[int, ...] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 256
    cond_predict_scale: bool = True
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

    chunk_starts_at_first_obs = True  # diffusion_policy's `oa_step_convention`

    def __post_init__(self):
        # Lists (JSON, YAML) become tuples so the config stays hashable: it is a
        # static argument of the jitted update and sampler.
        owner = "DiffusionConfig"
        object.__setattr__(self, "down_dims", check_dims(owner, "down_dims", self.down_dims))
        for name in ("kernel_size", "n_groups", "num_train_timesteps", "num_inference_steps", "batch_size"):
            check_int(owner, name, getattr(self, name), minimum=1)
        check_int(owner, "warmup_steps", self.warmup_steps, minimum=0)
        self.check_horizons()
        bad_groups = [d for d in self.down_dims if d % self.n_groups]
        if bad_groups:
            raise ValueError(
                f"DiffusionConfig.n_groups={self.n_groups} must divide every down_dims entry; "
                f"it does not divide {bad_groups} of down_dims={self.down_dims}"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"DiffusionConfig.kernel_size must be odd ('same' padding keeps the length), got {self.kernel_size}"
            )
        check_int(owner, "diffusion_step_embed_dim", self.diffusion_step_embed_dim, minimum=4)
        if self.diffusion_step_embed_dim % 2:
            raise ValueError(
                f"DiffusionConfig.diffusion_step_embed_dim must be even (sin and cos halves), "
                f"got {self.diffusion_step_embed_dim}"
            )
        factor = 2 ** (len(self.down_dims) - 1)
        if self.pred_horizon % factor:
            raise ValueError(
                f"DiffusionConfig.pred_horizon={self.pred_horizon} must be divisible by "
                f"2 ** (len(down_dims) - 1) = {factor}: the U-Net halves it at each of its "
                f"{len(self.down_dims) - 1} downsampling steps"
            )
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"DiffusionConfig.num_inference_steps={self.num_inference_steps} must be <= "
                f"num_train_timesteps={self.num_train_timesteps}"
            )
        check_choice(owner, "beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(
                f"DiffusionConfig.beta_start, beta_end must satisfy 0 < beta_start < beta_end < 1, "
                f"got {self.beta_start!r}, {self.beta_end!r}"
            )
        check_choice(owner, "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for name in ("learning_rate", "adam_eps", "ema_power", "ema_inv_gamma"):
            check_positive(owner, name, getattr(self, name))
        check_non_negative(owner, "weight_decay", self.weight_decay)
        for name in ("adam_b1", "adam_b2"):
            check_unit_interval(owner, name, getattr(self, name))
        if not (_is_number(self.ema_min_decay) and _is_number(self.ema_max_decay)
                and 0.0 <= self.ema_min_decay <= self.ema_max_decay < 1.0):
            raise ValueError(
                f"DiffusionConfig.ema_min_decay, ema_max_decay must satisfy 0 <= min <= max < 1, "
                f"got {self.ema_min_decay!r}, {self.ema_max_decay!r}"
            )
        for name in ("cond_predict_scale", "clip_sample", "set_alpha_to_one"):
            check_bool(owner, name, getattr(self, name))

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
