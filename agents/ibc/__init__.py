"""Implicit behavioural cloning (RP1M Sec. 5, Appendix B.1.2, Table 6); registered as "ibc"."""

from agents.common.policy import register_policy
from agents.ibc.agent import IBCPolicy, iterative_dfo, train_ibc, update
from agents.ibc.config import PAPER_TRAINING_STEPS, IBCConfig

register_policy("ibc", IBCPolicy, IBCConfig, train_ibc)

__all__ = ["IBCConfig", "IBCPolicy", "PAPER_TRAINING_STEPS", "iterative_dfo", "train_ibc", "update"]
