"""The baseline registry: every baseline that fits each task.

``BASELINES[task_name][controller_name]`` is a factory ``factory(env_or_params)``
(an env of any face, an :class:`~heatsync.envs.EnvParams`, or nothing for the
task's default scenario) returning a policy; keyword arguments override the
tuned constants of ``configs/controllers.yaml``.
"""

from __future__ import annotations

from functools import partial

from .baseline_cooling import SupplyPID, ThermostatLN2
from .baseline_facility import FacilityRule
from .baseline_power import FirmwareSmoothing, FixedSetpoints, LowPassStorage
from .baseline_scheduling import FCFS, CarbonAwareDeferral, EasyBackfill, PowerCappedGreedy
from .best_constant import BestConstant

__all__ = ["BASELINES", "BestConstant", "CarbonAwareDeferral", "EasyBackfill", "FCFS",
           "FacilityRule", "FirmwareSmoothing", "FixedSetpoints", "LowPassStorage",
           "PowerCappedGreedy", "SupplyPID", "ThermostatLN2"]

BASELINES: dict[str, dict] = {
    "PowerSmoothing": {
        "fixed": partial(FixedSetpoints, task="PowerSmoothing"),
        "best-constant": partial(BestConstant, task="PowerSmoothing"),
        "firmware": FirmwareSmoothing,
        "lowpass": LowPassStorage,
        "lowpass_ups": partial(LowPassStorage, uc_gain=0.0),
    },
    "CoolingDispatch": {
        "fixed": partial(FixedSetpoints, task="CoolingDispatch"),
        "best-constant": partial(BestConstant, task="CoolingDispatch"),
        "thermostat": ThermostatLN2,
        "pid": SupplyPID,
    },
    "PowerAwareScheduling": {
        "fixed": partial(FixedSetpoints, task="PowerAwareScheduling"),
        "best-constant": partial(BestConstant, task="PowerAwareScheduling"),
        "fcfs": FCFS,
        "easy": EasyBackfill,
        "greedy": PowerCappedGreedy,
        "carbon": CarbonAwareDeferral,
    },
    "Facility": {
        "fixed": partial(FixedSetpoints, task="Facility"),
        "best-constant": partial(BestConstant, task="Facility"),
        "rule": FacilityRule,
    },
}
