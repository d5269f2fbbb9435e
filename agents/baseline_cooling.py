"""Baselines for the coolant loop (CoolingDispatch-v0): a thermostat with an LN2
threshold rule and a PID on the supply temperature."""

from __future__ import annotations

import numpy as np

from heatsync.envs.cooling_dispatch import cooling_layout
from heatsync.envs.observations import (
    T_JUNCTION_REF_C,
    T_JUNCTION_SPAN_K,
    T_SPAN_K,
    T_SUPPLY_REF_C,
)

from .baseline_common import Baseline

__all__ = ["ThermostatLN2", "SupplyPID", "CoolingReadings"]


class CoolingReadings:
    """Physical readings of the cooling observations (degC, 0/1, tank fill); ``xp``:
    ``numpy`` or ``jax.numpy``."""

    def __init__(self, base: Baseline, obs: np.ndarray, xp=np):
        k = base.k_obs
        self.t_junction_max = xp.max(k(obs, "t_junction"), axis=1, keepdims=True) \
            * T_JUNCTION_SPAN_K + T_JUNCTION_REF_C
        self.t_supply = k(obs, "t_supply") * T_SPAN_K + T_SUPPLY_REF_C
        self.chiller_ok = k(obs, "chiller_ok") > 0.5
        self.ln2_tank = k(obs, "ln2_tank")
        self.order_pending = k(obs, "ln2_order_pending") > 0.5


class _CoolingBase(Baseline):
    task_name = "CoolingDispatch"

    #: the rule is written for any array namespace with its filter state explicit
    #: (``_step(obs, state, xp)``), so :meth:`jax_policy` traces it
    jax_ready = True

    def _step(self, obs, st: dict, xp=np):
        """``(action batch, new filter state)``: the rule, pure."""
        raise NotImplementedError

    def _act(self, obs):
        a, self._state = self._step(obs, self._state, np)
        return a

    def _setup(self):
        c = self.params.plant.cdu
        self._layout = cooling_layout(self.params)
        self._pump_min = float(c.pump_speed_min)
        self._sp_lo, self._sp_hi = float(c.setpoint_min_c), float(c.setpoint_max_c)

    def _encode(self, pump, setpoint, valve, order, xp=np):
        return self._layout.encode({"pump_speed": xp.clip(pump, self._pump_min, 1.0),
                                    "supply_setpoint_c": xp.clip(setpoint, self._sp_lo,
                                                                 self._sp_hi),
                                    "ln2_valve": xp.clip(valve, 0.0, 1.0),
                                    "ln2_order": order.astype(float)}, xp=xp)

    def _order(self, r: CoolingReadings, n):
        """Order LN2 when the tank falls below ``order_below`` and none is on its way."""
        return (r.ln2_tank < self.k("order_below", n)) & ~r.order_pending


class ThermostatLN2(_CoolingBase):
    """Rule-based cooling: a thermostat on the supply temperature with an LN2
    threshold rule.

    **Rule** (every interval, from the observed junction and supply
    temperatures and the chiller flag):

    * supply setpoint: ``sp_c`` while the chiller runs, ``sp_fault_c`` while it
      is out (the dry cooler and LN2 must then hold the loop); the thermostat
      steps it down by ``sp_step_k`` and runs the pump at full speed while the
      hottest junction is above ``tj_hot_c`` (back below ``tj_hot_c -
      hyst_k``); otherwise the pump runs at ``pump_lo``;
    * LN2 valve: fully open while the supply temperature exceeds the base
      setpoint (before the thermostat's step) by ``ln2_band_k`` or the hottest
      junction exceeds ``tj_ln2_c``; closed
      once both are ``hyst_k`` below (the exchanger only takes what the CDU
      cannot, so an open valve never cools below the setpoint);
    * LN2 order: one delivery when the tank is below ``order_below`` of its
      capacity and none is pending.

    **Source**: the staged on/off (thermostat with deadband) supervisory
    control of data-center chilled-water and CDU plants (ASHRAE TC 9.9 style
    supply-temperature reset with an emergency stage); LN2 as an emergency
    stage after the LN2 backup of PHYSICS.md.

    **Constants** (``configs/controllers.yaml``, key ``thermostat``): ``sp_c``,
    ``sp_fault_c``, ``sp_step_k``, ``tj_hot_c``, ``hyst_k``, ``pump_lo``,
    ``ln2_band_k``, ``tj_ln2_c``, ``order_below``. Tuned: see ``tuned_on``.
    """

    name = "thermostat"

    def _init_state(self, n):
        return {"hot": np.zeros((n, 1), bool), "ln2": np.zeros((n, 1), bool)}

    def _step(self, obs, st, xp=np):
        n = obs.shape[0]
        r = CoolingReadings(self, obs, xp)
        hyst = self.k("hyst_k", n)
        tj_hot = self.k("tj_hot_c", n)
        hot = xp.where(st["hot"], r.t_junction_max > tj_hot - hyst, r.t_junction_max > tj_hot)
        base = xp.where(r.chiller_ok, self.k("sp_c", n), self.k("sp_fault_c", n))
        setpoint = base - hot * self.k("sp_step_k", n)
        pump = xp.where(hot, 1.0, self.k("pump_lo", n))
        over = r.t_supply - base - self.k("ln2_band_k", n)
        tj_over = r.t_junction_max - self.k("tj_ln2_c", n)
        ln2 = xp.where(st["ln2"], (over > -hyst) | (tj_over > -hyst), (over > 0) | (tj_over > 0))
        a = self._encode(pump, setpoint, ln2.astype(float), self._order(r, n), xp)
        return a, {"hot": hot, "ln2": ln2}


class SupplyPID(_CoolingBase):
    """PID on the supply temperature, acting on the pump and the CDU setpoint,
    with the LN2 valve as the last stage; anti-windup by clamping.

    **Rule** (every interval, ``dt`` the control interval): error ``e = T_supply
    - t_ref_c``; ``u = kp e + ki I + kd de/dt`` clipped to ``[-1, 1]``, where the
    integral ``I`` only accumulates while ``u`` is not saturated in the
    direction of ``e`` (conditional integration) and is clamped so that
    ``ki I`` stays in ``[-1, 1]`` (anti-windup). Actuators:

    * pump speed ``pump_base + pump_gain u`` (more flow when the loop runs hot);
    * CDU setpoint ``t_ref_c - sp_gain u`` (a loop running hot is told to aim
      lower, which raises the CDU's heat demand and so the LN2 draw);
    * LN2 valve ``clip((u - ln2_start) / (1 - ln2_start), 0, 1)``;
    * LN2 order as the thermostat (``order_below``).

    The derivative acts on the measurement (no kick when ``t_ref_c`` changes).

    **Source**: textbook PID with conditional-integration anti-windup
    (Astrom and Hagglund, *Advanced PID Control*, 2006, ch. 3); split-range
    operation of pump and coolant valves as in CDU controllers.

    **Constants** (``configs/controllers.yaml``, key ``pid``): ``t_ref_c``,
    ``kp`` (1/K), ``ki`` (1/(K s)), ``kd`` (s/K), ``pump_base``, ``pump_gain``,
    ``sp_gain`` (K), ``ln2_start``, ``order_below``. Tuned: see ``tuned_on``.
    """

    name = "pid"

    def _init_state(self, n):
        return {"integral": np.zeros((n, 1)), "t_prev": np.full((n, 1), np.nan)}

    def _step(self, obs, st, xp=np):
        n = obs.shape[0]
        dt = float(self.params.plant.dt_s)
        r = CoolingReadings(self, obs, xp)
        kp, ki, kd = self.k("kp", n), self.k("ki", n), self.k("kd", n)
        e = r.t_supply - self.k("t_ref_c", n)
        t_prev = xp.where(xp.isnan(st["t_prev"]), r.t_supply, st["t_prev"])
        d_meas = (r.t_supply - t_prev) / dt
        integral = st["integral"]
        u_try = kp * e + ki * (integral + e * dt) + kd * d_meas
        # conditional integration: freeze the integral while the output is saturated and
        # the error would push it further
        windup = ((u_try > 1.0) & (e > 0)) | ((u_try < -1.0) & (e < 0))
        integral = xp.where(windup, integral, integral + e * dt)
        lim = 1.0 / np.maximum(ki, 1e-12)
        integral = xp.clip(integral, -lim, lim)
        u = xp.clip(kp * e + ki * integral + kd * d_meas, -1.0, 1.0)
        pump = self.k("pump_base", n) + self.k("pump_gain", n) * u
        setpoint = self.k("t_ref_c", n) - self.k("sp_gain", n) * u
        start = self.k("ln2_start", n)
        valve = xp.clip((u - start) / np.maximum(1.0 - start, 1e-9), 0.0, 1.0)
        a = self._encode(pump, setpoint, valve, self._order(r, n), xp)
        return a, {"integral": integral, "t_prev": r.t_supply}
