"""Observation pieces, their scales, and raw state values, shared by the tasks.

Each piece is a named array scaled to roughly unit range; tasks concatenate
the pieces they need (:func:`concat`) and clip to ``[-OBS_BOUND, OBS_BOUND]``.
The scales are documented beside each piece and in the env docstrings; the raw
values go to ``info`` (:func:`state_info`). Every piece reads the episode's own plant
and exogenous params (``state.plant_params``, ``state.exo_params``): sizes, limits and
prices differ between episodes of a scenario distribution.
"""

from __future__ import annotations

import jax.numpy as jnp

from heatsync.physics import DEFAULT_SUPPLY_SETPOINT_C, Params, rack_max_w, ups, workload
from heatsync.physics.exogenous import faults_active, hour_of_day
from heatsync.physics.grid import band_share, peak_demand_w
from heatsync.physics.units import SECONDS_PER_HOUR

from . import _queue as Q

__all__ = ["OBS_BOUND", "T_JUNCTION_REF_C", "T_JUNCTION_SPAN_K", "T_SUPPLY_REF_C", "T_SPAN_K",
           "AMBIENT_REF_C", "O2_AMBIENT", "O2_SPAN", "concat", "time_pieces", "exo_pieces",
           "grid_pieces", "rack_power_pieces", "storage_pieces", "thermal_pieces", "cryo_pieces",
           "queue_pieces", "memory_pieces", "fault_pieces", "schedule_pieces", "action_pieces",
           "state_info", "rack_it_w", "demand_estimate_w", "fault_active", "FAULT_CLOCK_S",
           "SCHEDULE_HORIZON_S"]

#: fault clocks are observed as time since the fault began / this, capped at 1
FAULT_CLOCK_S = 3600.0
#: job starts and stops are observed as time until them / this, capped at 1
SCHEDULE_HORIZON_S = 600.0

#: observations are clipped to this bound (the Box limits)
OBS_BOUND = 10.0
T_JUNCTION_REF_C, T_JUNCTION_SPAN_K = 60.0, 30.0
#: supply and facility water scaled around the default setpoint: (T - ref) / span
T_SUPPLY_REF_C, T_SPAN_K = DEFAULT_SUPPLY_SETPOINT_C, 10.0
AMBIENT_REF_C = 25.0
O2_AMBIENT, O2_SPAN = 0.209, 0.02


def concat(pieces):
    """Concatenate named pieces into one float32 vector, clipped to the Box."""
    flat = [jnp.reshape(jnp.asarray(v, jnp.float32), (-1,)) for _, v in pieces]
    return jnp.clip(jnp.concatenate(flat), -OBS_BOUND, OBS_BOUND)


def rack_it_w(p: Params, s):
    """Rack IT power now (W) (R,)."""
    on = (s.trip_s <= 0.0).astype(s.p_gpu_w.dtype)
    return p.gpu.n_gpu * s.p_gpu_w + p.gpu.p_other_w * on


def time_pieces(params, state):
    """``time_frac`` (step / episode length), ``hour_sin`` / ``hour_cos`` (time of day)."""
    ang = 2.0 * jnp.pi * hour_of_day(state.exo_params, state.plant.t_s) / 24.0
    return [("time_frac", state.t / jnp.maximum(params.episode_steps, 1)),
            ("hour_sin", jnp.sin(ang)), ("hour_cos", jnp.cos(ang))]


def exo_pieces(params, state, names=("ambient", "price", "carbon", "grid_up", "chiller_ok",
                                     "pump_ok")):
    """Exogenous inputs of the coming interval: ``ambient`` ((T - 25) / 10 K),
    ``price`` (/ peak price), ``carbon`` (/ mean intensity), fault flags 0/1."""
    e, xp = state.exo, state.exo_params
    table = {
        "ambient": (e.ambient_c - AMBIENT_REF_C) / T_SPAN_K,
        "price": e.price_usd_per_kwh / jnp.maximum(xp.price_peak_usd_per_kwh, 1e-9),
        "carbon": e.carbon_g_per_kwh / jnp.maximum(xp.carbon_mean_g_per_kwh, 1e-9),
        "grid_up": e.grid_up,
        "chiller_ok": e.chiller_ok,
        "pump_ok": e.pump_ok,
    }
    return [(k, table[k]) for k in names]


def grid_pieces(params, state, substeps=True):
    """Grid draw: ``p_grid`` (last interval mean / contract), ``p_grid_sub``
    (last interval's substep draws / contract), ``grid_hp`` (high-passed draw / the
    band's RMS limit), ``peak_demand`` (demand peak estimate / contract)."""
    p = state.plant_params
    c = jnp.maximum(p.grid.contract_limit_w, 1e-9)
    g = state.plant.grid
    out = [("p_grid", jnp.mean(state.p_grid_sub_w) / c)]
    if substeps:
        out.append(("p_grid_sub", state.p_grid_sub_w / c))
    out += [("grid_hp", g.hp_w / jnp.maximum(p.grid.band_rms_limit_w, 1e-9)),
            ("peak_demand", peak_demand_w(g) / c)]
    return out


def rack_power_pieces(params, state):
    """Per rack: ``p_rack`` (IT power / rack max), ``u_rack`` (GPU utilization
    the job asks for now), ``phase_sin`` / ``phase_cos`` (job iteration
    position; 0 for racks without a job)."""
    p, s = state.plant_params, state.plant
    ws = s.work
    u_compute, u_comm, running = workload.job_phase_view(ws, p.workload, state.exo.job_on)
    pos = Q.slot_position(ws)
    u_job = jnp.where(pos < ws.spec.duty, u_compute, u_comm)
    has = (ws.rack_job >= 0).astype(s.p_gpu_w.dtype) * workload.rack_view(ws, running)
    ang = 2.0 * jnp.pi * workload.rack_view(ws, pos)
    return [("p_rack", rack_it_w(p, s) / rack_max_w(p)),
            ("u_rack", workload.rack_view(ws, u_job)),
            ("phase_sin", jnp.sin(ang) * has), ("phase_cos", jnp.cos(ang) * has)]


def storage_pieces(params, state):
    """``uc_soc`` per rack and ``ups_soc`` (state of charge, 0-1)."""
    p, s = state.plant_params, state.plant
    return [("uc_soc", s.uc_e_j / jnp.maximum(p.ultracap.e_max_j, 1e-9)),
            ("ups_soc", s.ups.e_j / jnp.maximum(p.ups.e_max_j, 1e-9))]


def thermal_pieces(params, state, per_rack=True, outlets=False):
    """``t_junction`` per rack ((T - 60) / 30 K), ``tripped`` per rack 0/1, with
    ``outlets`` ``t_rack`` (each rack's coolant outlet, (T - 32) / 10 K), then
    ``t_supply`` ((T - 32) / 10 K), ``t_fw`` (facility water, same scale)."""
    s = state.plant
    out = []
    if per_rack:
        out += [("t_junction", (s.t_junction_c - T_JUNCTION_REF_C) / T_JUNCTION_SPAN_K),
                ("tripped", (s.trip_s > 0.0).astype(s.t_s.dtype))]
    if outlets:
        out.append(("t_rack", (s.t_rack_c - T_SUPPLY_REF_C) / T_SPAN_K))
    out += [("t_supply", (s.t_supply_c - T_SUPPLY_REF_C) / T_SPAN_K),
            ("t_fw", (s.t_fw_c - T_SUPPLY_REF_C) / T_SPAN_K)]
    return out


def cryo_pieces(params, state):
    """``ln2_tank`` (fill 0-1), ``o2`` ((O2 - 0.209) / 0.02; alarm near -0.7),
    ``ln2_order_pending`` 0/1."""
    p, s = state.plant_params, state.plant
    return [("ln2_tank", s.ln2.tank_kg / jnp.maximum(p.ln2.tank_capacity_kg, 1e-9)),
            ("o2", (s.ln2.o2_frac - O2_AMBIENT) / O2_SPAN),
            ("ln2_order_pending", (s.ln2.order_eta_s >= 0.0).astype(s.t_s.dtype))]


def queue_pieces(params, state):
    """Scheduling view. Per visible waiting job (Q): ``q_present``, ``q_racks``
    (/ R), ``q_duration`` (/ longest duration), ``q_period`` (/ 4 s), ``q_duty``,
    ``q_u_compute``, ``q_u_comm``, ``q_slack`` ((deadline - t) / longest
    duration), ``q_value``, ``q_fits`` (enough free racks). Per job slot (J):
    ``j_running``, ``j_racks`` (/ R), ``j_left`` (remaining share of the job),
    ``j_phase_sin`` / ``j_phase_cos``, ``j_slack``, ``j_value``. Then
    ``free_racks`` (/ R), ``waiting`` (/ table size), ``done`` (/ table size)."""
    p, s, qp, qs = state.plant_params, state.plant, params.queue, state.queue
    R = p.n_racks
    f = s.t_s.dtype
    dmax = jnp.maximum(qp.duration_max_s, 1e-9)
    idx, present = Q.visible(qp, qs, s.t_s)
    pres = present.astype(f)
    free = Q.free_racks(s.work, s.trip_s)
    n_free = jnp.sum(free)
    ws = s.work
    has = (qs.slot_job >= 0) & (ws.placed > 0.5)
    m = jnp.clip(qs.slot_job, 0)
    n_racks = jnp.sum(workload.membership(ws), axis=1).astype(f)
    left = 1.0 - (ws.iters + ws.phase) * ws.spec.period_s / jnp.maximum(qs.duration_s[m], 1e-9)
    ang = 2.0 * jnp.pi * Q.slot_position(ws)
    hf = has.astype(f)
    waiting = jnp.sum((qs.status == Q.WAITING) & (qs.arrival_s <= s.t_s))
    return [
        ("q_present", pres),
        ("q_racks", qs.racks[idx] / R * pres),
        ("q_duration", qs.duration_s[idx] / dmax * pres),
        ("q_period", qs.period_s[idx] / 4.0 * pres),
        ("q_duty", qs.duty[idx] * pres),
        ("q_u_compute", qs.u_compute[idx] * pres),
        ("q_u_comm", qs.u_comm[idx] * pres),
        ("q_slack", (qs.deadline_s[idx] - s.t_s) / dmax * pres),
        ("q_value", qs.value[idx] * pres),
        ("q_fits", (qs.racks[idx] <= n_free).astype(f) * pres),
        ("j_running", hf),
        ("j_racks", n_racks / R * hf),
        ("j_left", jnp.clip(left, 0.0, 1.0) * hf),
        ("j_phase_sin", jnp.sin(ang) * hf),
        ("j_phase_cos", jnp.cos(ang) * hf),
        ("j_slack", (qs.deadline_s[m] - s.t_s) / dmax * hf),
        ("j_value", qs.value[m] * hf),
        ("free_racks", n_free / R),
        ("waiting", waiting / qp.n_total),
        ("done", jnp.sum(qs.status == Q.DONE) / qp.n_total),
    ]


def state_info(params, state) -> dict:
    """Raw (physical) values of the state and the coming interval's inputs."""
    p, s, e = state.plant_params, state.plant, state.exo
    info = {
        "t_s": s.t_s,
        "step": state.t,
        "ambient_c": e.ambient_c,
        "price_usd_per_kwh": e.price_usd_per_kwh,
        "carbon_g_per_kwh": e.carbon_g_per_kwh,
        "grid_up": e.grid_up,
        "chiller_ok": e.chiller_ok,
        "pump_ok": e.pump_ok,
        "t_supply_c": s.t_supply_c,
        "t_fw_c": s.t_fw_c,
        "t_junction_c": s.t_junction_c,
        "p_rack_w": rack_it_w(p, s),
        "uc_soc": s.uc_e_j / jnp.maximum(p.ultracap.e_max_j, 1e-9),
        "ups_soc": s.ups.e_j / jnp.maximum(p.ups.e_max_j, 1e-9),
        "ln2_tank_kg": s.ln2.tank_kg,
        "ln2_order_pending": s.ln2.order_eta_s >= 0.0,
        "o2_frac": s.ln2.o2_frac,
        "racks_tripped": jnp.sum(s.trip_s > 0.0),
        "peak_demand_w": peak_demand_w(s.grid),
        "band_share": band_share(s.grid),
        "ramp_max_run_w_per_s": s.grid.ramp_max_w_per_s,
        "demand_mean_w": state.memory.demand_mean_w,
        "ups_target_w": state.memory.ups_target_w,
        "cost_usd": state.cost_usd,
        "violation_s": state.violation_s,
    }
    if state.queue is not None:
        qs = state.queue
        info["jobs_waiting"] = jnp.sum((qs.status == Q.WAITING) & (qs.arrival_s <= s.t_s))
        info["jobs_running"] = jnp.sum(qs.status == Q.RUNNING)
        info["jobs_done"] = jnp.sum(qs.status == Q.DONE)
    return info


def demand_estimate_w(p: Params, s, control):
    """A guess of the facility demand from the state alone (W): rack IT power through
    distribution, air cooling, the pump at the fixed speed (the running means start here)."""
    cp = p.coldplate
    it = jnp.sum(rack_it_w(p, s))
    return it / p.grid.eta_dist * (1.0 + cp.air_frac / cp.cop_air) \
        + p.cdu.pump_rated_w * control.pump_speed ** 3


def fault_active(state):
    """Whether a fault of each kind is active in the coming interval (bool (K,))."""
    return faults_active(state.exo_params, state.plant.t_s)


def memory_pieces(params, state):
    """The env's running means and the grid target: ``demand_mean`` (facility demand
    low-pass / contract), ``ups_target`` (grid-draw target last applied / contract),
    ``rack_mean`` (each rack's IT power low-pass / rack max), ``ups_reserve`` (UPS energy
    above its ride-through reserve / capacity), ``ups_size`` (capacity / contract for an
    hour), ``uc_size`` (capacity / (rack max x 1 s))."""
    p, s, m = state.plant_params, state.plant, state.memory
    c = jnp.maximum(p.grid.contract_limit_w, 1e-9)
    e_max = jnp.maximum(p.ups.e_max_j, 1e-9)
    return [("demand_mean", m.demand_mean_w / c), ("ups_target", m.ups_target_w / c),
            ("rack_mean", m.rack_mean_w / rack_max_w(p)),
            ("ups_reserve", (s.ups.e_j - ups.reserve_j(p.ups)) / e_max),
            ("ups_size", e_max / (c * SECONDS_PER_HOUR)),
            ("uc_size", jnp.mean(p.ultracap.e_max_j * jnp.ones((p.n_racks,)))
             / jnp.mean(rack_max_w(p) * jnp.ones((p.n_racks,))))]


def fault_pieces(params, state):
    """``fault_<kind>``: time since a fault of that kind began / 1 h (0: none active)."""
    clock = jnp.minimum(state.memory.fault_s / FAULT_CLOCK_S, 1.0)
    active = fault_active(state).astype(clock.dtype)
    return [("fault_clock", jnp.maximum(clock, 1e-3 * active))]


def schedule_pieces(params, state):
    """Per job slot (J): ``j_on`` (runs in the coming interval), ``j_share`` (its racks
    / R), ``j_start_in`` and ``j_stop_in`` (time until its scheduled start / stop / 10
    min, capped at 1; 0 once passed)."""
    p, xp, s = state.plant_params, state.exo_params, state.plant
    horizon = SCHEDULE_HORIZON_S
    start = jnp.clip((xp.job_start_s - s.t_s) / horizon, 0.0, 1.0)
    stop = jnp.clip((xp.job_stop_s - s.t_s) / horizon, 0.0, 1.0)
    placed = s.work.placed
    share = jnp.sum(workload.membership(s.work), axis=1) / p.n_racks
    return [("j_on", state.exo.job_on * placed), ("j_share", share * placed),
            ("j_start_in", start * placed), ("j_stop_in", stop * placed)]


def action_pieces(params, state):
    """``prev_action``: the agent's previous action (zeros at reset: the defaults)."""
    return [("prev_action", state.memory.prev_action)]
