"""Rack ultracapacitor on the rack's DC bus.

A local converter follows a bus-draw setpoint: the capacitor delivers
``gain * (P_rack - target)`` (positive: discharge onto the bus), limited by its
power rating and by the energy it holds or can still take over the substep, so
``0 <= E <= E_max`` holds for any action. One-way efficiency ``eta`` applies in
both directions (PHYSICS.md coupling 8). Setpoint and gain are actions; gain 0
switches the capacitor off.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._pytree import param, pytree_dataclass

__all__ = ["UltracapParams", "dispatch"]


@pytree_dataclass
class UltracapParams:
    e_max_j: float = param(2.0e5, 0.0, 1e9, unit="J", doc="usable energy per rack",
                           source="est: ~11 kg of cells at 5 Wh/kg (PHYSICS.md supercapacitor "
                                  "1-10 Wh/kg); GB300 PSU storage is ~4.7 kJ per rack",
                           per_rack=True)
    p_max_w: float = param(1.5e5, 0.0, 1e7, unit="W", doc="converter power limit per rack",
                           source="est: sized to a rack's full swing", per_rack=True)
    eta: float = param(0.97, 0.5, 1.0, unit="1", doc="one-way efficiency",
                       source="PHYSICS.md supercapacitor > 95 % efficient")
    soc_init: float = param(0.5, 0.0, 1.0, unit="1", doc="initial state of charge", source="est")


def dispatch(up: UltracapParams, e_j, p_rack_w, target_w, gain, allow_charge, h_s):
    """Capacitor power for one substep.

    **Arguments**: energy (R,), rack IT power (R,), bus-draw setpoint (R,),
    gain (R,), ``allow_charge`` (0/1, 0 during a bus outage), substep (s).

    **Returns**: ``(p_w, new_e_j, loss_w)``: power onto the bus (discharge
    positive, never more than the rack draws), new energy, conversion loss.
    """
    eta = up.eta
    p_dis_lim = jnp.minimum(up.p_max_w, jnp.maximum(e_j, 0.0) * eta / h_s)
    p_ch_lim = jnp.minimum(up.p_max_w, jnp.maximum(up.e_max_j - e_j, 0.0) / (eta * h_s))
    request = gain * (p_rack_w - target_w)
    p = jnp.clip(request, -p_ch_lim * allow_charge, jnp.minimum(p_dis_lim, p_rack_w))
    p_dis = jnp.maximum(p, 0.0)
    p_ch = jnp.maximum(-p, 0.0)
    new_e = e_j + h_s * (eta * p_ch - p_dis / eta)
    loss = p_dis * (1.0 / eta - 1.0) + p_ch * (1.0 - eta)
    return p, jnp.clip(new_e, 0.0, up.e_max_j), loss
