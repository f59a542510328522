"""A flow-matching action-chunk policy (the family RP1M++ uses) on RP1M's Diffusion Policy U-Net;
registered as "flow_matching"."""

from agents.common.policy import register_policy
from agents.flow_matching.agent import FlowMatchingPolicy, euler_sample, train, update
from agents.flow_matching.config import FlowMatchingConfig

# Bump when a change makes previously trained policies stale (tasks.benchmark keys on it).
CODE_VERSION = "1"

register_policy("flow_matching", FlowMatchingPolicy, FlowMatchingConfig, train)

__all__ = ["FlowMatchingConfig", "FlowMatchingPolicy", "euler_sample", "train", "update"]
