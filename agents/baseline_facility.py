"""A combined rule-based controller for Facility-v0: storage dispatch, cooling
and scheduling baselines side by side, each on its part of the action."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from heatsync.envs.facility import scheduling_layout

from .baseline_common import Baseline
from .baseline_cooling import SupplyPID, ThermostatLN2
from .baseline_power import FirmwareSmoothing, LowPassStorage
from .baseline_scheduling import FCFS, CarbonAwareDeferral, EasyBackfill, PowerCappedGreedy

__all__ = ["FacilityRule", "COMPONENTS"]

#: components by part and name
COMPONENTS = {
    "power": {"lowpass": LowPassStorage, "lowpass_ups": partial(LowPassStorage, uc_gain=0.0),
              "firmware": FirmwareSmoothing},
    "cooling": {"thermostat": ThermostatLN2, "pid": SupplyPID},
    "scheduling": {"greedy": PowerCappedGreedy, "easy": EasyBackfill, "fcfs": FCFS,
                   "carbon": CarbonAwareDeferral},
}


class FacilityRule(Baseline):
    """Combined rule-based facility controller: one baseline per part of the action.

    **Rule**: the power part (per-rack GPU knobs, ultracapacitors, UPS: the
    first 6R + 2 components) comes from ``power`` (default ``lowpass_ups``:
    :class:`~heatsync.agents.LowPassStorage` with the UPS covering the fast
    part too), the cooling part (pump, supply
    setpoint, LN2 valve and order) from ``cooling`` (default
    :class:`~heatsync.agents.ThermostatLN2`) and job placement from
    ``scheduling`` (default :class:`~heatsync.agents.PowerCappedGreedy`),
    each reading the Facility observation by name with its own constants
    from ``configs/controllers.yaml``. The scheduler's choice maps to the
    Facility layout: ``defer_job`` -1 to start (+1 to defer), ``job_select``
    the centre of the chosen job's bin, ``phase_offset`` the chosen phase
    bin's offset.

    **Source**: the component baselines (see each); the split mirrors how
    facilities are run today: separate power-train, mechanical and batch
    scheduling controllers. **Constants**: those of the components. Tuned:
    the choice of components, by reward on Facility's default scenario (see
    ``tuned_on``; the components keep their own tuned constants).

    **Arguments**: env or params as every baseline; ``power``, ``cooling``,
    ``scheduling`` name a component (keys of :data:`COMPONENTS`).
    """

    name = "facility"
    task_name = "Facility"

    def __init__(self, env: Any = None, task=None, power: str | None = None,
                 cooling: str | None = None, scheduling: str | None = None, **constants):
        super().__init__(env, task=task, **constants)
        chosen = dict(self.constants)
        chosen.update({k: v for k, v in (("power", power), ("cooling", cooling),
                                         ("scheduling", scheduling)) if v is not None})
        self.constants = chosen
        self.parts = {}
        for part, options in COMPONENTS.items():
            name = chosen[part]
            if name not in options:
                raise ValueError(f"FacilityRule: {part}={name!r}; choose from {sorted(options)}")
            self.parts[part] = options[name](self.params, task=self.task)

    def reset(self, seed=None):
        super().reset(seed)
        for comp in self.parts.values():
            comp.reset(seed)

    def _act(self, obs):
        for comp in self.parts.values():
            comp._prepare(obs)
        power = self.parts["power"]._act(obs)
        cooling = self.parts["cooling"]._act(obs)
        k, b = self.parts["scheduling"].step_decision(obs)
        sched = scheduling_layout(self.params).encode({  # (N, 1) each: a batch of one value
            "defer_job": (k < 0)[:, None].astype(float),
            "job_select": np.clip(k, 0, None)[:, None],
            "phase_offset": (b / self.params.queue.n_phase_bins)[:, None]})
        return np.concatenate([power, cooling, sched], axis=1).astype(np.float32)
