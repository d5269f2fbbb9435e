"""CoolingDispatch: pump, supply setpoint and LN2 under cooling faults."""

from __future__ import annotations

from . import observations as _obs
from ._gym import HeatsyncEnv
from .registry import task_spec
from .reward import Reward
from .spaces import ActionLayout, plant_segment
from .task import Task

__all__ = ["CoolingDispatch", "CoolingDispatchEnv", "cooling_layout"]


def cooling_layout(params) -> ActionLayout:
    """Coolant and LN2 actuators (CoolingDispatch, Facility); 0 is the scenario's control."""
    p, c = params.plant, params.control
    return ActionLayout([
        plant_segment(p, "pump_speed", 1, "center", "1 of rated", c.pump_speed),
        plant_segment(p, "supply_setpoint_c", 1, "center", "degC", c.supply_setpoint_c),
        plant_segment(p, "ln2_valve", 1, "center", "1", c.ln2_valve),
        plant_segment(p, "ln2_order", 1, "step", "order if > 0", c.ln2_order),
    ])


class CoolingDispatch(Task):
    """Functional CoolingDispatch task (see :class:`CoolingDispatchEnv` for the tables)."""

    spec = task_spec("CoolingDispatch")
    reward = Reward(("energy", "demand", "water", "ln2", "lost_work", "throttle", "overcool",
                     "violation", "trip", "hazard"), terminal=("trip", "hazard"))

    def layout(self, params):
        return cooling_layout(params)

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state)
                + _obs.fault_pieces(params, state)
                + _obs.rack_power_pieces(params, state)[:1]
                + _obs.thermal_pieces(params, state, outlets=True)
                + _obs.cryo_pieces(params, state)
                + _obs.action_pieces(params, state))


class CoolingDispatchEnv(HeatsyncEnv):
    """Pump speed, supply setpoint (chiller / dry-cooler mix), LN2 valve and LN2 orders
    under cooling faults, at least cost in USD (energy, demand, water, LN2 consumed, work
    lost to throttling) within the specification (no throttling, no overcooling, no
    trip, no oxygen hazard).

    Default scenario ``CoolingDispatch-train`` (the benchmark ranks on the held-out
    ``CoolingDispatch-test``): a hot afternoon, a chiller trip (or pump failure) at a
    random time and its recovery inside the episode, dry coolers of 40-70 % of the load;
    3600 steps of 1 s; discount 0.999. The power knobs and storage run at the scenario's
    fixed ``control``.

    **Actions** (float32 Box in [-1, 1], 4 components; 0 is the scenario's control, the
    ends of a range are reached at |a| = 0.9):

    =================  ==========================================================
    name               meaning (0 ->)
    =================  ==========================================================
    pump_speed         [pump_speed_min, 1] of rated (0 -> 0.8)
    supply_setpoint_c  [10, 45] degC (0 -> 32 degC)
    ln2_valve          [0, 1] share of the LN2 exchanger limit (0 -> shut)
    ln2_order          order a delivery (if none pending) if a > 0
    =================  ==========================================================

    **Observations** (float32 Box in [-10, 10], 56 components for R = 8; ``env.obs_names``
    labels each):

    ====================  ====  ===========================================
    name                  size  meaning and scale
    ====================  ====  ===========================================
    time_frac             1     step / episode length
    hour_sin/cos          2     time of day
    ambient               1     (T_ambient - 25 degC) / 10 K
    price, carbon         2     / peak price, / mean intensity
    grid_up               1     0/1
    chiller_ok, pump_ok   2     0/1 (fault flags)
    fault_clock           6     time since each fault kind began / 1 h (0: none)
    p_rack                R     rack IT power / rack max
    t_junction            R     (T_junction - 60 degC) / 30 K
    tripped               R     rack down after a trip, 0/1
    t_rack                R     rack coolant outlet, (T - 32 degC) / 10 K
    t_supply, t_fw        2     (T - 32 degC) / 10 K
    ln2_tank              1     tank fill, 0-1
    o2                    1     (O2 - 0.209) / 0.02 (alarm at 0.195: -0.7)
    ln2_order_pending     1     0/1
    prev_action           4     the previous action (zeros at reset)
    ====================  ====  ===========================================

    **Reward** (USD): ``-(energy + demand + water + ln2 + lost_work) - (throttle +
    overcool + violation + trip + hazard)``; ``info["reward_<term>"]`` sum to it.

    **Termination**: any rack trip, or room O2 below ``ln2.o2_alarm_frac`` (charged the
    rest of the episode's work). **Truncation**: the episode length; never both.

    Example::

        import gymnasium as gym
        import numpy as np
        import heatsync

        env = gym.make("heatsync/CoolingDispatch-v0", episode__steps=60)
        obs, info = env.reset(seed=0)
        action = np.array([0.0, 0.5, 0.0, -1.0], np.float32)  # pump 80 %, warmer supply
        obs, reward, terminated, truncated, info = env.step(action)
        print(reward, info["t_supply_c"], info["reward_energy"])
    """

    task = CoolingDispatch()
