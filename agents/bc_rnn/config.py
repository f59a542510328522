"""BC-RNN configuration. Defaults are RP1M Table 7 (Appendix B.1.3) unless noted.

RP1M's BC-RNN is robomimic's (Mandlekar et al. 2021, ref. [64]). Table 7
gives the optimizer and the horizons; the network sizes, which it does not
give, are robomimic's `BCConfig` defaults (`algo.rnn.*`, `algo.actor_layer_dims`).

Table 7's horizons in robomimic's terms: "Observation Horizon 1" is
`frame_stack = 1` (each LSTM step reads one observation), "Prediction Horizon
4" is `train.seq_length = 4` (training sequences of 4 observations and the 4
actions taken at them; the loss covers every step), "Action Horizon 1" is one
action per control step. At evaluation the LSTM reads one observation per call
and carries its state, reset every `rnn_horizon` calls (robomimic
`BC_RNN.get_action`), where robomimic ties `algo.rnn.horizon` to `seq_length`.

Head: robomimic's deterministic one (`algo.gmm.enabled = False`, the
`BCConfig` default: tanh on a linear output, L2 loss). robomimic's paper
configs (`generate_paper_configs.py`) switch on a 5-mode GMM head for
human datasets and drop the MLP layers; that head is not implemented here.
"""

from __future__ import annotations

import dataclasses

from agents.common.config import PolicyConfig, check_fields, check_network_and_adam

PAPER_TRAINING_STEPS = 1_000_000  # RP1M Table 7 "Training Steps 1M"


@dataclasses.dataclass(frozen=True)
class BCRNNConfig(PolicyConfig):
    """Hyperparameters of the recurrent BC policy.

    Attributes:
      rnn_hidden_dim: LSTM width. Table 7 is silent; robomimic
        `algo.rnn.hidden_dim` = 400.
      rnn_num_layers: stacked LSTM layers. robomimic `algo.rnn.num_layers` = 2.
      head_dims: hidden layers of the per-step MLP between the LSTM and the
        linear action output (tanh-squashed, robomimic `RNNActorNetwork`).
        robomimic `algo.actor_layer_dims` = (1024, 1024); () gives the
        paper-config head (a linear layer).
      activation: MLP activation; ReLU as robomimic's `MLP`.
      seq_length: steps per training sequence. RP1M Table 7 "Prediction
        Horizon": 4.
      rnn_horizon: calls after which `predict_chunk` restarts the LSTM from a
        zero state. robomimic sets it equal to `seq_length` (4 here) so the
        policy never runs longer than it was trained.
      learning_rate: initial AdamW step size. RP1M Table 7: 1e-4.
      lr_final_factor: the linear schedule (RP1M Table 7 "linear") goes from
        `learning_rate` to `learning_rate * lr_final_factor` over the `steps`
        given to `train_bc_rnn`; 0.1 is robomimic's `learning_rate.decay_factor`
        (its "linear" scheduler is `LinearLR(1.0 -> decay_factor)`).
      weight_decay: AdamW decoupled weight decay. Table 7 is silent; robomimic
        passes `regularization.L2` = 0.0.
      adam_b1, adam_b2, adam_eps: AdamW moments; PyTorch defaults
        (0.9, 0.999, 1e-8), which robomimic uses.
      batch_size: sequences per gradient step. RP1M Table 7: 256.
    """

    rnn_hidden_dim: int = 400
    rnn_num_layers: int = 2
    head_dims: tuple[int, ...] = (1024, 1024)
    activation: str = "relu"
    seq_length: int = 4
    rnn_horizon: int = 4
    learning_rate: float = 1e-4
    lr_final_factor: float = 0.1
    weight_decay: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 256

    def __post_init__(self):
        check_fields(self, dims_or_empty=("head_dims",), unit_closed=("lr_final_factor",), non_negative=("weight_decay",),
                     ints=dict.fromkeys(("rnn_hidden_dim", "rnn_num_layers", "seq_length", "rnn_horizon", "batch_size"), 1))
        check_network_and_adam("BCRNNConfig", self)

    # Training windows of `seq_length` observations and the actions taken at them:
    # obs_horizon = pred_horizon = seq_length and the chunk starts at the first
    # observation, so actions[:, i] is the action taken at obs[:, i];
    # `predict_chunk` reads only the last observation of each window and
    # returns the one action for it (action_horizon 1).
    chunk_starts_at_first_obs = True
    action_horizon = 1

    @property
    def obs_horizon(self) -> int:
        return self.seq_length

    @property
    def pred_horizon(self) -> int:
        return self.seq_length
