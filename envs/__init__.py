"""heatsync.envs: Gymnasium environments over the jitted plant.

Three faces over one functional core:

- functional, gymnax-style (:class:`PowerSmoothing`, :class:`CoolingDispatch`,
  :class:`PowerAwareScheduling`, :class:`Facility`): ``task.make_params(...)``,
  ``task.reset(key, params)``, ``task.step(key, state, action, params)``;
- ``gymnasium.Env`` classes (``PowerSmoothingEnv`` ...), registered as
  ``heatsync/<Task>-v0`` on ``import heatsync``;
- batched: :class:`JaxVectorEnv` (``gymnasium.vector.VectorEnv``) and
  ``heatsync.envs.sb3.SB3VecEnv`` (stable-baselines3; imported lazily).

Public modules: :mod:`~heatsync.envs.registry` (tasks and their benchmark metadata),
:mod:`~heatsync.envs.spaces` (action layouts), :mod:`~heatsync.envs.reward` (the reward
object), :mod:`~heatsync.envs.observations` (observation pieces and scales),
:mod:`~heatsync.envs.config` (the ``episode`` and ``reward`` scenario sections) and
:mod:`~heatsync.envs.drive` (the jitted entry points and their flat buffers).
"""

from . import config as config  # registers the episode and reward scenario sections
from ._queue import QueueParams, QueueState
from .config import episode_steps, reward_prices
from .cooling_dispatch import CoolingDispatch, CoolingDispatchEnv
from .drive import TRACE_COUNTS, Entry, Flat
from .facility import Facility, FacilityEnv
from .observations import OBS_BOUND
from .power_smoothing import PowerSmoothing, PowerSmoothingEnv
from .registration import ENV_IDS
from .registry import TASK_SPECS, TaskSpec, make_task, register_envs, task_names, task_spec
from .reward import PRICE_KEYS, Prices, Reward
from .rollout import RolloutResult, episode_keys, rollout
from .scheduling import PowerAwareScheduling, PowerAwareSchedulingEnv
from .spaces import ActionLayout, Segment, check_action
from .task import ACTION_MODES, AutoReset, EnvParams, EnvState, FilterParams, Memory, Task
from .vector import JaxVectorEnv

__all__ = [
    "ACTION_MODES", "ActionLayout", "AutoReset", "CoolingDispatch", "CoolingDispatchEnv",
    "RolloutResult", "rollout", "episode_keys",
    "ENV_IDS", "Entry", "EnvParams", "EnvState", "Facility", "FacilityEnv", "FilterParams",
    "Flat", "JaxVectorEnv", "Memory", "OBS_BOUND", "PRICE_KEYS", "PowerAwareScheduling",
    "PowerAwareSchedulingEnv", "PowerSmoothing", "PowerSmoothingEnv", "Prices", "QueueParams",
    "QueueState", "Reward", "SB3VecEnv", "Segment", "TASK_SPECS", "TRACE_COUNTS", "Task",
    "TaskSpec", "check_action", "episode_steps", "make_task", "register_envs", "reward_prices",
    "task_names", "task_spec",
]


def __getattr__(name):
    if name == "SB3VecEnv":  # stable-baselines3 (and torch) load only when asked for
        from .sb3 import SB3VecEnv

        return SB3VecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
