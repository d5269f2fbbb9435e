"""heatsync.agents: the Policy protocol, baseline controllers and adapters."""

from ._policy import Policy, PolicyError, is_policy, load_policy
from .sb3_policy import SB3Policy, load_models

__all__ = ["Policy", "PolicyError", "is_policy", "load_policy"]
__all__ += ["SB3Policy", "load_models"]
