"""Grid feed, backup generator, tariffs and power quality.

``P_grid = IT draw after buffers / eta_dist + cooling - UPS discharge``
(PHYSICS.md coupling 8, DESIGN.md component 5). During a grid outage the
generator picks the load up ``gen_start_s`` after the outage began; until then
the UPS carries the bus.

Power quality, online inside ``step``:

* the largest ramp ``|dP_grid/dt|`` between substeps (W/s);
* the share of the grid draw's spectral energy in the 0.1-20 Hz band: the
  energy of a first-order high-pass (corner ``band_low_hz``) of ``P_grid`` over
  the total energy of ``P_grid`` (its mean square, DC included, as in the
  criterion "<= 20 % of spectral energy in the band", PHYSICS.md). A flat draw
  scores 0; a square wave between 0 and P scores 0.5. Also the in-band RMS (W).
  Frequencies above the substep's Nyquist rate (5 Hz at 0.1 s) are not
  resolved, so the upper band edge is ``min(20 Hz, Nyquist)``.

Demand: the mean draw of each clock-aligned ``demand_window_s`` block (15 min);
the demand charge applies to the largest block mean, prorated by run length
over a 30-day month.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._pytree import param, pytree_dataclass, replace
from .units import SECONDS_PER_MONTH, W_PER_KW

__all__ = ["GridParams", "GridState", "init_grid", "update_quality", "close_demand_block",
           "band_share", "band_rms_w", "peak_demand_w", "demand_charge_usd"]


@pytree_dataclass
class GridParams:
    eta_dist: float = param(0.95, 0.5, 1.0, unit="1",
                            doc="efficiency from the UPS bus to rack DC (PDU, PSU)",
                            source="est (double-conversion UPS and PSU ~95-97 %)")
    contract_limit_w: float = param(1.5e6, 0.0, 1e10, unit="W", doc="contracted grid import",
                                    source="est: sized above the pod's peak")
    ramp_limit_w_per_s: float = param(1667.0, 0.0, 1e10, unit="W/s",
                                      doc="allowed grid ramp rate",
                                      source="PHYSICS.md 10 MW/min for a 150 MW site, scaled to "
                                             "the 1.5 MW contract")
    demand_charge_usd_per_kw_month: float = param(15.0, 0.0, 1000.0, unit="USD/kW-month",
                                                  doc="demand charge on the peak block mean",
                                                  source="PHYSICS.md NREL demand-charge survey")
    demand_window_s: float = param(900.0, 1.0, 86400.0, unit="s", doc="demand block",
                                   source="PHYSICS.md peak 15-minute mean")
    gen_start_s: float = param(30.0, 0.0, 3600.0, unit="s",
                               doc="generator start after an outage begins",
                               source="PHYSICS.md generator start 10-60 s (est)")
    gen_cost_usd_per_kwh: float = param(0.30, 0.0, 10.0, unit="USD/kWh",
                                        doc="generator fuel cost", source="est (diesel)")
    gen_carbon_g_per_kwh: float = param(700.0, 0.0, 2000.0, unit="g/kWh",
                                        doc="generator carbon intensity", source="est (diesel)")
    band_low_hz: float = param(0.1, 1e-3, 10.0, unit="Hz", doc="lower edge of the sensitive band",
                               source="PHYSICS.md sensitive band 0.1-20 Hz")
    band_rms_limit_w: float = param(3.0e4, 0.0, 1e10, unit="W",
                                    doc="utility specification: largest in-band (0.1-20 Hz) RMS "
                                        "of the grid draw",
                                    source="est: 2 % of the 1.5 MW contract; PHYSICS.md sensitive "
                                           "band 0.1-20 Hz (arXiv 2508.14318 asks <= 20 % of "
                                           "the spectral energy, which a 0.5 Hz square wave "
                                           "at 50 % duty between 40 % and 100 % already meets)")


@pytree_dataclass
class GridState:
    p_prev_w: jnp.ndarray  # grid draw at the previous substep
    hp_w: jnp.ndarray  # high-pass filter output
    started: jnp.ndarray  # 0 before the first substep
    band_w2s: jnp.ndarray  # integral of hp^2 dt
    total_w2s: jnp.ndarray  # integral of P^2 dt
    time_s: jnp.ndarray  # integral of dt
    ramp_max_w_per_s: jnp.ndarray
    block_j: jnp.ndarray  # energy in the current demand block
    block_s: jnp.ndarray  # time in the current demand block
    peak_block_w: jnp.ndarray  # largest completed block mean
    outage_s: jnp.ndarray  # time since the current outage began (0 with grid up)
    p_ups_target_prev_w: jnp.ndarray  # previous interval's UPS setpoint (ramped)


def init_grid() -> GridState:
    z = jnp.zeros((), dtype=jnp.result_type(float))
    return GridState(z, z, z, z, z, z, z, z, z, z, z, z)


def update_quality(gp: GridParams, gs: GridState, p_grid_w, h_s, connected=True) -> GridState:
    """Fold one substep's grid draw into the power-quality and demand accumulators.

    ``connected``: the grid was up on both sides of the substep. The loss of the grid
    and its return are source transfers, not oscillation or ramping: on such a substep
    the high-pass restarts from the new draw and no ramp is counted."""
    first = (gs.started < 0.5) | ~jnp.asarray(connected)
    p_prev = jnp.where(first, p_grid_w, gs.p_prev_w)
    tau = 1.0 / (2.0 * jnp.pi * gp.band_low_hz)
    a = tau / (tau + h_s)
    hp = jnp.where(first & (gs.started > 0.5), 0.0, a * (gs.hp_w + p_grid_w - p_prev))
    ramp = jnp.abs(p_grid_w - p_prev) / h_s
    return replace(
        gs,
        p_prev_w=p_grid_w,
        hp_w=hp,
        started=jnp.ones_like(gs.started),
        band_w2s=gs.band_w2s + hp * hp * h_s,
        total_w2s=gs.total_w2s + p_grid_w * p_grid_w * h_s,
        time_s=gs.time_s + h_s,
        ramp_max_w_per_s=jnp.maximum(gs.ramp_max_w_per_s, ramp),
    )


def close_demand_block(gp: GridParams, gs: GridState, e_grid_j, dt_s, n_steps) -> GridState:
    """Add one control interval's grid energy to the demand block; close the block
    every ``round(demand_window_s / dt_s)`` intervals (counted on the integer step
    counter, so block edges do not drift with rounding)."""
    per_block = jnp.maximum(jnp.round(gp.demand_window_s / dt_s), 1.0)
    block_j = gs.block_j + e_grid_j
    block_s = gs.block_s + dt_s
    full = jnp.mod(n_steps, per_block) < 0.5
    peak = jnp.where(full, jnp.maximum(gs.peak_block_w, block_j / block_s), gs.peak_block_w)
    return replace(gs, block_j=jnp.where(full, 0.0, block_j),
                   block_s=jnp.where(full, 0.0, block_s), peak_block_w=peak)


def band_share(gs: GridState):
    """Share of the grid draw's spectral energy (DC included) in the sensitive band."""
    return jnp.where(gs.total_w2s > 0, jnp.clip(gs.band_w2s / jnp.maximum(gs.total_w2s, 1e-30),
                                                0.0, 1.0), 0.0)


def band_rms_w(gs: GridState):
    """RMS of the grid draw's in-band (high-passed) component, W."""
    return jnp.sqrt(gs.band_w2s / jnp.maximum(gs.time_s, 1e-12))


def peak_demand_w(gs: GridState):
    """Largest block mean, counting the open block when no block has closed yet."""
    open_mean = gs.block_j / jnp.maximum(gs.block_s, 1e-12)
    return jnp.where(gs.peak_block_w > 0, gs.peak_block_w, open_mean)


def demand_charge_usd(gp: GridParams, peak_w, duration_s):
    """Demand charge of a peak draw ``peak_w`` (W) over ``duration_s``: the monthly
    charge per kW, prorated over a 30-day month (USD)."""
    return peak_w / W_PER_KW * gp.demand_charge_usd_per_kw_month * duration_s / SECONDS_PER_MONTH
