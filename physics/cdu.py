"""CDU and technology cooling loop.

Pump speed sets flow (affinity law: flow ~ speed, power ~ speed^3, PHYSICS.md).
Pump work ends up as heat in the coolant. The loop node is the supply header
(capacity ``c_loop``):

``C_loop dT_sup/dt = Q_racks + P_pump - Q_hx - Q_ln2``

The CDU's valve holds the supply setpoint: it asks for the heat that brings
``T_sup`` to the setpoint within ``ctrl_tau_s`` (at least one substep, so the
explicit update never overshoots), limited by the counterflow
effectiveness-NTU capacity ``eps * C_min * (T_ret - T_fw)`` (coupling 6).
The LN2 exchanger then covers what the primary exchanger cannot, up to the LN2
valve's share of its limit (:mod:`heatsync.physics.cryo`).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._pytree import param, pytree_dataclass

__all__ = ["CduParams", "pump", "effectiveness", "hx_capacity_w", "demand_w"]


@pytree_dataclass
class CduParams:
    flow_rated_kg_s: float = param(26.0, 0.0, 1e5, unit="kg/s",
                                   doc="loop flow at full pump speed (~1.5 L/min per kW of 1 MW)",
                                   source="PHYSICS.md coolant flow ~1.5 L/min per kW")
    pump_rated_w: float = param(5000.0, 0.0, 1e7, unit="W", doc="pump power at full speed",
                                source="PHYSICS.md pump 0.4-0.6 % of heat load")
    pump_speed_min: float = param(0.0, 0.0, 1.0, unit="1", doc="lowest pump speed", source="est")
    ua_w_per_k: float = param(2.5e5, 0.0, 1e9, unit="W/K", doc="exchanger UA",
                              source="est from PHYSICS.md CDU approach ~4 degC at 1 MW")
    fw_flow_w_per_k: float = param(1.1e5, 1.0, 1e9, unit="W/K",
                                   doc="facility-water capacity rate through the CDU",
                                   source="est")
    c_loop_j_per_k: float = param(3.0e6, 1e3, 1e11, unit="J/K",
                                  doc="loop coolant and piping capacity",
                                  source="PHYSICS.md rack loop time constant 10-60 s (est)")
    ctrl_tau_s: float = param(5.0, 0.0, 3600.0, unit="s",
                              doc="time constant of the supply-temperature valve loop",
                              source="est")
    approach_k: float = param(4.0, 0.0, 30.0, unit="K",
                              doc="CDU approach: facility water setpoint below supply setpoint",
                              source="PHYSICS.md CDU approach ~4 degC")
    setpoint_min_c: float = param(10.0, -10.0, 60.0, unit="degC",
                                  doc="lowest settable supply setpoint", source="est")
    setpoint_max_c: float = param(45.0, 0.0, 70.0, unit="degC",
                                  doc="highest settable supply setpoint",
                                  source="PHYSICS.md ASHRAE W45")
    condensation_floor_c: float = param(15.0, -20.0, 40.0, unit="degC",
                                        doc="supply below this is overcooling",
                                        source="PHYSICS.md room dew point ~15 degC (est)")
    failed_flow_ratio: float = param(0.05, 0.0, 1.0, unit="1",
                                     doc="flow ratio left while the pump has failed",
                                     source="est (thermosiphon / coast-down)")


def pump(cp: CduParams, speed, pump_ok):
    """``(flow_kg_s, flow_ratio, power_w)`` at a commanded speed (0..1)."""
    s = jnp.clip(speed, cp.pump_speed_min, 1.0)
    ratio = jnp.where(pump_ok > 0.5, s, cp.failed_flow_ratio)
    power = jnp.where(pump_ok > 0.5, cp.pump_rated_w * s**3, 0.0)
    return cp.flow_rated_kg_s * ratio, ratio, power


def effectiveness(ntu, cr):
    """Counterflow exchanger effectiveness (continuous at Cr = 1)."""
    cr = jnp.clip(cr, 0.0, 1.0)
    near_one = jnp.abs(1.0 - cr) < 1e-6
    crs = jnp.where(near_one, 0.5, cr)
    e = jnp.exp(-ntu * (1.0 - crs))
    eps = (1.0 - e) / (1.0 - crs * e)
    return jnp.where(near_one, ntu / (1.0 + ntu), eps)


def hx_capacity_w(cp: CduParams, c_coolant_w_per_k, t_ret_c, t_fw_c):
    """Largest heat the exchanger can move from coolant at ``t_ret`` to water at ``t_fw``."""
    c_min = jnp.minimum(c_coolant_w_per_k, cp.fw_flow_w_per_k)
    c_max = jnp.maximum(jnp.maximum(c_coolant_w_per_k, cp.fw_flow_w_per_k), 1e-9)
    ntu = cp.ua_w_per_k / jnp.maximum(c_min, 1e-9)
    eps = effectiveness(ntu, c_min / c_max)
    return jnp.maximum(eps * c_min * (t_ret_c - t_fw_c), 0.0)


def demand_w(cp: CduParams, q_in_w, t_sup_c, setpoint_c, h_s):
    """Heat to remove from the loop node this substep to approach the setpoint."""
    tau = jnp.maximum(cp.ctrl_tau_s, h_s)
    return jnp.maximum(q_in_w + cp.c_loop_j_per_k * (t_sup_c - setpoint_c) / tau, 0.0)
