"""heatsync.envs: Gymnasium environments over the jitted plant.

Three faces over one functional core:

- functional, gymnax-style (:class:`PowerSmoothing`, :class:`CoolingDispatch`,
  :class:`PowerAwareScheduling`, :class:`Facility`): ``task.make_params(...)``,
  ``task.reset(key, params)``, ``task.step(key, state, action, params)``;
- ``gymnasium.Env`` classes (``PowerSmoothingEnv`` ...), registered as
  ``heatsync/<Task>-v0`` on ``import heatsync``;
- batched: :class:`JaxVectorEnv` (``gymnasium.vector.VectorEnv``) and
  ``heatsync.envs.sb3.SB3VecEnv`` (stable-baselines3; imported lazily).
"""

from ._core import TRACE_COUNTS, AutoReset, EnvParams, EnvState, RewardWeights, Task
from ._queue import QueueParams, QueueState
from ._spaces import check_action
from ._terms import Normalizers, default_normalizers
from .cooling_dispatch import CoolingDispatch, CoolingDispatchEnv
from .facility import Facility, FacilityEnv
from .power_smoothing import PowerSmoothing, PowerSmoothingEnv
from .registration import ENV_IDS, register_envs
from .scheduling import PowerAwareScheduling, PowerAwareSchedulingEnv
from .vector import JaxVectorEnv, make_task

__all__ = [
    "AutoReset", "CoolingDispatch", "CoolingDispatchEnv", "ENV_IDS", "EnvParams", "EnvState",
    "Facility", "FacilityEnv", "JaxVectorEnv", "Normalizers", "PowerAwareScheduling",
    "PowerAwareSchedulingEnv", "PowerSmoothing", "PowerSmoothingEnv", "QueueParams",
    "QueueState", "RewardWeights", "SB3VecEnv", "TRACE_COUNTS", "Task", "check_action",
    "default_normalizers", "make_task", "register_envs",
]


def __getattr__(name):
    if name == "SB3VecEnv":  # stable-baselines3 (and torch) load only when asked for
        from .sb3 import SB3VecEnv

        return SB3VecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
