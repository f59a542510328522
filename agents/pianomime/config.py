"""PianoMime generalist configuration. Defaults are PianoMime App. G-I (Tables 7, 8) unless noted.

One config covers Table 1's distilled policies; the benchmark's methods set:

    Two-stage Diff       {}                                  (the defaults)
    Two-stage Diff-res   {low_level: residual}
    w/o SDF              {goal_encoding: binary}
    One-stage Diff       {stages: 1}
    Two-stage BeT        {generator: bet}
"""

from __future__ import annotations

import dataclasses

from agents.common.config import PolicyConfig, check_fields, check_unet

GOAL_ENCODINGS = ("sdf", "binary")
LOW_LEVELS = ("joints", "residual")
GENERATORS = ("diffusion", "bet")
SAMPLERS = ("ddpm", "ddim")


@dataclasses.dataclass(frozen=True)
class PianoMimeConfig(PolicyConfig):
    """Hyperparameters of PianoMime's distilled generalist (section 3.3, App. H, I).

    Structure:
      stages: 2 = high level (goals -> fingertip trajectory) then low level
        (fingertips, goals, proprioception -> actions); 1 = One-stage Diff
        (goals and proprioception -> actions). PianoMime App. I.
      goal_encoding: "sdf" (the pre-trained encoder's 16-d code per goal step,
        App. G) or "binary" (the 88 keys, "w/o SDF", App. I).
      low_level: "joints" (Two-stage Diff) or "residual": a residual around the
        IK solution of the predicted fingertips (Two-stage Diff-res, App. I;
        `envs.control.ik.HandsIK`).
      generator: "diffusion" (DDPM U-Net, App. H) or "bet" (Behavior
        Transformer, App. I Table 8).
      residual_scale: the residual is multiplied by this before it is added
        to the IK action (1: Diff-res; 0: the IK solution alone). Ours.
      ik_iterations: QP iterations per IK solve (`IKConfig.iterations`).

    Inputs and horizons:
      obs_horizon, pred_horizon, action_horizon: To, Tp, Ta. PianoMime's
        released evaluation (`multi_task/eval.py`): 1, 4, 4.
      high_goal_steps: goal steps the high level (and One-stage) sees.
        PianoMime App. H: 10.
      low_goal_steps: goal steps the low level sees. PianoMime App. H: 4.
      fingertip_noise_std: std of the Gaussian noise on the current fingertip
        positions in high-level training, in normalized (z-scored) units.
        PianoMime App. H: "standard Gaussian noise" (we read it as std 1 in
        normalized units).
      snap_to_key_midline: move the y (along the keyboard) of predicted
        fingertips that press a goal key to that key's midline. PianoMime App. H.
      snap_radius: a fingertip presses goal key k when |y - y_k| is below this (m) ...
      snap_height: ... and it is at most this far above the key top (m). Ours.

    Diffusion (PianoMime Table 7, App. H):
      down_dims: U-Net filters. Table 7: 256, 512, 1024.
      kernel_size: U-Net kernel. Table 7: 5.
      n_groups: GroupNorm groups. diffusion_policy: 8.
      diffusion_step_embed_dim: diffusion_policy: 256.
      tcn_channels: the TCN observation encoder's filters. Table 7: 32, 64.
      tcn_kernel_size: Table 7: 3.
      num_train_timesteps: Table 7 / App. H: 100.
      high_inference_steps, low_inference_steps: denoising steps at inference.
        App. H: "at least 80 ... for high-level policies and 50 steps for
        low-level policies". One-stage uses `low_inference_steps`.
      sampler: "ddpm" (ancestral; PianoMime's released eval uses diffusers'
        DDPMScheduler) or "ddim" (eta 0). Fewer steps than 100 use evenly
        spaced timesteps.
      clip_sample: clip x0 to [-1, 1] each step. PianoMime's code: True.
      learning_rate: Table 7: 1e-4 (cosine schedule, AdamW).
      weight_decay: PianoMime's released code (`train_high_level.py`): 1e-6.
      warmup_steps: PianoMime's released code: 0.
      ema_power: Table 7: 0.75. ema_inv_gamma: Table 7: 1.
      batch_size: Table 7 / Table 8: 256.

    BeT (PianoMime Table 8; Shafiullah et al. 2022):
      bet_bins: k-means action bins. Table 8: 64.
      bet_heads, bet_layers, bet_embed_dim: Table 8: 8, 8, 120.
      bet_learning_rate: Table 8: 3e-4.
      bet_focal_gamma: focal loss gamma (BeT: 2).
      bet_offset_weight: weight of the offset MSE (ours: 1, on normalized targets).

    Goal autoencoder (App. G; `agents.sdf`):
      sdf_dir: a saved autoencoder (`agents.sdf.save_autoencoder`); "": one is
        trained in `train` on the training set's goals (the benchmark passes
        its pre-trained one, `tasks.benchmark.sdf`).
      sdf_channels, sdf_kernel_size, sdf_stride, sdf_latent_dim: the encoder's
        architecture (must match the one in `sdf_dir`). App. G.
      sdf_epochs, sdf_max_steps: training of the fallback autoencoder (App. G: 100 epochs).
    """

    stages: int = 2
    goal_encoding: str = "sdf"
    low_level: str = "joints"
    generator: str = "diffusion"
    residual_scale: float = 1.0
    ik_iterations: int = 4
    obs_horizon: int = 1
    pred_horizon: int = 4
    action_horizon: int = 4
    high_goal_steps: int = 10
    low_goal_steps: int = 4
    fingertip_noise_std: float = 1.0
    snap_to_key_midline: bool = True
    snap_radius: float = 0.012
    snap_height: float = 0.01
    down_dims: tuple[int, ...] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 256
    tcn_channels: tuple[int, ...] = (32, 64)
    tcn_kernel_size: int = 3
    num_train_timesteps: int = 100
    high_inference_steps: int = 80
    low_inference_steps: int = 50
    sampler: str = "ddpm"
    clip_sample: bool = True
    learning_rate: float = 1e-4
    weight_decay: float = 1e-6
    warmup_steps: int = 0
    ema_power: float = 0.75
    ema_inv_gamma: float = 1.0
    batch_size: int = 256
    bet_bins: int = 64
    bet_heads: int = 8
    bet_layers: int = 8
    bet_embed_dim: int = 120
    bet_learning_rate: float = 3e-4
    bet_focal_gamma: float = 2.0
    bet_offset_weight: float = 1.0
    sdf_dir: str = ""
    sdf_channels: tuple[int, ...] = (2, 4, 8, 16)
    sdf_kernel_size: int = 3
    sdf_stride: int = 2
    sdf_latent_dim: int = 16
    sdf_epochs: int = 100
    sdf_max_steps: int = 0

    def __post_init__(self):
        owner = "PianoMimeConfig"
        check_fields(self, dims=("tcn_channels", "sdf_channels"),
                     choices={"stages": (1, 2), "goal_encoding": GOAL_ENCODINGS, "low_level": LOW_LEVELS,
                              "generator": GENERATORS, "sampler": SAMPLERS})
        if self.stages == 1 and self.low_level == "residual":
            raise ValueError("PianoMimeConfig: low_level='residual' needs stages=2 (the IK of predicted fingertips)")
        self.check_horizons()
        check_unet(self)
        check_fields(self, ints={**dict.fromkeys(
            ("ik_iterations", "high_goal_steps", "low_goal_steps", "tcn_kernel_size", "num_train_timesteps",
             "high_inference_steps", "low_inference_steps", "batch_size", "bet_bins", "bet_heads", "bet_layers",
             "bet_embed_dim", "sdf_kernel_size", "sdf_stride", "sdf_latent_dim", "sdf_epochs"), 1),
            "warmup_steps": 0, "sdf_max_steps": 0},
            positive=("learning_rate", "bet_learning_rate", "ema_power", "ema_inv_gamma", "snap_radius", "snap_height"),
            non_negative=("residual_scale", "fingertip_noise_std", "bet_focal_gamma", "bet_offset_weight"),
            unit=("weight_decay",), bools=("snap_to_key_midline", "clip_sample"))
        for name in ("high_goal_steps", "low_goal_steps"):
            if getattr(self, name) > 11:
                raise ValueError(f"{owner}.{name}={getattr(self, name)}: the observation holds 11 goal steps")
        if self.pred_horizon > 11:
            raise ValueError(f"{owner}.pred_horizon={self.pred_horizon}: the low level reads one goal step per "
                             "predicted step and the observation holds 11")
        for name in ("high_inference_steps", "low_inference_steps"):
            if getattr(self, name) > self.num_train_timesteps:
                raise ValueError(f"{owner}.{name}={getattr(self, name)} exceeds num_train_timesteps="
                                 f"{self.num_train_timesteps}")
        if self.tcn_kernel_size % 2 == 0:
            raise ValueError(f"{owner}.tcn_kernel_size must be odd ('same' padding), got {self.tcn_kernel_size}")
        if self.bet_embed_dim % self.bet_heads:
            raise ValueError(f"{owner}.bet_heads={self.bet_heads} must divide bet_embed_dim={self.bet_embed_dim}")
        if not isinstance(self.sdf_dir, str):
            raise ValueError(f"{owner}.sdf_dir must be a path string, got {self.sdf_dir!r}")

    def jit_view(self) -> "PianoMimeConfig":
        """The config with the fields the jitted math does not read at their defaults, so variants
        that differ only there (Diff and Diff-res, snap settings, where the encoder came from)
        share compiled functions."""
        return dataclasses.replace(self, low_level="joints", residual_scale=1.0, ik_iterations=4,
                                   snap_to_key_midline=True, snap_radius=0.012, snap_height=0.01, sdf_dir="",
                                   sdf_epochs=100, sdf_max_steps=0)

    @property
    def levels(self) -> tuple[str, ...]:
        """The models trained, in inference order."""
        return ("high", "low") if self.stages == 2 else ("one",)

    def inference_steps(self, level: str) -> int:
        return self.high_inference_steps if level == "high" else self.low_inference_steps
