"""The whole plant: composite Params / State / Action and ``step``.

``step(params, state, action, exo) -> (state, outputs)`` advances one control
interval ``dt_s`` as ``n_sub`` substeps under ``lax.scan``. Within a substep
the chain is, in order:

1. workload phase -> GPU utilization per rack;
2. clocks: throttle (junction temperature) and power cap, lockstep per job;
3. GPU power through the firmware floor / ramp limits -> rack IT power;
4. sources: grid, or generator ``gen_start_s`` after an outage begins; during
   a gap the UPS carries the UPS bus (IT, pumps, air cooling) and IT is shed
   if its limit is short (``served_frac``);
5. rack ultracapacitor on each rack's bus;
6. heat: junction -> rack coolant -> loop (CDU exchanger, LN2) -> facility
   water -> dry cooler / chiller; air share -> air cooling;
7. UPS dispatch and the grid draw; power-quality and demand accumulators;
8. trips, LN2 tank and deliveries, room oxygen, job progress.

Each stage runs under a ``jax.named_scope`` (``sources``, ``clocks``, ``gpu_power``,
``shedding``, ``ultracap``, ``heat``, ``ups_grid``, ``trips``, ``ln2``, ``jobs``,
``outputs``), so compiled HLO and profiles name the stage of every operation
(``scripts/perf.py`` section 6).

Storage setpoints (rack bus draw, grid draw) ramp linearly from the previous
interval's value over the substeps, as converters ramp their references.

``outputs`` is a dict of per-interval flows and extremes (see
:data:`OUTPUTS`); energies in J, heats in J, masses in kg, water in L.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from . import _math
from . import cdu as _cdu
from . import coldplate as _cp
from . import cryo as _cryo
from . import gpu as _gpu
from . import grid as _grid
from . import rejection as _rej
from . import ultracap as _uc
from . import ups as _ups
from . import workload as _wl
from ._pytree import param, pytree_dataclass, replace, static
from .exogenous import Exogenous
from .units import J_PER_KWH, L_PER_M3

__all__ = ["Params", "State", "Action", "OUTPUTS", "PER_RACK_OUTPUTS", "init_state",
           "default_action", "step", "clip_action", "actuator_ranges", "stored_energy_j",
           "stored_heat_j", "rack_max_w", "DEFAULT_SUPPLY_SETPOINT_C"]

#: coolant supply setpoint of the fixed controls and of a plant at rest (Blackwell W32
#: liquid-cooling class, PHYSICS.md "supply temperature")
DEFAULT_SUPPLY_SETPOINT_C = 32.0


def _sub(cls):
    return dataclasses.field(default_factory=cls, metadata=dict(static=False, sub=True))


@pytree_dataclass
class Params:
    """Every constant of the plant (units in field names or docstrings).

    Static sizes: ``n_racks`` R, ``n_jobs`` J (job slots), ``n_sub`` substeps.
    """

    n_racks: int = static(8, 1, 100000, doc="racks R")
    n_jobs: int = static(8, 1, 100000, doc="job slots J")
    n_sub: int = static(10, 1, 1000, doc="substeps per control interval")
    dt_s: float = param(1.0, 0.01, 60.0, unit="s", doc="control interval",
                        source="DESIGN.md (default 1 s)")
    workload: _wl.WorkloadParams = _sub(_wl.WorkloadParams)
    gpu: _gpu.GpuParams = _sub(_gpu.GpuParams)
    ultracap: _uc.UltracapParams = _sub(_uc.UltracapParams)
    ups: _ups.UpsParams = _sub(_ups.UpsParams)
    grid: _grid.GridParams = _sub(_grid.GridParams)
    coldplate: _cp.ColdPlateParams = _sub(_cp.ColdPlateParams)
    cdu: _cdu.CduParams = _sub(_cdu.CduParams)
    rejection: _rej.RejectionParams = _sub(_rej.RejectionParams)
    ln2: _cryo.Ln2Params = _sub(_cryo.Ln2Params)

    @property
    def h_s(self):
        """Substep length (s)."""
        return self.dt_s / self.n_sub


@pytree_dataclass
class Action:
    """Physical actuator settings held over one control interval.

    Per-rack fields have shape (R,). Values outside their ranges are clipped in
    :func:`clip_action` (ranges in the env docstrings and README).
    """

    gpu_cap_w: jnp.ndarray  # per-GPU power cap [cap_min_w, p_max_w]
    gpu_floor_frac: jnp.ndarray  # power floor, fraction of TDP [0, floor_max_frac]
    ramp_up_w_per_s: jnp.ndarray  # per GPU [ramp_min, ramp_max]
    ramp_down_w_per_s: jnp.ndarray  # per GPU [ramp_min, ramp_max]
    uc_target_w: jnp.ndarray  # rack bus draw setpoint [0, rack max]
    uc_gain: jnp.ndarray  # [0, 1]; 0 = capacitor idle
    ups_target_w: jnp.ndarray  # facility grid-draw setpoint [0, contract]
    ups_gain: jnp.ndarray  # [0, 1]; 0 = battery idle (still carries outages)
    pump_speed: jnp.ndarray  # [pump_speed_min, 1]
    supply_setpoint_c: jnp.ndarray  # [setpoint_min_c, setpoint_max_c]
    ln2_valve: jnp.ndarray  # [0, 1] share of the LN2 exchanger limit allowed
    ln2_order: jnp.ndarray  # > 0.5 orders a delivery (if none pending)


@pytree_dataclass
class State:
    t_s: jnp.ndarray
    n_steps: jnp.ndarray
    work: _wl.WorkloadState
    p_gpu_w: jnp.ndarray  # (R,) per-GPU power after smoothing
    trip_s: jnp.ndarray  # (R,) remaining down time of a tripped rack
    uc_e_j: jnp.ndarray  # (R,)
    uc_target_prev_w: jnp.ndarray  # (R,)
    ups: _ups.UpsState
    grid: _grid.GridState
    t_junction_c: jnp.ndarray  # (R,)
    t_rack_c: jnp.ndarray  # (R,) rack coolant outlet
    t_supply_c: jnp.ndarray
    t_fw_c: jnp.ndarray
    ln2: _cryo.Ln2State


def rack_max_w(p: Params):
    """Largest rack IT power (W) at full load, shape (R,) or scalar."""
    return p.gpu.n_gpu * p.gpu.p_max_w + p.gpu.p_other_w


def default_action(p: Params, **overrides) -> Action:
    """Fixed setpoints that do nothing clever: no cap, no floor, no ramp limit,
    storage idle, pump at 80 %, supply at :data:`DEFAULT_SUPPLY_SETPOINT_C`, LN2 closed."""
    f = jnp.result_type(float)
    r = jnp.ones((p.n_racks,), f)
    a = Action(
        gpu_cap_w=r * p.gpu.p_max_w,
        gpu_floor_frac=r * 0.0,
        ramp_up_w_per_s=r * p.gpu.ramp_max_w_per_s,
        ramp_down_w_per_s=r * p.gpu.ramp_max_w_per_s,
        uc_target_w=r * rack_max_w(p) * 0.5,
        uc_gain=r * 0.0,
        ups_target_w=jnp.asarray(0.0, f),
        ups_gain=jnp.asarray(0.0, f),
        pump_speed=jnp.asarray(0.8, f),
        supply_setpoint_c=jnp.asarray(DEFAULT_SUPPLY_SETPOINT_C, f),
        ln2_valve=jnp.asarray(0.0, f),
        ln2_order=jnp.asarray(0.0, f),
    )
    if overrides:
        a = replace(a, **{k: jnp.broadcast_to(jnp.asarray(v, f), jnp.shape(getattr(a, k)))
                          for k, v in overrides.items()})
    return a


def actuator_ranges(p: Params) -> dict:
    """The physical range ``(lo, hi)`` of every :class:`Action` field (the one
    declaration that clipping, scenario checks and the envs' action spaces read;
    per-rack bounds may be arrays of shape (R,))."""
    g = p.gpu
    return {
        "gpu_cap_w": (g.cap_min_w, g.p_max_w),
        "gpu_floor_frac": (0.0, g.floor_max_frac),
        "ramp_up_w_per_s": (g.ramp_min_w_per_s, g.ramp_max_w_per_s),
        "ramp_down_w_per_s": (g.ramp_min_w_per_s, g.ramp_max_w_per_s),
        "uc_target_w": (0.0, 1.5 * rack_max_w(p)),
        "uc_gain": (0.0, 1.0),
        "ups_target_w": (0.0, p.grid.contract_limit_w),
        "ups_gain": (0.0, 1.0),
        "pump_speed": (p.cdu.pump_speed_min, 1.0),
        "supply_setpoint_c": (p.cdu.setpoint_min_c, p.cdu.setpoint_max_c),
        "ln2_valve": (0.0, 1.0),
        "ln2_order": (0.0, 1.0),
    }


def clip_action(p: Params, a: Action) -> Action:
    """Clip every actuator into its physical range (:func:`actuator_ranges`)."""
    return Action(**{k: jnp.clip(getattr(a, k), lo, hi)
                     for k, (lo, hi) in actuator_ranges(p).items()})


def init_state(p: Params, work: _wl.WorkloadState,
               setpoint_c=DEFAULT_SUPPLY_SETPOINT_C) -> State:
    """Plant at rest: racks idle, loop at the supply setpoint, storage at its initial charge."""
    f = jnp.result_type(float)
    r = jnp.ones((p.n_racks,), f)
    z = jnp.zeros((), f)
    cp = p.coldplate
    t_sup = jnp.asarray(setpoint_c, f)
    p_idle_rack = p.gpu.n_gpu * p.gpu.p_idle_w + p.gpu.p_other_w
    flow_rack = p.cdu.flow_rated_kg_s * 0.8 / p.n_racks
    t_rack = t_sup + (1.0 - cp.air_frac) * p_idle_rack / (flow_rack * cp.cp_coolant_j_per_kg_k)
    t_j = t_rack + (1.0 - cp.air_frac) * p.gpu.n_gpu * p.gpu.p_idle_w * _cp.resistance_k_per_w(
        cp, p.gpu.n_gpu, 0.8)
    return State(
        t_s=z,
        n_steps=z,
        work=work,
        p_gpu_w=r * p.gpu.p_idle_w,
        trip_s=r * 0.0,
        uc_e_j=r * p.ultracap.soc_init * p.ultracap.e_max_j,
        uc_target_prev_w=r * 0.0,
        ups=_ups.init_ups(p.ups),
        grid=_grid.init_grid(),
        t_junction_c=r * t_j,
        t_rack_c=r * t_rack,
        t_supply_c=t_sup,
        t_fw_c=t_sup - p.cdu.approach_k,
        ln2=_cryo.init_ln2(p.ln2),
    )


def stored_energy_j(p: Params, s: State):
    """Electrical energy held in ultracapacitors and the UPS (J)."""
    return jnp.sum(s.uc_e_j) + s.ups.e_j


def stored_heat_j(p: Params, s: State):
    """Heat stored in the thermal nodes relative to 0 degC (J)."""
    cp = p.coldplate
    c_j = cp.c_gpu_j_per_k * p.gpu.n_gpu
    return (jnp.sum(c_j * s.t_junction_c) + jnp.sum(cp.c_coolant_j_per_k * s.t_rack_c)
            + p.cdu.c_loop_j_per_k * s.t_supply_c + p.rejection.c_fw_j_per_k * s.t_fw_c)


# name -> (aggregation over substeps, unit and meaning)
OUTPUTS: dict[str, tuple[str, str]] = {
    "e_grid_j": ("sum", "J drawn from the grid"),
    "e_gen_j": ("sum", "J from the backup generator"),
    "e_it_j": ("sum", "J consumed by racks (IT)"),
    "e_cool_j": ("sum", "J consumed by cooling (pump, air, dry cooler, chiller)"),
    "e_pump_j": ("sum", "J consumed by the CDU pump"),
    "e_chiller_j": ("sum", "J consumed by the chiller"),
    "e_dry_j": ("sum", "J consumed by dry-cooler fans"),
    "e_air_j": ("sum", "J consumed by air cooling"),
    "e_loss_j": ("sum", "J lost in distribution, UPS and ultracapacitor conversion"),
    "e_waste_j": ("sum", "J burnt by GPUs above their need (floor, slow ramp-down)"),
    "e_unserved_j": ("sum", "J of IT demand shed for lack of supply"),
    "e_contract_excess_j": ("sum", "J drawn above the contract limit"),
    "p_grid_mean_w": ("mean", "mean grid draw, W"),
    "p_grid_max_w": ("max", "largest grid draw, W"),
    "p_it_mean_w": ("mean", "mean IT power, W"),
    "p_it_max_w": ("max", "largest IT power, W"),
    "ramp_max_w_per_s": ("max", "largest grid ramp between substeps with the grid up on "
                                "both sides, W/s"),
    "ramp_violation_s": ("sum", "s with the grid ramp above its limit (grid up on both "
                                "sides of the substep)"),
    "q_it_j": ("sum", "J of heat produced (IT plus pump work)"),
    "q_air_j": ("sum", "J of heat rejected by air cooling"),
    "q_dry_j": ("sum", "J of heat rejected by the dry cooler"),
    "q_chiller_j": ("sum", "J of heat removed by the chiller"),
    "q_ln2_j": ("sum", "J of heat absorbed by LN2"),
    "work_rack_s": ("sum", "rack-s of work done at nominal pace"),
    "work_nominal_rack_s": ("sum", "rack-s scheduled (work at nominal pace)"),
    "throttled_gpu_s": ("sum", "GPU-s above the slowdown temperature"),
    "trips": ("sum", "racks tripped in the interval"),
    "t_junction_max_c": ("max", "hottest junction, degC"),
    "t_supply_min_c": ("min", "coldest supply, degC"),
    "t_supply_max_c": ("max", "warmest supply, degC"),
    "overcool_k_s": ("sum", "K-s of supply below the condensation floor"),
    "ln2_used_kg": ("sum", "kg of LN2 boiled in the exchanger"),
    "ln2_boil_kg": ("sum", "kg of LN2 lost to tank boil-off"),
    "ln2_bought_kg": ("sum", "kg of LN2 delivered (paid)"),
    "water_l": ("sum", "L evaporated by the cooling tower"),
    "o2_min_frac": ("min", "lowest room oxygen fraction"),
    "served_min_frac": ("min", "lowest share of IT demand served"),
    "cost_energy_usd": ("sum", "USD for grid and generator energy"),
    "cost_ln2_usd": ("sum", "USD for LN2 delivered"),
    "cost_water_usd": ("sum", "USD for water"),
    "carbon_kg": ("sum", "kg CO2 of grid and generator energy"),
    "uc_throughput_j": ("sum", "J through the ultracapacitors (both directions)"),
    "ups_throughput_j": ("sum", "J through the UPS battery (both directions)"),
    "e_ups_j": ("sum", "J the UPS delivered to the bus (charging counts negative)"),
    "p_rack_mean_w": ("mean", "mean IT power of each rack, W (shape (R,))"),
}


def substep(p: Params, a: Action, exo: Exogenous, prev_uc, prev_ups, s: State, k):
    """One integration substep of ``p.h_s`` seconds: :func:`step`'s scan body.

    ``prev_uc``/``prev_ups`` (W) are the storage setpoints of the previous control step,
    which ramp to ``a``'s over the ``p.n_sub`` substeps; ``k`` is this substep's index
    (float). Returns the next state and this substep's outputs. Public for profiling
    (``heatsync.perf``); a controller calls :func:`step`.
    """
    h = p.h_s
    g, cp, lp = p.gpu, p.coldplate, p.ln2
    f = s.t_supply_c.dtype
    # storage setpoint ramps; sources
    with jax.named_scope("sources"):
        alpha = (k + 1.0) / p.n_sub
        uc_target = prev_uc + alpha * (a.uc_target_w - prev_uc)
        ups_target = prev_ups + alpha * (a.ups_target_w - prev_ups)
        outage_before = s.grid.outage_s
        gen_on = (1.0 - exo.grid_up) * (outage_before >= p.grid.gen_start_s).astype(f)
        source_ok = jnp.maximum(exo.grid_up, gen_on)
        outage_s = jnp.where(exo.grid_up > 0.5, 0.0, outage_before + h)

    # workload and clocks: compute and communication parts of the substep
    with jax.named_scope("clocks"):
        ws = s.work
        u_c_job, u_m_job, running = _wl.job_phase_view(ws, p.workload, exo.job_on)
        member = _wl.membership(ws)
        on = (s.trip_s <= 0.0).astype(f)
        member_on = member & (on[None, :] > 0.5)
        u_c = _wl.rack_view(ws, u_c_job) * on
        u_m = _wl.rack_view(ws, u_m_job) * on
        f_cap_c = _gpu.clock_for_power(g, u_c, a.gpu_cap_w)
        f_cap_m = _gpu.clock_for_power(g, u_m, a.gpu_cap_w)
        c_est = _wl.rack_view(ws, _wl.occupancy(ws, _wl.job_min(member_on, f_cap_c), h)[0])
        # implicit throttle on the junction's mean temperature over the substep, which on
        # its exact exponential path is phi T0 + (1 - phi) T_eq, linear in GPU power
        flow, flow_ratio, p_pump = _cdu.pump(p.cdu, a.pump_speed, exo.pump_ok)
        g_jc = 1.0 / _cp.resistance_k_per_w(cp, g.n_gpu, flow_ratio)
        c_j = cp.c_gpu_j_per_k * g.n_gpu
        phi = _math.phi1(h * g_jc / c_j)
        t_drift = phi * s.t_junction_c + (1.0 - phi) * s.t_rack_c
        k_heat = (1.0 - phi) * (1.0 - cp.air_frac) * g.n_gpu * exo.load_scale / g_jc
        f_th = _gpu.throttle_implicit(g, s.t_junction_c, c_est * u_c + (1.0 - c_est) * u_m,
                                      t_drift, k_heat)
        f_c = jnp.minimum(f_th, f_cap_c)
        f_c_job = _wl.job_min(member_on, f_c)  # lockstep: each job at its slowest rack's clock
        f_c = jnp.minimum(f_c, _wl.rack_view(ws, f_c_job, fill=1.0))
        f_m = jnp.minimum(f_th, f_cap_m)
        c = _wl.rack_view(ws, _wl.occupancy(ws, f_c_job, h)[0])

    # GPU power through the firmware floor and ramp limits
    with jax.named_scope("gpu_power"):
        p_need_c = _gpu.demand_w(g, u_c, f_c)
        p_need_m = _gpu.demand_w(g, u_m, f_m)
        p_need = (c * p_need_c + (1.0 - c) * p_need_m) * on
        floor_w = a.gpu_floor_frac * g.p_max_w
        p_gpu, waste = _gpu.smooth_power(g, s.p_gpu_w, p_need, a.gpu_cap_w, floor_w,
                                         a.ramp_up_w_per_s, a.ramp_down_w_per_s, on, h)
        # a ramp-up limit below the need slows the compute part
        p_c_avail = (p_gpu - (1.0 - c) * p_need_m) / jnp.maximum(c, 1e-6)
        f_eff = jnp.where(c > 1e-6, jnp.minimum(f_c, _gpu.clock_for_power(g, u_c, p_c_avail)), f_c)
        f_job = _wl.job_min(member_on, f_eff)
        p_rack = (g.n_gpu * p_gpu + g.p_other_w * on) * exo.load_scale
        waste_w = jnp.sum(g.n_gpu * waste) * exo.load_scale

    # shed IT if the UPS cannot carry a gap
    with jax.named_scope("shedding"):
        p_dis_lim, _ = _ups.limits(p.ups, s.ups, h, source_ok)
        it_unit = jnp.sum(p_rack) * (1.0 / p.grid.eta_dist + cp.air_frac / cp.cop_air)
        pump_frac = jnp.where(source_ok > 0.5, 1.0,
                              jnp.clip(p_dis_lim / jnp.maximum(p_pump, 1e-9), 0.0, 1.0))
        p_pump = p_pump * pump_frac
        flow = flow * pump_frac
        flow_ratio = flow_ratio * pump_frac
        served = jnp.where(source_ok > 0.5, 1.0,
                           jnp.clip((p_dis_lim - p_pump) / jnp.maximum(it_unit, 1e-9), 0.0, 1.0))
        p_it = p_rack * served

    # rack ultracapacitors
    with jax.named_scope("ultracap"):
        p_uc, uc_e, uc_loss = _uc.dispatch(p.ultracap, s.uc_e_j, p_it, uc_target, a.uc_gain,
                                           source_ok, h)
        p_bus = p_it - p_uc

    # heat path
    with jax.named_scope("heat"):
        p_gpu_heat = g.n_gpu * p_gpu * exo.load_scale * served
        q_air = cp.air_frac * jnp.sum(p_it)
        p_air = q_air / cp.cop_air
        flow_rack = flow / p.n_racks
        t_j, t_c, q_loop = _cp.step_rack(cp, g.n_gpu, s.t_junction_c, s.t_rack_c, s.t_supply_c,
                                         (1.0 - cp.air_frac) * p_gpu_heat,
                                         (1.0 - cp.air_frac) * (p_it - p_gpu_heat),
                                         flow_rack, flow_ratio, h)
        q_in = jnp.sum(q_loop) / h + p_pump
        c_cool = flow * cp.cp_coolant_j_per_kg_k
        t_ret = jnp.mean(t_c)
        need = _cdu.demand_w(p.cdu, q_in, s.t_supply_c, a.supply_setpoint_c, h)
        q_hx = jnp.minimum(need, _cdu.hx_capacity_w(p.cdu, c_cool, t_ret, s.t_fw_c))
        q_ln2, m_ln2 = _cryo.exchange(lp, s.ln2.tank_kg, need - q_hx, a.ln2_valve, s.t_supply_c, h)
        t_sup = s.t_supply_c + h * (q_in - q_hx - q_ln2) / p.cdu.c_loop_j_per_k
        t_fw, q_dry, q_ch, p_dry, p_ch, water = _rej.reject(
            p.rejection, s.t_fw_c, q_hx, a.supply_setpoint_c - p.cdu.approach_k, exo.ambient_c,
            exo.chiller_ok, source_ok, h)

    # UPS and grid
    with jax.named_scope("ups_grid"):
        ups_bus = jnp.sum(p_bus) / p.grid.eta_dist + p_pump + p_air
        p_cool = p_pump + p_air + p_dry + p_ch
        demand = ups_bus + p_dry + p_ch
        p_b, ups_state, ups_loss = _ups.dispatch(p.ups, s.ups, demand, ups_bus, ups_target,
                                                 a.ups_gain, source_ok, h)
        p_source = jnp.maximum(demand - p_b, 0.0) * source_ok
        p_grid = p_source * exo.grid_up
        p_gen = p_source * (1.0 - exo.grid_up)
        dist_loss = jnp.sum(p_bus) * (1.0 / p.grid.eta_dist - 1.0)
        # the loss of the grid and its return are source transfers, not ramps
        connected = (exo.grid_up > 0.5) & (outage_before <= 0.0)
        gs = _grid.update_quality(p.grid, s.grid, p_grid, h, connected)
        gs = replace(gs, outage_s=outage_s)
        ramp = jnp.abs(p_grid - jnp.where(s.grid.started > 0.5, s.grid.p_prev_w, p_grid)) / h
        ramp = jnp.where(connected, ramp, 0.0)

    # trips, throttling
    with jax.named_scope("trips"):
        hot = (t_j > g.t_shutdown_c) & (on > 0.5)
        trip_s = jnp.where(hot, g.trip_recovery_s, jnp.maximum(s.trip_s - h, 0.0))
        # share of the substep above slowdown, on the junction's exact exponential path
        p_j = (1.0 - cp.air_frac) * p_gpu_heat
        above = _math.share_above(s.t_junction_c, t_j, s.t_rack_c + p_j / g_jc, c_j / g_jc,
                                  g.t_slowdown_c, h)
        throttled = jnp.sum(g.n_gpu * above * on) * h

    # LN2 tank, deliveries, oxygen
    with jax.named_scope("ln2"):
        first = (k == 0).astype(f)
        ln2_state, bought, boil, _ = _cryo.tank(lp, s.ln2, m_ln2, exo.ln2_delivery_kg * first,
                                                a.ln2_order * first, h)
        o2 = _cryo.oxygen(lp, s.ln2.o2_frac, m_ln2 * exo.leak_frac, h)
        ln2_state = replace(ln2_state, o2_frac=o2)

    # jobs
    with jax.named_scope("jobs"):
        stalled = jnp.any(member & (on[None, :] < 0.5), axis=1).astype(f)
        stalled = jnp.maximum(stalled, (served < 0.999).astype(f))
        ws, work, nominal = _wl.advance(ws, f_job, running, stalled, h)

    with jax.named_scope("outputs"):
        new = replace(
            s, work=ws, p_gpu_w=p_gpu, trip_s=trip_s, uc_e_j=uc_e, ups=ups_state,
            grid=gs, t_junction_c=t_j, t_rack_c=t_c, t_supply_c=t_sup, t_fw_c=t_fw, ln2=ln2_state)
        kwh = h / J_PER_KWH
        out = {
            "e_grid_j": p_grid * h,
            "e_gen_j": p_gen * h,
            "e_it_j": jnp.sum(p_it) * h,
            "e_cool_j": p_cool * h,
            "e_pump_j": p_pump * h,
            "e_chiller_j": p_ch * h,
            "e_dry_j": p_dry * h,
            "e_air_j": p_air * h,
            "e_loss_j": (dist_loss + jnp.sum(uc_loss) + ups_loss) * h,
            "e_waste_j": waste_w * served * h,
            "e_unserved_j": (1.0 - served) * jnp.sum(p_rack) * h,
            "e_contract_excess_j": jnp.maximum(p_grid - p.grid.contract_limit_w, 0.0) * h,
            "p_grid_mean_w": p_grid,
            "p_grid_max_w": p_grid,
            "p_it_mean_w": jnp.sum(p_it),
            "p_it_max_w": jnp.sum(p_it),
            "ramp_max_w_per_s": ramp,
            "ramp_violation_s": (ramp > p.grid.ramp_limit_w_per_s).astype(f) * h,
            "q_it_j": (jnp.sum(p_it) + p_pump) * h,
            "q_air_j": q_air * h,
            "q_dry_j": q_dry * h,
            "q_chiller_j": q_ch * h,
            "q_ln2_j": q_ln2 * h,
            "work_rack_s": jnp.sum(work),
            "work_nominal_rack_s": jnp.sum(nominal),
            "throttled_gpu_s": throttled,
            "trips": jnp.sum(hot.astype(f)),
            "t_junction_max_c": jnp.max(t_j),
            "t_supply_min_c": t_sup,
            "t_supply_max_c": t_sup,
            "overcool_k_s": jnp.maximum(p.cdu.condensation_floor_c - t_sup, 0.0) * h,
            "ln2_used_kg": m_ln2,
            "ln2_boil_kg": boil,
            "ln2_bought_kg": bought,
            "water_l": water,
            "o2_min_frac": o2,
            "served_min_frac": served,
            "cost_energy_usd": (p_grid * exo.price_usd_per_kwh
                                + p_gen * p.grid.gen_cost_usd_per_kwh) * kwh,
            "cost_ln2_usd": bought / lp.density_kg_m3 * L_PER_M3 * lp.price_usd_per_l,
            "cost_water_usd": water * p.rejection.water_usd_per_l,
            "carbon_kg": (p_grid * exo.carbon_g_per_kwh + p_gen * p.grid.gen_carbon_g_per_kwh)
            * kwh / 1000.0,  # g -> kg
            "uc_throughput_j": jnp.sum(jnp.abs(p_uc)) * h,
            "ups_throughput_j": jnp.abs(p_b) * h,
            "e_ups_j": p_b * h,
            "p_rack_mean_w": p_it,
            "p_grid_w": p_grid,
        }
    return new, out


#: outputs with one value per rack (R,); every other output is a scalar
PER_RACK_OUTPUTS = ("p_rack_mean_w",)

_FOLD = {"sum": jnp.add, "mean": jnp.add, "max": jnp.maximum, "min": jnp.minimum}
_INIT = {"sum": 0.0, "mean": 0.0, "max": -jnp.inf, "min": jnp.inf}


def step(p: Params, s: State, a: Action, exo: Exogenous):
    """Advance one control interval. Actions are clipped to their ranges first.

    **Returns**: ``(new_state, outputs)``; ``outputs`` holds every key of
    :data:`OUTPUTS` (aggregated over the interval) plus ``p_grid_sub_w``, the
    grid draw at each substep (n_sub,).
    """
    a = clip_action(p, a)
    first = s.n_steps < 0.5
    prev_uc = jnp.where(first, a.uc_target_w, s.uc_target_prev_w)
    prev_ups = jnp.where(first, a.ups_target_w, s.grid.p_ups_target_prev_w)

    init = {name: jnp.full((p.n_racks,) if name in PER_RACK_OUTPUTS else (), _INIT[how],
                           s.t_supply_c.dtype) for name, (how, _) in OUTPUTS.items()}

    def body(carry, k):
        state, acc = carry
        state, out = substep(p, a, exo, prev_uc, prev_ups, state, k)
        with jax.named_scope("accumulate"):
            acc = {name: _FOLD[how](acc[name], out[name]) for name, (how, _) in OUTPUTS.items()}
        return (state, acc), out["p_grid_w"]

    ks = jnp.arange(p.n_sub, dtype=s.t_supply_c.dtype)
    (s2, agg), p_sub = jax.lax.scan(body, (s, init), ks)
    agg = {name: v / p.n_sub if OUTPUTS[name][0] == "mean" else v for name, v in agg.items()}
    agg["p_grid_sub_w"] = p_sub
    n = s.n_steps + 1.0
    gs = _grid.close_demand_block(p.grid, s2.grid, agg["e_grid_j"], p.dt_s, n)
    s2 = replace(s2, t_s=n * p.dt_s, n_steps=n, uc_target_prev_w=a.uc_target_w,
                 grid=replace(gs, p_ups_target_prev_w=a.ups_target_w))
    return s2, agg
