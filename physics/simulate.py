"""Run the jitted plant over a scenario and compute its KPIs.

``simulate(scenario, actions=None, *, seed=0, steps=None)`` returns a
:class:`SimResult` with ``series`` (numpy arrays, one value per control
interval, SI units in the key) and ``kpis`` (floats). See README for every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import grid as _grid
from . import ups as _ups
from .exogenous import exogenous_at
from .plant import OUTPUTS, Action, Params, State, step, stored_energy_j, stored_heat_j
from .scenario import Scenario, load_scenario

__all__ = ["SimResult", "simulate", "rollout", "compute_kpis", "KPI_DOC", "SERIES_STATE"]

J_PER_KWH = 3.6e6
SECONDS_PER_MONTH = 30.0 * 86400.0

#: state snapshots recorded after each interval, with their meaning
SERIES_STATE = {
    "t_s": "time at the end of the interval, s",
    "t_supply_c": "coolant supply temperature, degC",
    "t_fw_c": "facility water temperature, degC",
    "t_junction_mean_c": "mean junction temperature over racks, degC",
    "uc_soc": "mean ultracapacitor state of charge, 1",
    "uc_soc_min": "lowest rack ultracapacitor state of charge, 1",
    "uc_soc_max": "highest rack ultracapacitor state of charge, 1",
    "ups_soc": "UPS state of charge, 1",
    "ln2_tank_kg": "LN2 in the tank, kg",
    "o2_frac": "room oxygen fraction, 1",
    "ambient_c": "ambient temperature, degC",
    "price_usd_per_kwh": "energy price, USD/kWh",
    "carbon_g_per_kwh": "grid carbon intensity, g/kWh",
    "grid_up": "grid present, 0/1",
    "racks_tripped": "racks down after a trip, 1",
}


def _snapshot(p: Params, s: State, exo) -> dict:
    soc = s.uc_e_j / jnp.maximum(p.ultracap.e_max_j, 1e-9)
    return {
        "t_s": s.t_s,
        "t_supply_c": s.t_supply_c,
        "t_fw_c": s.t_fw_c,
        "t_junction_mean_c": jnp.mean(s.t_junction_c),
        "uc_soc": jnp.mean(soc),
        "uc_soc_min": jnp.min(soc),
        "uc_soc_max": jnp.max(soc),
        "ups_soc": s.ups.e_j / p.ups.e_max_j,
        "ln2_tank_kg": s.ln2.tank_kg,
        "o2_frac": s.ln2.o2_frac,
        "ambient_c": exo.ambient_c,
        "price_usd_per_kwh": exo.price_usd_per_kwh,
        "carbon_g_per_kwh": exo.carbon_g_per_kwh,
        "grid_up": exo.grid_up,
        "racks_tripped": jnp.sum((s.trip_s > 0).astype(s.t_s.dtype)),
    }


PolicyFn = Callable[[Params, State, Any], Action]


@partial(jax.jit, static_argnames=("n_steps", "policy", "record"))
def rollout(params: Params, exo_params, state: State, key, actions, n_steps: int,
            policy: PolicyFn | None = None, record: bool = True):
    """Advance ``n_steps`` control intervals under ``lax.scan``.

    **Arguments**: ``actions`` is an :class:`Action` with a leading time axis
    (``n_steps``) or ``None`` when ``policy(params, state, exo) -> Action`` (a
    pure JAX function, static) chooses them; ``record`` keeps per-step series.

    **Returns**: ``(final_state, series)``; ``series`` maps output and state
    names to arrays with a leading time axis (empty dict if not ``record``).
    """

    def body(s, a_t):
        with jax.named_scope("exogenous"):
            exo = exogenous_at(exo_params, key, s.t_s, params.dt_s)
        a = policy(params, s, exo) if policy is not None else a_t
        s2, out = step(params, s, a, exo)
        if not record:
            return s2, None
        return s2, {**out, **_snapshot(params, s2, exo)}

    xs = actions if policy is None else None
    final, series = jax.lax.scan(body, state, xs, length=n_steps)
    return final, (series if record else {})


@dataclasses.dataclass
class SimResult:
    """Result of :func:`simulate`: ``series`` (per interval), ``kpis``, ``final_state``."""

    series: dict[str, np.ndarray]
    kpis: dict[str, float]
    final_state: Any
    initial_state: Any
    scenario: Scenario


def _actions_over_time(scenario: Scenario, actions, steps: int):
    if actions is None:
        actions = scenario.control
    if isinstance(actions, Action):
        lead = np.ndim(actions.pump_speed)
        if lead == 0:
            return jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(jnp.asarray(x), (steps,) + jnp.shape(x)), actions)
        if np.shape(actions.pump_speed)[0] != steps:
            raise ValueError(f"actions: leading time axis has {np.shape(actions.pump_speed)[0]}"
                             f" steps, expected steps = {steps}")
        return actions
    raise TypeError("actions must be None, an Action, an Action with a leading time axis, or a "
                    "policy function (params, state, exo) -> Action")


def simulate(scenario="default", actions=None, *, seed: int = 0, steps: int | None = None,
             record: bool = True, state: State | None = None) -> SimResult:
    """Simulate a scenario with fixed, given or policy-chosen actions.

    **Arguments**:

    - ``scenario``: a name, a YAML path or a :class:`Scenario`.
    - ``actions``: ``None`` (the scenario's fixed ``control`` setpoints), an
      :class:`Action` held constant, an :class:`Action` with a leading time
      axis of length ``steps``, or a pure function ``(params, state, exo) ->
      Action`` evaluated inside the jitted scan.
    - ``seed``: PRNG seed for the exogenous noise.
    - ``steps``: control intervals to run (default: the scenario's episode).
    - ``state``: continue from this plant state (e.g. a previous result's
      ``final_state``) instead of the scenario's initial state; energies, costs,
      balances and ageing then cover only this run, while peak demand, band share
      and the largest ramp are the plant state's running figures since its start.

    **Returns**: :class:`SimResult` with ``.series`` and ``.kpis``.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    steps = int(sc.episode_steps if steps is None else steps)
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    key = jax.random.PRNGKey(seed)
    s0 = sc.init_state() if state is None else state
    if callable(actions) and not isinstance(actions, Action):
        final, series = rollout(sc.params, sc.exo, s0, key, None, steps, policy=actions,
                                record=record)
    else:
        acts = _actions_over_time(sc, actions, steps)
        final, series = rollout(sc.params, sc.exo, s0, key, acts, steps, record=record)
    series = {k: np.asarray(v) for k, v in series.items()}
    kpis = compute_kpis(sc.params, s0, final, series) if record else {}
    return SimResult(series=series, kpis=kpis, final_state=final, initial_state=s0, scenario=sc)


KPI_DOC: dict[str, str] = {
    "duration_s": "simulated time, s",
    "energy_grid_kwh": "energy from the grid, kWh",
    "energy_gen_kwh": "energy from the generator, kWh",
    "energy_it_kwh": "IT energy, kWh",
    "energy_cooling_kwh": "cooling energy (pump, air, dry cooler, chiller), kWh",
    "energy_loss_kwh": "conversion losses, kWh",
    "energy_waste_kwh": "GPU energy above need (floor, slow ramp-down), kWh",
    "energy_unserved_kwh": "IT demand shed for lack of supply, kWh",
    "pue": "power usage effectiveness (IT + cooling + losses) / IT",
    "cost_energy_usd": "energy cost (grid at the tariff, generator fuel), USD",
    "cost_demand_usd": "demand charge on the peak 15-min mean, prorated over 30 days, USD",
    "cost_ln2_usd": "LN2 bought, USD",
    "cost_water_usd": "water, USD",
    "cost_total_usd": "sum of the costs, USD",
    "carbon_kg": "CO2 of grid and generator energy, kg",
    "peak_demand_kw": "largest 15-min mean grid draw, kW",
    "p_grid_max_kw": "largest grid draw at substep resolution, kW",
    "ramp_max_w_per_s": "largest grid ramp between substeps, W/s",
    "ramp_violation_s": "time with the grid ramp above the limit, s",
    "contract_excess_kwh": "energy above the contract limit, kWh",
    "band_share": "share of the grid draw's spectral energy (DC included) in 0.1-20 Hz, "
                  "online first-order high-pass, 1",
    "band_share_fft": "same share from an FFT of the substep series (sharp band edges), 1",
    "band_rms_w": "RMS of the grid draw's in-band component, W",
    "work_done_rack_s": "work at nominal pace, rack-s",
    "work_lost_frac": "share of scheduled work not done, 1",
    "ups_life_used": "UPS life used (cycle + calendar), 1 = end of life",
    "ups_cycle_life_used": "UPS cycle life used, 1",
    "ups_throughput_kwh": "energy through the UPS battery, kWh",
    "uc_equivalent_cycles": "ultracapacitor full cycles (throughput / 2 E_max), 1",
    "throttled_gpu_s": "GPU-s above the slowdown temperature",
    "trips": "rack trips, count",
    "t_junction_max_c": "hottest junction, degC",
    "t_supply_min_c": "coldest coolant supply, degC",
    "t_supply_max_c": "warmest coolant supply, degC",
    "overcool_k_s": "supply below the condensation floor, K-s",
    "water_l": "cooling-tower water, L",
    "ln2_used_kg": "LN2 boiled in the exchanger, kg",
    "ln2_bought_kg": "LN2 delivered, kg",
    "o2_min_frac": "lowest room oxygen fraction, 1",
    "o2_hazard_s": "time with oxygen below the alarm level, s",
    "served_min_frac": "lowest share of IT demand served, 1",
    "energy_balance_rel_error": "|grid + gen - IT - cooling - losses - d(stored)| / (grid + gen)",
    "heat_balance_rel_error": "|heat produced - rejected - d(stored heat)| / heat produced",
}


def band_share_fft(p_w: np.ndarray, h_s: float, lo_hz=0.1, hi_hz=20.0) -> float:
    """Share of a uniformly sampled power series' spectral energy (DC included) in
    [lo, hi] Hz, by FFT (one-sided spectrum, Parseval-weighted)."""
    x = np.asarray(p_w, dtype=np.float64)
    if x.size < 4:
        return 0.0
    spec = np.abs(np.fft.rfft(x)) ** 2
    weight = np.full(spec.size, 2.0)
    weight[0] = 1.0
    if x.size % 2 == 0:
        weight[-1] = 1.0
    spec = spec * weight
    freq = np.fft.rfftfreq(x.size, d=h_s)
    total = spec.sum()
    if total <= 0:
        return 0.0
    return float(spec[(freq >= lo_hz) & (freq <= hi_hz)].sum() / total)


def compute_kpis(p: Params, s0: State, s1: State, series: dict) -> dict[str, float]:
    """KPIs of a run from its per-interval series and its first and last states."""
    tot = {k: float(np.sum(np.asarray(series[k], dtype=np.float64)))
           for k, (how, _) in OUTPUTS.items() if how == "sum"}
    duration = float(len(series["t_s"]) * float(p.dt_s))
    e_in = tot["e_grid_j"] + tot["e_gen_j"]
    d_store = float(stored_energy_j(p, s1)) - float(stored_energy_j(p, s0))
    e_out = tot["e_it_j"] + tot["e_cool_j"] + tot["e_loss_j"] + d_store
    q_prod = tot["q_it_j"]
    d_heat = float(stored_heat_j(p, s1)) - float(stored_heat_j(p, s0))
    q_out = tot["q_air_j"] + tot["q_dry_j"] + tot["q_chiller_j"] + tot["q_ln2_j"] + d_heat
    peak_w = float(_grid.peak_demand_w(s1.grid))
    cost_demand = peak_w / 1000.0 * float(p.grid.demand_charge_usd_per_kw_month) \
        * duration / SECONDS_PER_MONTH
    cost_total = tot["cost_energy_usd"] + cost_demand + tot["cost_ln2_usd"] \
        + tot["cost_water_usd"]
    def cycles(st):
        return float(st.ups.cycle_life_used) + float(_ups.pending_half_cycle(p.ups, st.ups))

    cyc = cycles(s1) - (cycles(s0) if float(s0.n_steps) > 0 else 0.0)
    e_it = max(tot["e_it_j"], 1e-12)
    uc_cap = float(np.sum(np.asarray(p.ultracap.e_max_j) * np.ones(p.n_racks)))
    fine = np.asarray(series["p_grid_sub_w"]).reshape(-1)
    k = {
        "duration_s": duration,
        "energy_grid_kwh": tot["e_grid_j"] / J_PER_KWH,
        "energy_gen_kwh": tot["e_gen_j"] / J_PER_KWH,
        "energy_it_kwh": tot["e_it_j"] / J_PER_KWH,
        "energy_cooling_kwh": tot["e_cool_j"] / J_PER_KWH,
        "energy_loss_kwh": tot["e_loss_j"] / J_PER_KWH,
        "energy_waste_kwh": tot["e_waste_j"] / J_PER_KWH,
        "energy_unserved_kwh": tot["e_unserved_j"] / J_PER_KWH,
        "pue": (tot["e_it_j"] + tot["e_cool_j"] + tot["e_loss_j"]) / e_it,
        "cost_energy_usd": tot["cost_energy_usd"],
        "cost_demand_usd": cost_demand,
        "cost_ln2_usd": tot["cost_ln2_usd"],
        "cost_water_usd": tot["cost_water_usd"],
        "cost_total_usd": cost_total,
        "carbon_kg": tot["carbon_kg"],
        "peak_demand_kw": peak_w / 1000.0,
        "p_grid_max_kw": float(np.max(series["p_grid_max_w"])) / 1000.0,
        "ramp_max_w_per_s": float(np.max(series["ramp_max_w_per_s"])),
        "ramp_violation_s": tot["ramp_violation_s"],
        "contract_excess_kwh": tot["e_contract_excess_j"] / J_PER_KWH,
        "band_share": float(_grid.band_share(s1.grid)),
        "band_share_fft": band_share_fft(fine, float(p.h_s)),
        "band_rms_w": float(_grid.band_rms_w(s1.grid)),
        "work_done_rack_s": tot["work_rack_s"],
        "work_lost_frac": 1.0 - tot["work_rack_s"] / max(tot["work_nominal_rack_s"], 1e-12)
        if tot["work_nominal_rack_s"] > 0 else 0.0,
        "ups_life_used": cyc + float(s1.ups.calendar_life_used)
        - float(s0.ups.calendar_life_used),
        "ups_cycle_life_used": cyc,
        "ups_throughput_kwh": tot["ups_throughput_j"] / J_PER_KWH,
        "uc_equivalent_cycles": tot["uc_throughput_j"] / max(2.0 * uc_cap, 1e-12),
        "throttled_gpu_s": tot["throttled_gpu_s"],
        "trips": tot["trips"],
        "t_junction_max_c": float(np.max(series["t_junction_max_c"])),
        "t_supply_min_c": float(np.min(series["t_supply_min_c"])),
        "t_supply_max_c": float(np.max(series["t_supply_max_c"])),
        "overcool_k_s": tot["overcool_k_s"],
        "water_l": tot["water_l"],
        "ln2_used_kg": tot["ln2_used_kg"],
        "ln2_bought_kg": tot["ln2_bought_kg"],
        "o2_min_frac": float(np.min(series["o2_min_frac"])),
        "o2_hazard_s": float(np.sum(np.asarray(series["o2_frac"]) < float(p.ln2.o2_alarm_frac))
                             * float(p.dt_s)),
        "served_min_frac": float(np.min(series["served_min_frac"])),
        "energy_balance_rel_error": abs(e_in - e_out) / max(abs(e_in), 1e-12),
        "heat_balance_rel_error": abs(q_prod - q_out) / max(abs(q_prod), 1e-12),
    }
    assert set(k) == set(KPI_DOC), set(k) ^ set(KPI_DOC)
    return k
