"""CoolingDispatch: pump, supply setpoint and LN2 under cooling faults."""

from __future__ import annotations

from heatsync.physics.units import J_PER_KWH

from . import observations as _obs
from ._gym import HeatsyncEnv
from .registry import task_spec
from .reward import Reward
from .spaces import cooling_layout
from .task import Task

__all__ = ["CoolingDispatch", "CoolingDispatchEnv"]


def cooling_energy_cost(params, s0, s1, out, exo):
    """CoolingDispatch's ``energy_cost``: the cooling energy alone at the price, over
    ``norm.cooling_usd_ref`` (IT energy is not the task's to change)."""
    usd = out["e_cool_j"] / J_PER_KWH * exo.price_usd_per_kwh
    return usd / params.norm.cooling_usd_ref


class CoolingDispatch(Task):
    """Functional CoolingDispatch task (see :class:`CoolingDispatchEnv` for the tables)."""

    spec = task_spec("CoolingDispatch")
    reward = Reward(("energy_cost", "throttle", "overcool", "water", "ln2", "trip", "hazard"),
                    terminal=("trip", "hazard"), overrides={"energy_cost": cooling_energy_cost})

    def layout(self, params):
        return cooling_layout(params.plant)

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state)
                + _obs.rack_power_pieces(params, state)[:1]
                + _obs.thermal_pieces(params, state)
                + _obs.cryo_pieces(params, state))


class CoolingDispatchEnv(HeatsyncEnv):
    """Pump speed, supply setpoint (chiller / dry-cooler mix), LN2 valve and LN2
    orders under cooling faults: no throttling, trips or overcooling, at least
    cooling energy, water and LN2 cost. An oxygen hazard terminates.

    Default scenario ``chiller-trip`` (the chiller trips for 40 min on a hot
    afternoon; the dry cooler carries half the load; 3600 steps of 1 s). The
    power knobs and storage run at the scenario's fixed ``control`` setpoints.

    **Actions** (float32 Box in [-1, 1], 4 components, rescaled inside):

    =================  =====  ===========================================  ====
    name               index  physical range                               scale
    =================  =====  ===========================================  ====
    pump_speed         0      [pump_speed_min, 1] = [0, 1] of rated        lin
    supply_setpoint_c  1      [setpoint_min_c, setpoint_max_c] = [10, 45]  lin
    ln2_valve          2      [0, 1] share of the LN2 exchanger limit      lin
    ln2_order          3      order a delivery (if none pending) if a > 0  step
    =================  =====  ===========================================  ====

    Out-of-range values are clipped; NaN, infinite, wrong shape or dtype raise
    ``ValueError``.

    **Observations** (float32 Box in [-10, 10], 38 components for R = 8):

    ====================  ====  ===========================================
    name                  size  meaning and scale
    ====================  ====  ===========================================
    time_frac             1     step / episode length
    hour_sin/cos          2     time of day
    ambient               1     (T_ambient - 25 degC) / 10 K
    price                 1     energy price / peak price
    carbon                1     carbon intensity / mean
    grid_up               1     0/1
    chiller_ok, pump_ok   2     0/1 (fault flags)
    p_rack                R     rack IT power / rack max
    t_junction            R     (T_junction - 60 degC) / 30 K
    tripped               R     rack down after a trip, 0/1
    t_supply, t_fw        2     (T - 32 degC) / 10 K
    ln2_tank              1     tank fill, 0-1
    o2                    1     (O2 - 0.209) / 0.02 (alarm at 0.195: -0.7)
    ln2_order_pending     1     0/1
    ====================  ====  ===========================================

    **Reward** = - sum of weight x term (weights from the scenario's
    ``reward`` section, defaults 1; ``info["reward_<term>"]`` sum to it):

    ============  ================================================================
    term          per interval (normalizer)
    ============  ================================================================
    energy_cost   cooling energy (pump, air, dry cooler, chiller) at the price
                  / (10 % of the pod's IT max for one interval at the peak price)
    throttle      GPU-s above the slowdown temperature / (R x GPUs x dt)
    overcool      K-s of supply below the condensation floor / (1 K x dt)
    water         cooling-tower litres / (tower water for the pod's IT max)
    ln2           LN2 consumed (bought - change in the tank), kg / (LN2 that
                  absorbs the pod's IT max for one interval, 2.3 kg)
    trip          terminal charge 2 x (1 + steps left)
    hazard        terminal charge 2 x (1 + steps left)
    ============  ================================================================

    **Termination**: any rack trip, or room O2 below ``ln2.o2_alarm_frac``.
    **Truncation**: the episode length; never both.

    Example::

        import gymnasium as gym
        import numpy as np
        import heatsync

        env = gym.make("heatsync/CoolingDispatch-v0", episode__steps=60)
        obs, info = env.reset(seed=0)
        action = np.array([0.6, 0.2, -1.0, -1.0], np.float32)  # pump 80 %, 34 degC, LN2 shut
        obs, reward, terminated, truncated, info = env.step(action)
        print(reward, info["t_supply_c"], info["reward_energy_cost"])
    """

    task = CoolingDispatch()
