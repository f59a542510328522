"""Behaviour cloning with an MLP (RP1M Sec. 5, Appendix B.1.1, Table 5); registered as "bc"."""

from agents.bc.agent import BCPolicy, train_bc, update
from agents.bc.config import PAPER_HIDDEN_DIMS, PAPER_TRAINING_STEPS, BCConfig
from agents.common.policy import register_policy

register_policy("bc", BCPolicy, BCConfig, train_bc)

__all__ = [
    "BCConfig",
    "BCPolicy",
    "PAPER_HIDDEN_DIMS",
    "PAPER_TRAINING_STEPS",
    "train_bc",
    "update",
]
