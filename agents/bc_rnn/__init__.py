"""BC with a recurrent (LSTM) policy, robomimic's BC-RNN (RP1M Sec. 5, Appendix B.1.3, Table 7);
registered as "bc_rnn"."""

from agents.bc_rnn.agent import BCRNNPolicy, train_bc_rnn, update
from agents.bc_rnn.config import PAPER_TRAINING_STEPS, BCRNNConfig
from agents.common.policy import register_policy

register_policy("bc_rnn", BCRNNPolicy, BCRNNConfig, train_bc_rnn)

__all__ = ["BCRNNConfig", "BCRNNPolicy", "PAPER_TRAINING_STEPS", "train_bc_rnn", "update"]
