"""The reward: one object per task, used by the env's ``step`` and by any planner.

Each term is a non-negative, dimensionless cost per control interval, scaled
so that a weight of 1 gives values of order 0.1-1 for typical behaviour
(``work_value`` is the one benefit). A task's reward is
``sum(sign * weight * term)`` over the terms its :class:`Reward` names, with the
weights from the scenario's ``reward`` section (:data:`REWARD_KEYS`, validated by
:mod:`heatsync.envs.config`).

=============  ===================================================  ===========================
term           definition per interval                              normalizer (default pod)
=============  ===================================================  ===========================
energy_cost    grid + generator energy cost, USD / usd_ref          ``usd_ref``: contract limit
                                                                    for one interval at the peak
                                                                    price (1.5 MW, 0.12 $/kWh:
                                                                    0.05 USD)
demand         demand-charge rent on the running peak estimate      usd_ref
               (max of closed 15-min block means and the open
               block's energy over the window), prorated per s
carbon         kg CO2 / carbon_ref_kg                               contract limit for one
                                                                    interval at the mean
                                                                    intensity (0.19 kg)
lost_work      scheduled rack-s not done (throttle, cap, stall,     ``work_ref``: R rack-s
               checkpoint) / work_ref                               per interval
waste          GPU energy above need (floor, slow ramp-down)        ``energy_ref``: pod IT
               / energy_ref                                         maximum for one interval
                                                                    (8 x 126 kW x 1 s)
ramp           mean over substeps of the grid ramp above its        ``ramp_ref``: contract limit
               limit, W/s / ramp_ref                                per second (1.5 MW/s)
band           RMS of the 0.1 Hz high-passed grid draw over the     ``band_ref``: 20 % of the
               interval / band_ref                                  contract limit (300 kW)
storage_wear   UPS life used (cycle + calendar, the plant's aging   ``wear_ref``: 1e-6 of a
               model) + ultracapacitor full cycles / cycle life,    device life per interval
               / wear_ref
throttle       GPU-s above the slowdown temperature / gpu_ref       R x GPUs per rack x dt
overcool       K-s of supply below the condensation floor           1 K for one interval
               / overcool_ref
ln2            LN2 consumed (bought - change in the tank) kg        LN2 that absorbs the pod's
               / ln2_ref_kg                                         IT maximum for one interval
                                                                    (2.3 kg)
water          cooling-tower water, L / water_ref_l                 tower water for the pod's
                                                                    IT maximum (0.31 L)
unserved       IT energy shed / energy_ref (+ the terminal          energy_ref
               charge where a task terminates on it)
trip           terminal: (1 + steps left) x terminal_per_step       per remaining step
hazard         terminal: (1 + steps left) x terminal_per_step       per remaining step
work_value     + value-weighted rack-s of progress / work_ref       work_ref
deadline       rack share of jobs past their deadline               R racks
=============  ===================================================  ===========================

The terminal charge makes ending an episode early never pay: it costs as much
as the rest of the episode at ``terminal_per_step`` = 2 per step, about twice
a typical step's cost at default weights (the do-nothing controllers of the
default scenarios cost 0.5-1.5 per step).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from heatsync.physics import Params, State, grid, param, pytree_dataclass, rack_max_w, ups
from heatsync.physics.cryo import heat_per_kg
from heatsync.physics.exogenous import ExoParams
from heatsync.physics.units import J_PER_KWH

from . import _queue as Q

__all__ = ["REWARD_KEYS", "BENEFITS", "Normalizers", "default_normalizers", "Reward",
           "cost_terms", "termination_flags", "ramp_excess_w_per_s", "band_rms_w"]

#: reward weights a scenario may set (each multiplies a term), with their defaults
REWARD_KEYS = {
    "energy_cost": 1.0, "demand": 1.0, "carbon": 0.0, "lost_work": 1.0, "waste": 1.0,
    "ramp": 1.0, "band": 1.0, "storage_wear": 1.0, "throttle": 1.0, "overcool": 1.0,
    "ln2": 1.0, "water": 1.0, "trip": 1.0, "hazard": 1.0, "work_value": 1.0,
    "deadline": 1.0, "unserved": 1.0,
}

#: reward terms that add to the reward (all others subtract)
BENEFITS = ("work_value",)


@pytree_dataclass
class Normalizers:
    """Scales that make each cost term dimensionless and of order 0.1-1 per interval."""

    usd_ref: float = param(0.05, 0.0, None, unit="USD",
                           doc="contract limit for one interval at the peak price")
    carbon_ref_kg: float = param(0.19, 0.0, None, unit="kg",
                                 doc="contract limit for one interval at the mean intensity")
    energy_ref_j: float = param(1.0e6, 0.0, None, unit="J",
                                doc="pod IT maximum (R x rack max) for one interval")
    work_ref_rack_s: float = param(8.0, 0.0, None, unit="rack-s", doc="R rack-s per interval")
    ramp_ref_w_per_s: float = param(1.5e6, 0.0, None, unit="W/s",
                                    doc="contract limit per second")
    band_ref_w: float = param(3.0e5, 0.0, None, unit="W", doc="20 % of the contract limit")
    wear_ref: float = param(1e-6, 0.0, None, unit="1",
                            doc="share of a storage device's life per interval")
    uc_cycle_life: float = param(5e5, 1.0, None, unit="cycles",
                                 doc="ultracapacitor cycle life (PHYSICS.md 1e5-1e6)")
    gpu_ref_s: float = param(576.0, 0.0, None, unit="GPU-s", doc="R x GPUs per rack x dt")
    overcool_ref_k_s: float = param(1.0, 0.0, None, unit="K-s", doc="1 K for one interval")
    ln2_ref_kg: float = param(2.3, 0.0, None, unit="kg",
                              doc="LN2 that absorbs the pod's IT maximum for one interval")
    water_ref_l: float = param(0.31, 0.0, None, unit="L",
                               doc="tower water for the pod's IT maximum for one interval")
    cooling_usd_ref: float = param(0.0034, 0.0, None, unit="USD",
                                   doc="10 % of the pod's IT maximum for one interval at the "
                                       "peak price (CoolingDispatch's energy term)")
    terminal_per_step: float = param(2.0, 0.0, None, unit="1",
                                     doc="terminal charge per remaining step")


def default_normalizers(p: Params, xp: ExoParams, setpoint_c: float) -> Normalizers:
    """Normalizers for a plant, computed on the host from its parameters."""
    dt = float(p.dt_s)
    it_max_w = float(np.sum(np.asarray(rack_max_w(p)) * np.ones(p.n_racks)))
    contract = float(p.grid.contract_limit_w)
    price = float(xp.price_peak_usd_per_kwh)
    n_gpu = float(np.sum(np.asarray(p.gpu.n_gpu) * np.ones(p.n_racks)))
    q_kg = float(heat_per_kg(p.ln2, setpoint_c))
    return Normalizers(
        usd_ref=max(contract * dt / J_PER_KWH * price, 1e-9),
        carbon_ref_kg=max(contract * dt / J_PER_KWH * float(xp.carbon_mean_g_per_kwh) / 1e3,
                          1e-9),
        energy_ref_j=max(it_max_w * dt, 1e-9),
        work_ref_rack_s=p.n_racks * dt,
        ramp_ref_w_per_s=max(contract, 1e-9),
        band_ref_w=max(0.2 * contract, 1e-9),
        wear_ref=1e-6,
        uc_cycle_life=5e5,
        gpu_ref_s=max(n_gpu * dt, 1e-9),
        overcool_ref_k_s=dt,
        ln2_ref_kg=max(it_max_w * dt / q_kg, 1e-9),
        water_ref_l=max(float(p.rejection.water_l_per_kwh) * it_max_w * dt / J_PER_KWH, 1e-9),
        cooling_usd_ref=max(0.1 * it_max_w * dt / J_PER_KWH * price, 1e-9),
        terminal_per_step=2.0,
    )


def ups_life_used(p: Params, s: State):
    """UPS life used so far, counting the open half cycle (as the KPI does)."""
    return (s.ups.cycle_life_used + ups.pending_half_cycle(p.ups, s.ups)
            + s.ups.calendar_life_used)


def demand_peak_w(p: Params, s: State):
    """Running peak estimate for the demand charge: closed block means and the
    open block's energy spread over a whole window (a lower bound that rises
    to the block mean at its close)."""
    g = s.grid
    return jnp.maximum(g.peak_block_w, g.block_j / p.grid.demand_window_s)


def ramp_excess_w_per_s(p: Params, s0: State, p_sub_w):
    """Mean over the interval's substeps of the grid ramp above its limit (W/s)."""
    prev = jnp.where(s0.grid.started > 0.5, s0.grid.p_prev_w, p_sub_w[0])
    draws = jnp.concatenate([prev[None], p_sub_w])
    ramp = jnp.abs(jnp.diff(draws)) / p.h_s
    return jnp.mean(jnp.maximum(ramp - p.grid.ramp_limit_w_per_s, 0.0))


def band_rms_w(p: Params, s0: State, s1: State):
    """RMS of the high-passed grid draw over the interval (W)."""
    ms = (s1.grid.band_w2s - s0.grid.band_w2s) / p.dt_s
    return jnp.sqrt(jnp.maximum(ms, 1e-6))


def cost_terms(p: Params, n: Normalizers, s0: State, s1: State, out: dict, exo,
               d_progress_rack_s, remaining, flags: dict, terminal: tuple[str, ...]):
    """Every normalized term for one interval (see the module table).

    **Arguments**: plant params, normalizers, plant state before and after,
    the plant outputs, the interval's exogenous inputs, per-slot progress
    (J,) in rack-s at nominal pace, steps left in the episode after this one,
    termination flags by cause, the causes that terminate in this task.

    **Returns**: dict name -> scalar term (non-negative, unweighted).
    """
    f = s1.t_s.dtype
    rent_usd = grid.demand_charge_usd(p.grid, demand_peak_w(p, s1), p.dt_s)
    uc_cap = jnp.maximum(jnp.sum(p.ultracap.e_max_j * jnp.ones((p.n_racks,), f)), 1e-9)
    wear = (ups_life_used(p, s1) - ups_life_used(p, s0)
            + out["uc_throughput_j"] / (2.0 * uc_cap) / n.uc_cycle_life)
    ln2_kg = out["ln2_bought_kg"] - (s1.ln2.tank_kg - s0.ln2.tank_kg)
    lost = out["work_nominal_rack_s"] - jnp.sum(d_progress_rack_s)
    tail = 1.0 + remaining.astype(f)
    terms = {
        "energy_cost": out["cost_energy_usd"] / n.usd_ref,
        "demand": rent_usd / n.usd_ref,
        "carbon": out["carbon_kg"] / n.carbon_ref_kg,
        "lost_work": lost / n.work_ref_rack_s,
        "waste": out["e_waste_j"] / n.energy_ref_j,
        "ramp": ramp_excess_w_per_s(p, s0, out["p_grid_sub_w"]) / n.ramp_ref_w_per_s,
        "band": band_rms_w(p, s0, s1) / n.band_ref_w,
        "storage_wear": wear / n.wear_ref,
        "throttle": out["throttled_gpu_s"] / n.gpu_ref_s,
        "overcool": out["overcool_k_s"] / n.overcool_ref_k_s,
        "ln2": ln2_kg / n.ln2_ref_kg,
        "water": out["water_l"] / n.water_ref_l,
        "unserved": out["e_unserved_j"] / n.energy_ref_j,
        "trip": jnp.zeros((), f),
        "hazard": jnp.zeros((), f),
    }
    for cause in terminal:
        terms[cause] = terms[cause] + flags[cause].astype(f) * tail * n.terminal_per_step
    return terms


def termination_flags(p: Params, out: dict) -> dict:
    """The interval's termination causes: a rack ``trip``, an oxygen ``hazard`` (room O2
    below the alarm), ``unserved`` IT energy (bool scalars)."""
    return {"trip": out["trips"] > 0.0,
            "hazard": out["o2_min_frac"] < p.ln2.o2_alarm_frac,
            "unserved": out["e_unserved_j"] > 0.0}


#: a term computed by the task instead: ``fn(params, s0, s1, out, exo) -> term``
Override = Callable


class Reward:
    """A task's reward: which terms it sums, which causes end its episodes, and any
    term the task computes its own way.

    **Arguments**: ``terms`` (names from :data:`REWARD_KEYS`), ``terminal`` (causes of
    :func:`termination_flags` that terminate, each charged through its term), and
    ``overrides`` (term name -> ``fn(params, s0, s1, out, exo)``).

    :meth:`terms_of` computes the unweighted terms of one interval, :meth:`weighted`
    applies the scenario's weights and signs; ``sum(weighted(...).values())`` is the
    env's reward, so a planner that calls the same two methods optimizes exactly it.
    """

    def __init__(self, terms, terminal=("trip", "hazard"), overrides: dict | None = None):
        bad = [k for k in terms if k not in REWARD_KEYS]
        if bad:
            raise ValueError(f"unknown reward terms {bad}; allowed: {sorted(REWARD_KEYS)}")
        self.terms = tuple(terms)
        self.terminal = tuple(terminal)
        self.overrides = dict(overrides or {})

    def terms_of(self, params, s0: State, s1: State, out: dict, exo, remaining,
                 progress_rack_s=None, queue=None, queue_done=None, plant=None) -> dict:
        """Every term of the task for one interval (unweighted, non-negative).

        **Arguments**: the env params, the plant state before and after, the plant
        outputs, the interval's exogenous inputs, steps left in the episode after this
        one, per-slot progress (J,) in rack-s at nominal pace (``None``: from the two
        states); scheduling tasks: the job queue during the interval (``queue``, whose
        slots the progress is valued by) and after finished jobs left it
        (``queue_done``, whose overdue jobs are charged; default ``queue``); ``plant``:
        the plant params the states were stepped with (default ``params.plant``; a
        planner's coarser model).
        """
        p = params.plant if plant is None else plant
        if progress_rack_s is None:
            progress_rack_s = Q.slot_progress_rack_s(s1.work) - Q.slot_progress_rack_s(s0.work)
        flags = termination_flags(p, out)
        terms = cost_terms(p, params.norm, s0, s1, out, exo, progress_rack_s, remaining,
                           flags, self.terminal)
        if queue is not None:
            terms["work_value"] = (jnp.sum(progress_rack_s * Q.slot_value(queue))
                                   / params.norm.work_ref_rack_s)
            late = queue if queue_done is None else queue_done
            terms["deadline"] = Q.overdue_racks(late, s1.t_s) / p.n_racks
        for name, fn in self.overrides.items():
            terms[name] = fn(params, s0, s1, out, exo)
        return {k: terms[k] for k in self.terms}

    def weighted(self, terms: dict, weights, dtype=jnp.float32) -> dict:
        """Signed, weighted terms by name (cast to ``dtype``, ``None``: kept): they sum
        to the reward."""
        out = {}
        for k in self.terms:
            v = (1.0 if k in BENEFITS else -1.0) * getattr(weights, k) * terms[k]
            out[k] = v if dtype is None else v.astype(dtype)
        return out

    def doc(self) -> list[str]:
        """The terms this reward sums."""
        return list(self.terms)
