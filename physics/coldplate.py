"""Cold plates: rack junction node to rack coolant node.

Per rack, the ``n_gpu`` packages are lumped: resistance ``R_gpu / n_gpu`` and
capacity ``C_gpu * n_gpu``. The convective part of the resistance rises as
flow falls, ``R = R_gpu * (flow / flow_rated)^-0.8`` (Dittus-Boelter), with a
floor on the flow ratio (natural convection). A share ``air_frac`` of rack heat
leaves to room air and is handled by air cooling (``cop_air``).

Nodes (PHYSICS.md couplings 3 and 5), each updated exactly over a substep:

* junction: ``C_j dT_j/dt = P_liquid - (T_j - T_c) / R(flow)``
* rack coolant (outlet) node: ``C_c dT_c/dt = Q_jc - m_dot c_p (T_c - T_sup)``
"""

from __future__ import annotations

import jax.numpy as jnp

from ._math import exp_node, pow_pos
from ._pytree import param, pytree_dataclass

__all__ = ["ColdPlateParams", "resistance_k_per_w", "step_rack"]


@pytree_dataclass
class ColdPlateParams:
    r_gpu_k_per_w: float = param(0.025, 0.005, 0.2, unit="K/W",
                                 doc="junction-to-coolant resistance per GPU at rated flow",
                                 source="PHYSICS.md cold plate 0.02-0.05 K/W (< 0.03 for 2.7 kW)",
                                 per_rack=True)
    c_gpu_j_per_k: float = param(16.7, 0.1, 1e4, unit="J/K",
                                 doc="junction-side capacity per GPU (tau = R C ~ 0.4 s)",
                                 source="PHYSICS.md die time constant 0.1-1 s (est)")
    flow_exponent: float = param(0.8, 0.0, 2.0, unit="1", doc="R ~ flow^-exponent",
                                 source="Dittus-Boelter (est)")
    flow_ratio_min: float = param(0.05, 1e-3, 1.0, unit="1",
                                  doc="flow ratio floor for the resistance (natural convection)",
                                  source="est")
    c_coolant_j_per_k: float = param(1.2e5, 1e2, 1e9, unit="J/K",
                                     doc="rack coolant and cold-plate capacity",
                                     source="PHYSICS.md cold plate time constant 5-30 s (est)")
    air_frac: float = param(0.1, 0.0, 1.0, unit="1", doc="share of rack heat to room air",
                            source="est (liquid-cooled racks reject ~85-95 % to liquid)")
    cop_air: float = param(4.0, 0.5, 20.0, unit="1", doc="air cooling COP", source="est")
    cp_coolant_j_per_kg_k: float = param(3900.0, 1000.0, 5000.0, unit="J/(kg K)",
                                         doc="coolant heat capacity (PG25)",
                                         source="PHYSICS.md PG25 (fluid data)")


def resistance_k_per_w(cp: ColdPlateParams, n_gpu, flow_ratio):
    """Rack junction-to-coolant resistance (K/W) at a flow ratio (flow / rated)."""
    ratio = jnp.maximum(flow_ratio, cp.flow_ratio_min)
    return cp.r_gpu_k_per_w / n_gpu * pow_pos(ratio, -cp.flow_exponent)


def step_rack(cp: ColdPlateParams, n_gpu, t_j_c, t_c_c, t_sup_c, p_liquid_w, q_direct_w,
              flow_kg_s, flow_ratio, h_s):
    """Advance junction and rack coolant nodes (R,) over a substep.

    ``p_liquid_w`` is GPU heat into the junction node; ``q_direct_w`` is liquid
    heat from the rest of the rack (CPUs, switches) straight into the coolant.

    **Returns**: ``(t_j, t_c, q_to_loop_j)``: new temperatures and the heat
    (J, relative to supply temperature) carried to the loop this substep.
    """
    g_jc = 1.0 / resistance_k_per_w(cp, n_gpu, flow_ratio)
    c_j = cp.c_gpu_j_per_k * n_gpu
    t_j, q_jc = exp_node(t_j_c, p_liquid_w, g_jc, t_c_c, c_j, h_s)
    g_flow = flow_kg_s * cp.cp_coolant_j_per_kg_k
    t_c, q_loop = exp_node(t_c_c, q_jc / h_s + q_direct_w, g_flow, t_sup_c,
                           cp.c_coolant_j_per_k, h_s)
    return t_j, t_c, q_loop
