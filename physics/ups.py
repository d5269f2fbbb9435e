"""Facility UPS battery: dispatch, outage ride-through and degradation.

The battery sits on the facility's AC bus. With a source (grid or generator)
present it follows a grid-draw setpoint, ``P_b = gain * (demand - target)``
(positive: discharge); without one it carries the whole UPS bus. Energy stays
in ``[e_min, e_max]`` for any action: limits are applied per substep. Charge and
discharge efficiencies are separate (round trip ~85 %, PHYSICS.md).

Degradation (PHYSICS.md, after Xu et al. 2018, simplified): half cycles are
closed at each reversal of the power's direction, a half cycle of depth ``d``
(fraction of capacity) uses ``0.5 * d^k / N_100`` of the cycle life, with
``N_100 = 3,000`` and ``k = 1.76`` fitted to the LFP table (3,000 @100 %,
5,000 @80 %, 8,000 @60 %, 15,000 @40 %); calendar ageing uses
``t / calendar_life``. ``life_used`` = cycle + calendar share of life.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._math import safe_pow
from ._pytree import param, pytree_dataclass, replace

__all__ = ["UpsParams", "UpsState", "init_ups", "limits", "dispatch", "age", "reserve_j",
           "floor_j", "pending_half_cycle"]

SECONDS_PER_YEAR = 365.25 * 86400.0


@pytree_dataclass
class UpsParams:
    e_max_j: float = param(5.4e8, 0.0, 1e13, unit="J", doc="battery capacity (150 kWh)",
                           source="PHYSICS.md facility UPS 83-250 kWh per MW")
    e_min_frac: float = param(0.1, 0.0, 0.9, unit="1", doc="lowest allowed state of charge",
                              source="est")
    p_max_w: float = param(1.5e6, 0.0, 1e9, unit="W", doc="inverter power limit",
                           source="est: sized to the pod's peak")
    eta_charge: float = param(0.922, 0.5, 1.0, unit="1", doc="charge efficiency",
                              source="PHYSICS.md UPS round trip ~85 % (sqrt per direction)")
    eta_discharge: float = param(0.922, 0.5, 1.0, unit="1", doc="discharge efficiency",
                                 source="PHYSICS.md UPS round trip ~85 %")
    soc_init: float = param(0.9, 0.0, 1.0, unit="1", doc="initial state of charge", source="est")
    cycles_at_full_dod: float = param(3000.0, 1.0, 1e7, unit="1", doc="N_100",
                                      source="PHYSICS.md LFP cycle life")
    dod_exponent: float = param(1.76, 0.5, 4.0, unit="1", doc="k in N(d) = N_100 d^-k",
                                source="fit to PHYSICS.md LFP cycle-life table")
    calendar_life_years: float = param(15.0, 0.1, 100.0, unit="yr",
                                       doc="calendar life at rest", source="est")
    reversal_deadband_w: float = param(1000.0, 0.0, 1e9, unit="W",
                                       doc="|P| below which direction is unchanged", source="est")
    reserve_s: float = param(45.0, 0.0, 3600.0, unit="s",
                             doc="ride-through reserve: seconds of the rated power (p_max_w) "
                                 "kept for an outage; with a source present the battery "
                                 "discharges only above it",
                             source="PHYSICS.md UPS ride-through reserve: load x (generator "
                                    "start 30 s + margin 15 s) (est)")


@pytree_dataclass
class UpsState:
    e_j: jnp.ndarray  # stored energy
    direction: jnp.ndarray  # +1 discharging, -1 charging, 0 not yet moved
    e_turn_j: jnp.ndarray  # energy at the last reversal
    cycle_life_used: jnp.ndarray
    calendar_life_used: jnp.ndarray


def init_ups(up: UpsParams) -> UpsState:
    e0 = jnp.asarray(up.soc_init * up.e_max_j, dtype=jnp.result_type(float))
    z = jnp.zeros_like(e0)
    return UpsState(e_j=e0, direction=z, e_turn_j=e0, cycle_life_used=z, calendar_life_used=z)


def reserve_j(up: UpsParams):
    """Energy kept for ride-through (J): ``reserve_s`` of the rated power, delivered."""
    return up.reserve_s * up.p_max_w / up.eta_discharge


def floor_j(up: UpsParams, source_ok):
    """The lowest energy the battery may discharge to (J): the ride-through reserve (at
    least ``e_min``) while a source is present, ``e_min`` during an outage."""
    e_min = up.e_min_frac * up.e_max_j
    return jnp.where(source_ok > 0.5, jnp.maximum(e_min, jnp.minimum(reserve_j(up), up.e_max_j)),
                     e_min)


def limits(up: UpsParams, us: UpsState, h_s, source_ok=1.0):
    """``(discharge_limit_w, charge_limit_w)`` for the substep, from power and energy
    (discharge down to :func:`floor_j`)."""
    e_min = floor_j(up, source_ok)
    p_dis = jnp.minimum(up.p_max_w, jnp.maximum(us.e_j - e_min, 0.0) * up.eta_discharge / h_s)
    p_ch = jnp.minimum(up.p_max_w, jnp.maximum(up.e_max_j - us.e_j, 0.0) / (up.eta_charge * h_s))
    return p_dis, p_ch


def dispatch(up: UpsParams, us: UpsState, demand_w, ups_bus_w, target_w, gain, source_ok, h_s):
    """Battery power over one substep.

    **Arguments**: facility demand (W), the part of it on the UPS bus (W),
    grid-draw setpoint (W), gain, source present (0/1), substep (s).

    **Returns**: ``(p_b_w, new_state, loss_w)``; ``p_b_w`` positive discharges
    onto the UPS bus and never exceeds that bus's demand (no export).
    """
    p_dis, p_ch = limits(up, us, h_s, source_ok)
    request = jnp.where(source_ok > 0.5, gain * (demand_w - target_w), ups_bus_w)
    p = jnp.clip(request, -p_ch * source_ok, jnp.minimum(p_dis, ups_bus_w))
    pd = jnp.maximum(p, 0.0)
    pc = jnp.maximum(-p, 0.0)
    new_e = us.e_j + h_s * (up.eta_charge * pc - pd / up.eta_discharge)
    new_e = jnp.clip(new_e, up.e_min_frac * up.e_max_j, up.e_max_j)
    loss = pd * (1.0 / up.eta_discharge - 1.0) + pc * (1.0 - up.eta_charge)
    return p, age(up, replace(us, e_j=new_e), us.e_j, p, h_s), loss


def age(up: UpsParams, us: UpsState, e_before_j, p_w, h_s) -> UpsState:
    """Count a half cycle at a direction reversal and add calendar ageing."""
    d = jnp.where(p_w > up.reversal_deadband_w, 1.0,
                  jnp.where(p_w < -up.reversal_deadband_w, -1.0, 0.0))
    reversal = (d != 0.0) & (us.direction != 0.0) & (d != us.direction)
    depth = jnp.abs(e_before_j - us.e_turn_j) / jnp.maximum(up.e_max_j, 1e-9)
    half = 0.5 * safe_pow(depth, up.dod_exponent) / up.cycles_at_full_dod
    return replace(
        us,
        direction=jnp.where(d != 0.0, d, us.direction),
        e_turn_j=jnp.where(reversal, e_before_j, us.e_turn_j),
        cycle_life_used=us.cycle_life_used + jnp.where(reversal, half, 0.0),
        calendar_life_used=us.calendar_life_used
        + h_s / (up.calendar_life_years * SECONDS_PER_YEAR),
    )


def pending_half_cycle(up: UpsParams, us: UpsState):
    """Life share of the half cycle still open (counted in the final KPI)."""
    depth = jnp.abs(us.e_j - us.e_turn_j) / jnp.maximum(up.e_max_j, 1e-9)
    return 0.5 * safe_pow(depth, up.dod_exponent) / up.cycles_at_full_dod
