"""DroQ specialists (RP1M Sec. 4.1, Appendix A.2): SAC with a dropout + LayerNorm Q ensemble."""

from agents.droq.agent import (
    DroQState,
    current_temperature,
    eval_actions,
    init,
    sample_actions,
    sample_actions_at,
    update,
    update_actor,
    update_critic,
    update_step,
    update_temperature,
    zero_mean_head,
)
from agents.droq.config import DroQConfig, ResidualLearning

__all__ = [
    "DroQConfig",
    "ResidualLearning",
    "DroQState",
    "current_temperature",
    "eval_actions",
    "init",
    "sample_actions",
    "sample_actions_at",
    "update",
    "update_actor",
    "update_critic",
    "update_step",
    "update_temperature",
    "zero_mean_head",
]
