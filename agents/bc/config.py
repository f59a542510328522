"""BC configuration. Defaults are RP1M Table 5 (Appendix B.1.1) unless noted.

RP1M evaluates three BC MLPs (Appendix B.1.1, Table 2): hidden width 256 and
1024 with three layers, and 4096 with six layers, all trained with the single
set of hyperparameters of Table 5. `PAPER_HIDDEN_DIMS` names them; the default
`BCConfig()` is the first, BC(256), the one RP1M's discussion starts from
("we increase the model capacity of the BC baseline by increasing the hidden
dimension of a 3-layer MLP from 256 to 1024").
"""

from __future__ import annotations

import dataclasses

from agents.common.config import PolicyConfig, check_fields, check_network_and_adam

# RP1M Table 5 "Training Steps 1M"; `train_fn(steps=...)` takes the count, so
# this constant is what the benchmark passes for a paper-scale run.
PAPER_TRAINING_STEPS = 1_000_000

# RP1M Appendix B.1.1 / Table 2: "three MLP models with varying hidden
# dimensions - 256, 1024, and 4096. The first two models feature three layers,
# while the model with 4096 hidden dimensions is designed with six layers."
# Read as hidden layers (the output Dense comes on top), as Table 4's
# "MLP 256x3" for the DroQ specialists.
PAPER_HIDDEN_DIMS: dict[str, tuple[int, ...]] = {
    "bc-256": (256,) * 3,
    "bc-1024": (1024,) * 3,
    "bc-4096": (4096,) * 6,
}


@dataclasses.dataclass(frozen=True)
class BCConfig(PolicyConfig):
    """Hyperparameters of the MLP behaviour-cloning policy.

    Attributes:
      hidden_dims: widths of the hidden Dense layers; a linear Dense to
        `pred_horizon * action_dim` follows. Default BC(256), RP1M B.1.1
        (see `PAPER_HIDDEN_DIMS` for the 1024 and 4096 variants).
      activation: hidden activation. RP1M Table 5: GELU.
      learning_rate: Adam step size, constant (Table 5 lists no scheduler).
        RP1M Table 5: 3e-4.
      adam_b1, adam_b2, adam_eps: Adam moments. Table 5 says only "Adam";
        these are the PyTorch/optax defaults (0.9, 0.999, 1e-8).
      batch_size: windows per gradient step. RP1M Table 5: 256.
      obs_horizon: observations per input window, To (flattened into the MLP
        input). RP1M Table 5: 1.
      pred_horizon: actions predicted per window, Tp (flattened MLP output).
        RP1M Table 5: 1.
      action_horizon: actions returned per `predict_chunk` call, Ta. RP1M
        Table 5: 1.
    """

    hidden_dims: tuple[int, ...] = PAPER_HIDDEN_DIMS["bc-256"]
    activation: str = "gelu"
    learning_rate: float = 3e-4
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 256
    obs_horizon: int = 1
    pred_horizon: int = 1
    action_horizon: int = 1

    def __post_init__(self):
        check_fields(self, dims=("hidden_dims",), ints={"batch_size": 1})  # a tuple: jit takes the config as static
        check_network_and_adam("BCConfig", self)
        self.check_horizons()
