"""The one KPI accounting of a run: interval outputs folded into totals, totals into KPIs.

Every consumer computes its KPIs here: :func:`heatsync.physics.simulate` (from the
recorded series), the benchmark (from the env's per-step ``info``) and the training
callbacks (running totals per env, folded step by step on the host)::

    tot = empty_totals(n_envs)                   # or totals_of_series(series, p)
    add_interval(tot, info, p, mask=alive)       # one control interval, every env
    kpis = kpis_from_totals(p, s0, s1, take_row(tot, i))

The totals are NumPy float64 (sums of float32 steps lose nothing visible over a
day). Each KPI's meaning and unit is in :data:`KPI_DOC`.
"""

from __future__ import annotations

import numpy as np

from . import grid as _grid
from . import ups as _ups
from .plant import OUTPUTS, PER_RACK_OUTPUTS, Params, State, stored_energy_j, stored_heat_j
from .units import J_PER_KWH, W_PER_KW

__all__ = ["KPI_DOC", "TOTALED", "empty_totals", "add_interval", "totals_of_series", "take_row",
           "kpis_from_totals", "compute_kpis", "band_share_fft"]

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

#: the outputs the episode totals fold: the scalar ones (per-rack outputs are series only)
TOTALED = {k: v for k, v in OUTPUTS.items() if k not in PER_RACK_OUTPUTS}
_START = {"sum": 0.0, "mean": 0.0, "max": -np.inf, "min": np.inf}
_FOLD = {"sum": np.add, "mean": np.add, "max": np.maximum, "min": np.minimum}
#: totals kept beside the OUTPUTS: intervals counted, intervals ending below the O2 alarm
_COUNTS = ("steps", "o2_hazard_steps")


def empty_totals(n: int | None = None) -> dict[str, np.ndarray]:
    """Totals of no interval yet: one float64 entry per :data:`TOTALED` key (its fold's
    identity) plus ``steps`` and ``o2_hazard_steps``; shape ``(n,)`` or scalar."""
    shape = () if n is None else (int(n),)
    tot = {k: np.full(shape, _START[how]) for k, (how, _) in TOTALED.items()}
    tot.update({k: np.zeros(shape) for k in _COUNTS})
    return tot


def add_interval(tot: dict, out: dict, p: Params, mask=None) -> dict:
    """Fold one control interval into ``tot`` in place (and return it).

    **Arguments**: ``out`` holds every :data:`TOTALED` key and ``o2_frac`` (the room
    oxygen at the interval's end), scalars or batched like ``tot``; ``mask`` (bool,
    batched) leaves the rows where it is false unchanged (ended episodes).
    """
    keep = None if mask is None else np.asarray(mask, bool)
    alarm = float(p.ln2.o2_alarm_frac)
    for k, (how, _) in TOTALED.items():
        new = _FOLD[how](tot[k], np.asarray(out[k], np.float64))
        tot[k] = new if keep is None else np.where(keep, new, tot[k])
    add = {"steps": 1.0, "o2_hazard_steps": (np.asarray(out["o2_frac"]) < alarm) * 1.0}
    for k, v in add.items():
        tot[k] = tot[k] + (v if keep is None else np.where(keep, v, 0.0))
    return tot


def totals_of_series(series: dict, p: Params) -> dict[str, float]:
    """Totals of a recorded run (a leading time axis on each series)."""
    tot = {}
    for k, (how, _) in TOTALED.items():
        v = np.asarray(series[k], np.float64)
        tot[k] = float(v.sum() if how in ("sum", "mean") else v.max() if how == "max"
                       else v.min())
    tot["steps"] = float(len(series["t_s"]))
    tot["o2_hazard_steps"] = float(np.sum(np.asarray(series["o2_frac"])
                                          < float(p.ln2.o2_alarm_frac)))
    return tot


def take_row(tot: dict, i: int) -> dict[str, float]:
    """Row ``i`` of batched totals."""
    return {k: float(np.asarray(v)[i]) for k, v in tot.items()}


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


def _cycles(p: Params, s: State) -> float:
    return float(s.ups.cycle_life_used) + float(_ups.pending_half_cycle(p.ups, s.ups))


def kpis_from_totals(p: Params, s0: State, s1: State, tot: dict,
                     p_grid_sub_w=None) -> dict[str, float]:
    """Every KPI of :data:`KPI_DOC` from a run's totals and its first and last plant
    states (one env: scalar totals, NumPy or JAX states). ``p_grid_sub_w``, the
    substep grid series, gives ``band_share_fft`` (NaN without it)."""
    dt = float(p.dt_s)
    duration = tot["steps"] * dt
    e_in = tot["e_grid_j"] + tot["e_gen_j"]
    d_store = float(stored_energy_j(p, s1)) - float(stored_energy_j(p, s0))
    e_out = tot["e_it_j"] + tot["e_cool_j"] + tot["e_loss_j"] + d_store
    q_prod = tot["q_it_j"]
    d_heat = float(stored_heat_j(p, s1)) - float(stored_heat_j(p, s0))
    q_out = tot["q_air_j"] + tot["q_dry_j"] + tot["q_chiller_j"] + tot["q_ln2_j"] + d_heat
    peak_w = float(_grid.peak_demand_w(s1.grid))
    cost_demand = float(_grid.demand_charge_usd(p.grid, peak_w, duration))
    cost_total = tot["cost_energy_usd"] + cost_demand + tot["cost_ln2_usd"] \
        + tot["cost_water_usd"]
    cyc = _cycles(p, s1) - (_cycles(p, s0) if float(s0.n_steps) > 0 else 0.0)
    e_it = max(tot["e_it_j"], 1e-12)
    uc_cap = float(np.sum(np.asarray(p.ultracap.e_max_j) * np.ones(p.n_racks)))
    nominal = tot["work_nominal_rack_s"]
    fft = (float("nan") if p_grid_sub_w is None
           else band_share_fft(np.asarray(p_grid_sub_w).reshape(-1), float(p.h_s)))
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
        "peak_demand_kw": peak_w / W_PER_KW,
        "p_grid_max_kw": tot["p_grid_max_w"] / W_PER_KW,
        "ramp_max_w_per_s": tot["ramp_max_w_per_s"],
        "ramp_violation_s": tot["ramp_violation_s"],
        "contract_excess_kwh": tot["e_contract_excess_j"] / J_PER_KWH,
        "band_share": float(_grid.band_share(s1.grid)),
        "band_share_fft": fft,
        "band_rms_w": float(_grid.band_rms_w(s1.grid)),
        "work_done_rack_s": tot["work_rack_s"],
        "work_lost_frac": 1.0 - tot["work_rack_s"] / max(nominal, 1e-12) if nominal > 0 else 0.0,
        "ups_life_used": cyc + float(s1.ups.calendar_life_used)
        - float(s0.ups.calendar_life_used),
        "ups_cycle_life_used": cyc,
        "ups_throughput_kwh": tot["ups_throughput_j"] / J_PER_KWH,
        "uc_equivalent_cycles": tot["uc_throughput_j"] / max(2.0 * uc_cap, 1e-12),
        "throttled_gpu_s": tot["throttled_gpu_s"],
        "trips": tot["trips"],
        "t_junction_max_c": tot["t_junction_max_c"],
        "t_supply_min_c": tot["t_supply_min_c"],
        "t_supply_max_c": tot["t_supply_max_c"],
        "overcool_k_s": tot["overcool_k_s"],
        "water_l": tot["water_l"],
        "ln2_used_kg": tot["ln2_used_kg"],
        "ln2_bought_kg": tot["ln2_bought_kg"],
        "o2_min_frac": tot["o2_min_frac"],
        "o2_hazard_s": tot["o2_hazard_steps"] * dt,
        "served_min_frac": tot["served_min_frac"],
        "energy_balance_rel_error": abs(e_in - e_out) / max(abs(e_in), 1e-12),
        "heat_balance_rel_error": abs(q_prod - q_out) / max(abs(q_prod), 1e-12),
    }
    assert set(k) == set(KPI_DOC), set(k) ^ set(KPI_DOC)
    return {name: float(v) for name, v in k.items()}


def compute_kpis(p: Params, s0: State, s1: State, series: dict) -> dict[str, float]:
    """KPIs of a recorded run from its per-interval series (every :data:`OUTPUTS` key,
    ``t_s``, ``o2_frac`` and ``p_grid_sub_w``) and its first and last states."""
    return kpis_from_totals(p, s0, s1, totals_of_series(series, p),
                            p_grid_sub_w=series.get("p_grid_sub_w"))
