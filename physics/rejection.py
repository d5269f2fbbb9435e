"""Heat rejection: facility water node, dry cooler, chiller and cooling tower.

``C_fw dT_fw/dt = Q_hx - Q_dry - Q_chiller``

A building controller holds the facility water at the CDU's supply setpoint
minus the CDU approach, asking for ``Q_hx + C_fw (T_fw - T_fw_set) / tau``.
The dry cooler free-cools first, up to ``g_dry (T_fw - T_ambient)`` (zero once
ambient plus approach exceeds the water temperature) and its capacity; the
chiller trims the rest up to its capacity while it is available
(PHYSICS.md coupling 7). Chiller power is ``Q / COP`` with
``COP = eta_II * T_evap / (T_cond - T_evap)``, the lift floored at
``lift_min_k`` and COP bounded by ``cop_max``. The chiller's condenser rejects
``Q + P`` through a cooling tower that evaporates ``water_l_per_kwh``.
Chiller and dry-cooler fans are on the mechanical bus: they stop while no
source (grid or generator) is present.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._pytree import param, pytree_dataclass
from .units import CELSIUS_TO_KELVIN, J_PER_KWH

__all__ = ["RejectionParams", "chiller_cop", "reject"]


@pytree_dataclass
class RejectionParams:
    c_fw_j_per_k: float = param(2.0e7, 1e4, 1e12, unit="J/K",
                                doc="facility water capacity (~5 m3)",
                                source="PHYSICS.md facility loop: minutes (est)")
    ctrl_tau_s: float = param(60.0, 0.0, 86400.0, unit="s",
                              doc="time constant of the facility-water controller", source="est")
    g_dry_w_per_k: float = param(2.4e5, 0.0, 1e10, unit="W/K",
                                 doc="dry cooler capacity per K of water-to-ambient difference",
                                 source="PHYSICS.md dry cooler approach 5 degC at 1.2 MW (est)")
    q_dry_max_w: float = param(1.5e6, 0.0, 1e10, unit="W", doc="dry cooler capacity",
                               source="est")
    dry_fan_frac: float = param(0.02, 0.0, 0.5, unit="1",
                                doc="dry cooler fan power per W rejected", source="est")
    q_chiller_max_w: float = param(1.5e6, 0.0, 1e10, unit="W", doc="chiller capacity",
                                   source="est")
    eta_ii: float = param(0.5, 0.05, 1.0, unit="1", doc="chiller second-law efficiency",
                          source="PHYSICS.md chiller COP (Carnot fraction ~0.5)")
    evap_approach_k: float = param(2.0, 0.0, 20.0, unit="K",
                                   doc="evaporator below facility water", source="est")
    cond_offset_k: float = param(5.0, 0.0, 30.0, unit="K",
                                 doc="condensing above ambient (tower approach + condenser)",
                                 source="PHYSICS.md tower approach 3.5-5 degC (est)")
    lift_min_k: float = param(5.0, 0.5, 50.0, unit="K", doc="smallest lift in the COP",
                              source="est")
    cop_max: float = param(10.0, 1.0, 50.0, unit="1", doc="COP bound", source="est")
    water_l_per_kwh: float = param(1.1, 0.0, 10.0, unit="L/kWh",
                                   doc="tower evaporation per kWh rejected",
                                   source="PHYSICS.md tower evaporation")
    water_usd_per_l: float = param(0.003, 0.0, 1.0, unit="USD/L",
                                   doc="water and treatment cost", source="est")


def chiller_cop(rp: RejectionParams, t_fw_c, t_ambient_c):
    t_evap = t_fw_c - rp.evap_approach_k + CELSIUS_TO_KELVIN
    t_cond = t_ambient_c + rp.cond_offset_k + CELSIUS_TO_KELVIN
    lift = jnp.maximum(t_cond - t_evap, rp.lift_min_k)
    return jnp.clip(rp.eta_ii * t_evap / lift, 1.0, rp.cop_max)


def reject(rp: RejectionParams, t_fw_c, q_hx_w, t_fw_set_c, t_ambient_c, chiller_ok, source_ok,
           h_s):
    """Heat rejection over one substep and the new facility-water temperature.

    **Returns**: ``(t_fw, q_dry_w, q_chiller_w, p_dry_w, p_chiller_w, water_l)``.
    """
    tau = jnp.maximum(rp.ctrl_tau_s, h_s)
    need = jnp.maximum(q_hx_w + rp.c_fw_j_per_k * (t_fw_c - t_fw_set_c) / tau, 0.0)
    dry_avail = jnp.clip(rp.g_dry_w_per_k * (t_fw_c - t_ambient_c), 0.0, rp.q_dry_max_w)
    q_dry = jnp.minimum(need, dry_avail) * source_ok
    ch_avail = rp.q_chiller_max_w * chiller_ok * source_ok
    q_ch = jnp.clip(need - q_dry, 0.0, ch_avail)
    p_ch = q_ch / chiller_cop(rp, t_fw_c, t_ambient_c)
    p_dry = rp.dry_fan_frac * q_dry
    t_fw = t_fw_c + h_s * (q_hx_w - q_dry - q_ch) / rp.c_fw_j_per_k
    water = rp.water_l_per_kwh * (q_ch + p_ch) * h_s / J_PER_KWH
    return t_fw, q_dry, q_ch, p_dry, p_ch, water
