"""heatsync.agents: the Policy protocol, baseline controllers and adapters.

Baselines (tuned constants in ``configs/controllers.yaml``), all batched over
N envs, NumPy in and out, with per-env filter state cleared by ``reset``:
:class:`FixedSetpoints` (every task), :class:`FirmwareSmoothing` and
:class:`LowPassStorage` (PowerSmoothing), :class:`ThermostatLN2` and
:class:`SupplyPID` (CoolingDispatch), :class:`FCFS`, :class:`EasyBackfill`,
:class:`PowerCappedGreedy` and :class:`CarbonAwareDeferral`
(PowerAwareScheduling), :class:`FacilityRule` (Facility).
``BASELINES[task][name](env)`` builds every baseline that fits a task.
"""

from ._policy import Policy, PolicyError, is_policy, load_policy
from .baselines import (
    BASELINES,
    FCFS,
    CarbonAwareDeferral,
    EasyBackfill,
    FacilityRule,
    FirmwareSmoothing,
    FixedSetpoints,
    LowPassStorage,
    PowerCappedGreedy,
    SupplyPID,
    ThermostatLN2,
)
from .jax_policy import ConstantPolicy, JaxPolicy, TracedRule, is_jax_policy, jax_policy_of
from .sb3_policy import SB3Policy, load_models

__all__ = ["Policy", "PolicyError", "is_policy", "load_policy"]
__all__ += ["SB3Policy", "load_models"]
__all__ += ["JaxPolicy", "ConstantPolicy", "TracedRule", "is_jax_policy", "jax_policy_of"]
__all__ += ["BASELINES", "CarbonAwareDeferral", "EasyBackfill", "FCFS", "FacilityRule",
            "FirmwareSmoothing", "FixedSetpoints", "LowPassStorage", "PowerCappedGreedy",
            "SupplyPID", "ThermostatLN2"]
