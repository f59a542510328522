"""IBC configuration. Defaults are RP1M Table 6 (Appendix B.1.2) unless noted.

Table 6 matches, value for value, diffusion_policy's
`train_ibc_dfo_lowdim_workspace.yaml` (Chi et al. 2023, the code RP1M names
for its baselines, Sec. 5): batch 256, AdamW 1e-4 with weight decay 1e-6 and a
cosine schedule, 5 inference iterations over 1024 samples, To = Tp = 2,
Ta = 1. Where Table 6 is silent the default is that file's (or its
`IbcDfoLowdimPolicy`'s), except the inference optimizer's noise, which follows
google-research/ibc's `iterative_dfo` (Florence et al. 2021), see `noise_std`.
"""

from __future__ import annotations

import dataclasses

from agents.common.config import PolicyConfig, check_fields, check_network_and_adam

PAPER_TRAINING_STEPS = 1_000_000  # RP1M Table 6 "Training Steps 1M"


@dataclasses.dataclass(frozen=True)
class IBCConfig(PolicyConfig):
    """Hyperparameters of the implicit (energy-based) policy.

    Attributes:
      hidden_dims: widths of the energy MLP's hidden layers; a Dense to one
        scalar energy follows. Table 6 is silent; diffusion_policy's
        IbcDfoLowdimPolicy uses four layers of 1024.
      activation: hidden activation; ReLU as IbcDfoLowdimPolicy.
      dropout_rate: dropout after every hidden layer during training; 0.1 as
        diffusion_policy's IBC config.
      num_counter_examples: negatives per training example, drawn uniformly in
        the normalized action box [-1, 1]^d, for the InfoNCE loss. Table 6 is
        silent; diffusion_policy's config has train_n_neg = 1024.
      inference_samples: candidate actions per observation of the
        derivative-free optimizer. RP1M Table 6 "Prediction Num of Sample": 1024.
      inference_iterations: energy evaluations of the derivative-free
        optimizer; every one but the last is followed by resampling and
        perturbing the candidates. RP1M Table 6 "Prediction Num of Iteration": 5.
      noise_std: standard deviation of the Gaussian perturbation after the
        first resampling, in normalized action units; it is multiplied by
        `noise_shrink` after each iteration. 0.33 and 0.5 are
        google-research/ibc's `iterative_dfo` (diffusion_policy instead keeps
        a constant 0.03; the contract asks for a shrinking noise).
      noise_shrink: factor applied to the noise std each iteration (IBC: 0.5).
      temperature: softmax temperature on -energy, both in the InfoNCE loss
        and in the optimizer's resampling. IBC: 1.0.
      score_pred_horizon: which actions the energy scores. False (default):
        only the `action_horizon` actions from the current step, as
        diffusion_policy's IbcDfoLowdimPolicy (`naction[:, To-1:To-1+Ta]`),
        i.e. a 39-D energy for RP1M. True: the whole flattened
        `pred_horizon` chunk (78-D for RP1M), of which the `action_horizon`
        from the current step are returned.
      learning_rate: AdamW peak step size. RP1M Table 6: 1e-4.
      weight_decay: AdamW decoupled weight decay. RP1M Table 6: 1e-6.
      adam_b1, adam_b2, adam_eps: AdamW moments; (0.95, 0.999, 1e-8) as
        diffusion_policy's IBC optimizer (Table 6 says only "AdamW").
      lr_warmup_steps: linear warm-up from 0 before the cosine decay (RP1M
        Table 6 "cosine"); 500 as diffusion_policy. The cosine decays to 0
        over the `steps` given to `train_ibc`.
      batch_size: windows per gradient step. RP1M Table 6: 256.
      obs_horizon: observations per window, To. RP1M Table 6: 2.
      pred_horizon: actions per training window, Tp. RP1M Table 6: 2. The
        window starts at the first observed step (diffusion_policy's
        convention, `action_offset = -(To - 1)`).
      action_horizon: actions returned per `predict_chunk` call, Ta. RP1M
        Table 6: 1.
    """

    hidden_dims: tuple[int, ...] = (1024, 1024, 1024, 1024)
    activation: str = "relu"
    dropout_rate: float = 0.1
    num_counter_examples: int = 1024
    inference_samples: int = 1024
    inference_iterations: int = 5
    noise_std: float = 0.33
    noise_shrink: float = 0.5
    temperature: float = 1.0
    score_pred_horizon: bool = False
    learning_rate: float = 1e-4
    weight_decay: float = 1e-6
    adam_b1: float = 0.95
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    lr_warmup_steps: int = 500
    batch_size: int = 256
    obs_horizon: int = 2
    pred_horizon: int = 2
    action_horizon: int = 1

    chunk_starts_at_first_obs = True  # window from the first observed step (diffusion_policy)

    def __post_init__(self):
        check_fields(self, dims=("hidden_dims",), unit=("dropout_rate",), unit_closed=("noise_shrink",),
                     ints={**dict.fromkeys(("num_counter_examples", "inference_samples", "inference_iterations",
                                            "batch_size"), 1), "lr_warmup_steps": 0},
                     non_negative=("noise_std", "weight_decay"), positive=("temperature",),
                     bools=("score_pred_horizon",))
        check_network_and_adam("IBCConfig", self)
        self.check_horizons()  # the chunk starts at the first observed step

    def scored_steps(self) -> tuple[int, int]:
        """(first, count): the chunk steps the energy sees (see `score_pred_horizon`)."""
        if self.score_pred_horizon:
            return 0, self.pred_horizon
        return self.obs_horizon - 1, self.action_horizon
