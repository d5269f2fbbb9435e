"""Cryogenic backup: LN2 tank, LN2-to-coolant exchanger, deliveries, room oxygen.

Each kg of LN2 absorbs its latent heat plus the sensible heat of the cold gas
warmed to the coolant supply temperature, ``q = h_fg + c_p,gas (T_sup - T_boil)``
(PHYSICS.md coupling 10). The exchanger takes the heat the primary CDU
exchanger cannot, up to ``valve * q_hx_max_w``; the valve opens the allowance,
the loop's setpoint decides how much of it is used, so LN2 never cools the loop
below its setpoint. The tank loses ``boil_off_per_day`` of its contents.

Vented gas: a share ``leak_frac`` (from the scenario: 0 with a working vent)
enters the room. Room oxygen (mole fraction x, volume V, air changes ACH):
``dx/dt = ACH/3600 (0.209 - x) - x * Vdot_N2 / V``, updated exactly.

Deliveries: scheduled ones come from the scenario; an order action places one
delivery of ``order_kg`` that arrives after ``lead_time_s``; ``delivery_loss``
of each delivery is lost in transfer; what does not fit in the tank is vented.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._pytree import param, pytree_dataclass, replace
from .units import CELSIUS_TO_KELVIN, SECONDS_PER_HOUR

__all__ = ["Ln2Params", "Ln2State", "init_ln2", "heat_per_kg", "exchange", "oxygen", "tank"]

O2_AMBIENT = 0.209  # mole fraction of O2 in dry air (definition)


@pytree_dataclass
class Ln2Params:
    tank_capacity_kg: float = param(9000.0, 0.0, 1e7, unit="kg", doc="tank capacity",
                                    source="est (3,000 gal bulk tank at 807 kg/m3)")
    fill_init: float = param(0.8, 0.0, 1.0, unit="1", doc="initial fill", source="est")
    latent_j_per_kg: float = param(199e3, 1e3, 1e6, unit="J/kg", doc="latent heat",
                                   source="PHYSICS.md LN2 latent heat")
    cp_gas_j_per_kg_k: float = param(1040.0, 100.0, 5000.0, unit="J/(kg K)",
                                     doc="N2 gas heat capacity",
                                     source="PHYSICS.md cold gas to ambient")
    t_boil_k: float = param(77.35, 50.0, 120.0, unit="K", doc="boiling point",
                            source="PHYSICS.md LN2 boiling point")
    density_kg_m3: float = param(807.0, 100.0, 2000.0, unit="kg/m3", doc="liquid density",
                                 source="PHYSICS.md LN2 density")
    expansion: float = param(694.0, 1.0, 2000.0, unit="1", doc="gas volume per liquid volume",
                             source="PHYSICS.md expansion (Air Products)")
    q_hx_max_w: float = param(1.0e6, 0.0, 1e9, unit="W", doc="LN2 exchanger limit",
                              source="est")
    boil_off_per_day: float = param(0.01, 0.0, 0.5, unit="1/day", doc="storage boil-off",
                                    source="PHYSICS.md bulk < 1 %/day")
    price_usd_per_l: float = param(0.40, 0.0, 10.0, unit="USD/L", doc="LN2 price",
                                   source="PHYSICS.md 0.30-0.50 $/L (weak source)")
    order_kg: float = param(6000.0, 0.0, 1e7, unit="kg", doc="size of an ordered delivery",
                            source="est")
    lead_time_s: float = param(14400.0, 0.0, 1e7, unit="s", doc="order lead time",
                               source="est")
    delivery_loss: float = param(0.04, 0.0, 0.5, unit="1", doc="share lost per delivery",
                                 source="PHYSICS.md 3-5 % lost per delivery")
    room_volume_m3: float = param(2000.0, 1.0, 1e7, unit="m3", doc="room volume", source="est")
    air_changes_per_h: float = param(4.0, 0.01, 100.0, unit="1/h", doc="room ventilation",
                                     source="est")
    o2_alarm_frac: float = param(0.195, 0.05, 0.209, unit="1", doc="oxygen hazard threshold",
                                 source="PHYSICS.md OSHA 1910.146 19.5 %")


@pytree_dataclass
class Ln2State:
    tank_kg: jnp.ndarray
    order_eta_s: jnp.ndarray  # time until an ordered delivery arrives; < 0: none pending
    o2_frac: jnp.ndarray


def init_ln2(lp: Ln2Params) -> Ln2State:
    f = jnp.result_type(float)
    return Ln2State(
        tank_kg=jnp.asarray(lp.fill_init * lp.tank_capacity_kg, f),
        order_eta_s=jnp.asarray(-1.0, f),
        o2_frac=jnp.asarray(O2_AMBIENT, f),
    )


def heat_per_kg(lp: Ln2Params, t_gas_out_c):
    """J absorbed per kg: latent plus warming the gas to ``t_gas_out_c``."""
    dt = jnp.maximum(t_gas_out_c + CELSIUS_TO_KELVIN - lp.t_boil_k, 0.0)
    return lp.latent_j_per_kg + lp.cp_gas_j_per_kg_k * dt


def exchange(lp: Ln2Params, tank_kg, q_wanted_w, valve, t_sup_c, h_s):
    """``(q_w, m_kg)``: heat taken by LN2 this substep and the mass boiled."""
    q_kg = heat_per_kg(lp, t_sup_c)
    q_lim = jnp.minimum(jnp.clip(valve, 0.0, 1.0) * lp.q_hx_max_w,
                        jnp.maximum(tank_kg, 0.0) * q_kg / h_s)
    q = jnp.clip(q_wanted_w, 0.0, q_lim)
    return q, q * h_s / q_kg


def oxygen(lp: Ln2Params, o2_frac, gas_kg_indoors, h_s):
    """Room oxygen fraction after ``gas_kg_indoors`` of N2 entered over ``h_s``."""
    v_gas = gas_kg_indoors / lp.density_kg_m3 * lp.expansion  # m3 at room conditions
    k_vent = lp.air_changes_per_h / SECONDS_PER_HOUR
    k_in = v_gas / h_s / lp.room_volume_m3
    k = k_vent + k_in
    x_eq = k_vent * O2_AMBIENT / k
    return x_eq + (o2_frac - x_eq) * jnp.exp(-k * h_s)


def tank(lp: Ln2Params, ls: Ln2State, used_kg, scheduled_kg, order, h_s):
    """Tank mass, orders and deliveries over one substep.

    **Returns**: ``(new_state, bought_kg, boil_kg, vented_overflow_kg)``;
    ``order`` (0/1) places an order unless one is pending.
    """
    boil = ls.tank_kg * lp.boil_off_per_day * h_s / 86400.0
    new_order = (order > 0.5) & (ls.order_eta_s < 0.0)
    eta = jnp.where(new_order, lp.lead_time_s, ls.order_eta_s)
    arrives = (eta >= 0.0) & (eta - h_s < 0.0)
    ordered = jnp.where(arrives, lp.order_kg, 0.0)
    bought = ordered + scheduled_kg
    received = bought * (1.0 - lp.delivery_loss)
    m = ls.tank_kg - used_kg - boil + received
    overflow = jnp.maximum(m - lp.tank_capacity_kg, 0.0)
    m = jnp.clip(m, 0.0, lp.tank_capacity_kg)
    eta = jnp.where(arrives, -1.0, jnp.where(eta >= 0.0, eta - h_s, eta))
    return replace(ls, tank_kg=m, order_eta_s=eta), bought, boil, overflow
