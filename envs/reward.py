"""The reward: one currency (USD), one object per task, used by the env and by planners.

A task's reward for a control interval is ``-(USD cost of the interval) - (penalties for
violating the specification)``, every term in USD, each price from :class:`Prices` (a
scenario's ``reward`` section overrides them; sources beside each field):

=============  ================================================================
cost term      per interval
=============  ================================================================
energy         grid energy at the tariff, generator fuel (so conversion losses
               cost what they waste)
demand         demand charge on the running 15-min peak estimate, prorated
carbon         kg CO2 x ``carbon_usd_per_t``
storage_wear   UPS life used x its replacement cost, ultracapacitor cycles /
               cycle life x theirs
storage_value  change in stored energy (UPS and ultracapacitors) valued at what
               buying it back costs now (the interval's tariff / charge efficiency):
               energy taken from storage is paid as if bought from the grid, so
               draining storage pays nothing, and a round trip costs its losses
lost_work      scheduled rack-s not done x GPUs per rack x ``gpu_hour_usd``
ln2            LN2 consumed (bought - change in the tank) at its price
water          cooling-tower water at its price
deadline       rack-s of queued jobs past their deadline, at the GPU-hour value (what
               a late job's owner is refunded: a cost, not a specification)
work_value     (a benefit) value-weighted rack-s of queued jobs' progress at the
               GPU-hour value
=============  ================================================================

=============  ================================================================
penalty        per interval, at the shadow prices of :class:`Prices`
=============  ================================================================
ramp           MW of grid draw change beyond the ramp limit, summed over substeps
band           kW-s of the interval's in-band (0.1-20 Hz) RMS above the limit
throttle       GPU-s above the slowdown temperature
overcool       K-s of supply below the condensation floor
unserved       kWh of IT demand shed
violation      a second of the interval out of the specification (any of the task's
               measures above, beyond its tolerance), at ``violation_usd_per_s``: the
               specification is pass or fail per interval, as utilities check it
trip, hazard   terminal: the pod's nominal work for the rest of the episode at
               the GPU-hour value, so ending early never pays
=============  ================================================================

The specification a run must meet is exactly "no penalty term above its tolerance";
:func:`violations` flags each interval that breaks it (``info["violation"]``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from heatsync.physics import Params, State, grid, param, pytree_dataclass, ups
from heatsync.physics.units import J_PER_KWH, L_PER_M3, SECONDS_PER_HOUR

from . import _queue as Q

__all__ = ["Prices", "PRICE_KEYS", "COSTS", "PENALTIES", "BENEFITS", "Reward",
           "termination_flags", "ramp_excess_w", "band_rms_w", "stored_value_usd",
           "violations", "SPEC_TOLERANCE"]

#: cost terms, penalty terms (the specification), and the benefit
COSTS = ("energy", "demand", "carbon", "storage_wear", "storage_value", "lost_work", "ln2",
         "water", "deadline")
PENALTIES = ("ramp", "band", "throttle", "overcool", "unserved", "violation", "trip",
             "hazard")
BENEFITS = ("work_value",)
#: a penalty measure counts as a violation above this share of its limit (ramp, band) or
#: above this absolute amount (the others, in their units)
SPEC_TOLERANCE = 0.01


@pytree_dataclass
class Prices:
    """Prices of everything an operator pays for, and the shadow prices of the
    specification (USD). A scenario's ``reward`` section overrides any of them."""

    gpu_hour_usd: float = param(4.0, 0.0, 1e4, unit="USD/GPU-h",
                                doc="value of an hour of GPU time (lost work, work done)",
                                source="PHYSICS.md 2-4 $/GPU-h H100 rental, Blackwell higher "
                                       "(est 4)")
    ups_usd_per_kwh: float = param(165.0, 0.0, 1e5, unit="USD/kWh",
                                   doc="UPS battery replacement cost",
                                   source="PHYSICS.md BNEF 2024 turnkey storage ~165 $/kWh")
    uc_usd_per_kwh: float = param(1.0e4, 0.0, 1e7, unit="USD/kWh",
                                  doc="ultracapacitor replacement cost",
                                  source="est: supercapacitor modules ~10 $/Wh")
    uc_cycle_life: float = param(5e5, 1.0, 1e9, unit="cycles",
                                 doc="ultracapacitor full cycles to end of life",
                                 source="PHYSICS.md supercapacitor 1e5-1e6 cycles")
    carbon_usd_per_t: float = param(0.0, 0.0, 1e4, unit="USD/t",
                                    doc="carbon price (0: not priced)", source="est")
    ramp_usd_per_mw: float = param(0.1, 0.0, 1e9, unit="USD/MW",
                                   doc="shadow price of grid draw change beyond the ramp limit",
                                   source="est: a 1 MW step over the limit costs about 7 s "
                                          "of the pod's energy")
    band_usd_per_kw_s: float = param(5e-4, 0.0, 1e9, unit="USD/(kW s)",
                                     doc="shadow price of in-band RMS above the limit",
                                     source="est: 30 kW above the limit costs as much as "
                                            "the pod's energy")
    throttle_usd_per_gpu_s: float = param(0.05, 0.0, 1e6, unit="USD/GPU-s",
                                          doc="shadow price of a GPU-s above slowdown "
                                              "(besides the work it loses)", source="est")
    overcool_usd_per_k_s: float = param(1.0, 0.0, 1e6, unit="USD/(K s)",
                                        doc="shadow price of supply below the condensation "
                                            "floor", source="est")
    unserved_usd_per_kwh: float = param(10.0, 0.0, 1e6, unit="USD/kWh",
                                        doc="value of lost load (IT demand shed)",
                                        source="est (value-of-lost-load order of 10 $/kWh)")
    violation_usd_per_s: float = param(0.05, 0.0, 1e6, unit="USD/s",
                                       doc="shadow price of a second out of the "
                                           "specification", source="est: about 3 x the "
                                                                   "pod's energy cost")


PRICE_KEYS = tuple(Prices.__dataclass_fields__)


def termination_flags(p: Params, out: dict) -> dict:
    """The interval's termination causes: a rack ``trip``, an oxygen ``hazard`` (room O2
    below the alarm), ``unserved`` IT energy (bool scalars)."""
    return {"trip": out["trips"] > 0.0,
            "hazard": out["o2_min_frac"] < p.ln2.o2_alarm_frac,
            "unserved": out["e_unserved_j"] > 0.0}


def demand_peak_w(p: Params, s: State):
    """Running peak estimate for the demand charge: closed block means and the
    open block's energy spread over a whole window (a lower bound that rises
    to the block mean at its close)."""
    g = s.grid
    return jnp.maximum(g.peak_block_w, g.block_j / p.grid.demand_window_s)


def ramp_excess_w(p: Params, s0: State, p_sub_w, exo):
    """Grid draw change beyond the ramp limit, summed over the interval's substeps (W);
    an interval without the grid, or the reconnection after an outage, counts none."""
    prev = jnp.where(s0.grid.started > 0.5, s0.grid.p_prev_w, p_sub_w[0])
    draws = jnp.concatenate([prev[None], p_sub_w])
    excess = jnp.sum(jnp.maximum(jnp.abs(jnp.diff(draws)) - p.grid.ramp_limit_w_per_s * p.h_s,
                                 0.0))
    return excess * ((exo.grid_up > 0.5) & (s0.grid.outage_s <= 0.0))


def band_rms_w(p: Params, s0: State, s1: State):
    """RMS of the high-passed grid draw over the interval (W)."""
    ms = (s1.grid.band_w2s - s0.grid.band_w2s) / p.dt_s
    return jnp.sqrt(jnp.maximum(ms, 1e-6))


def stored_value_usd(p: Params, price_usd_per_kwh, s: State):
    """What buying the energy in the UPS and the ultracapacitors would cost at
    ``price_usd_per_kwh`` (each over its charge efficiency) (USD)."""
    per_j = price_usd_per_kwh / J_PER_KWH
    return per_j * (s.ups.e_j / p.ups.eta_charge + jnp.sum(s.uc_e_j) / p.ultracap.eta)


def _measures(p: Params, s0: State, s1: State, out: dict, exo) -> dict:
    """The specification's measures of one interval, in their own units."""
    return {"ramp": ramp_excess_w(p, s0, out["p_grid_sub_w"], exo),
            "band": jnp.maximum(band_rms_w(p, s0, s1) - p.grid.band_rms_limit_w, 0.0),
            "throttle": out["throttled_gpu_s"], "overcool": out["overcool_k_s"],
            "unserved": out["e_unserved_j"]}


def violations(p: Params, s0: State, s1: State, out: dict, exo,
               causes=PENALTIES) -> jnp.ndarray:
    """True if the interval breaks the specification on any of ``causes``: a measure above
    its tolerance (:data:`SPEC_TOLERANCE` of the ramp and band limits; GPU-s, K-s and J
    above it for the others), or a trip or hazard."""
    m = _measures(p, s0, s1, out, exo)
    tol = {"ramp": SPEC_TOLERANCE * p.grid.ramp_limit_w_per_s * p.dt_s,
           "band": SPEC_TOLERANCE * p.grid.band_rms_limit_w}
    flags = termination_flags(p, out)
    bad = jnp.zeros((), bool)
    for c in causes:
        if c in m:
            bad = bad | (m[c] > tol.get(c, SPEC_TOLERANCE))
        elif c in ("trip", "hazard"):
            bad = bad | flags[c]
    return bad


def _gpu_usd_per_rack_s(p: Params, pr: Prices):
    return jnp.mean(p.gpu.n_gpu * jnp.ones((p.n_racks,))) * pr.gpu_hour_usd / SECONDS_PER_HOUR


def usd_terms(p: Params, pr: Prices, s0: State, s1: State, out: dict, exo,
              progress_rack_s, remaining, terminal: tuple, queue=None, queue_done=None) -> dict:
    """Every term for one interval, in USD, non-negative except ``storage_value`` (a
    credit when storage ends fuller) (see the module table)."""
    f = s1.t_s.dtype
    rack_usd = _gpu_usd_per_rack_s(p, pr)
    uc_cap = jnp.maximum(jnp.sum(p.ultracap.e_max_j * jnp.ones((p.n_racks,), f)), 1e-9)
    ups_life = (s1.ups.cycle_life_used + ups.pending_half_cycle(p.ups, s1.ups)
                + s1.ups.calendar_life_used
                - s0.ups.cycle_life_used - ups.pending_half_cycle(p.ups, s0.ups)
                - s0.ups.calendar_life_used)
    uc_cycles = out["uc_throughput_j"] / (2.0 * uc_cap)
    ln2_kg = out["ln2_bought_kg"] - (s1.ln2.tank_kg - s0.ln2.tank_kg)
    ln2_usd_per_kg = p.ln2.price_usd_per_l * L_PER_M3 / p.ln2.density_kg_m3
    flags = termination_flags(p, out)
    m = _measures(p, s0, s1, out, exo)
    tail = (1.0 + remaining.astype(f)) * p.n_racks * rack_usd * p.dt_s
    terms = {
        "energy": out["cost_energy_usd"],
        "demand": grid.demand_charge_usd(p.grid, demand_peak_w(p, s1), p.dt_s),
        "carbon": out["carbon_kg"] / 1000.0 * pr.carbon_usd_per_t,
        "storage_wear": (ups_life * p.ups.e_max_j / J_PER_KWH * pr.ups_usd_per_kwh
                         + uc_cycles / pr.uc_cycle_life * uc_cap / J_PER_KWH
                         * pr.uc_usd_per_kwh),
        "storage_value": (stored_value_usd(p, exo.price_usd_per_kwh, s0)
                          - stored_value_usd(p, exo.price_usd_per_kwh, s1)),
        "lost_work": (out["work_nominal_rack_s"] - jnp.sum(progress_rack_s)) * rack_usd,
        "ln2": ln2_kg * ln2_usd_per_kg,
        "water": out["cost_water_usd"],
        "ramp": m["ramp"] / 1e6 * pr.ramp_usd_per_mw,
        "band": m["band"] / 1e3 * p.dt_s * pr.band_usd_per_kw_s,
        "throttle": m["throttle"] * pr.throttle_usd_per_gpu_s,
        "overcool": m["overcool"] * pr.overcool_usd_per_k_s,
        "unserved": m["unserved"] / J_PER_KWH * pr.unserved_usd_per_kwh,
        "violation": jnp.zeros((), f),  # set by Reward.terms_of (the task's own measures)
        "trip": jnp.zeros((), f),
        "hazard": jnp.zeros((), f),
        "work_value": jnp.zeros((), f),
        "deadline": jnp.zeros((), f),
    }
    for cause in terminal:
        if cause in ("trip", "hazard"):
            terms[cause] = flags[cause].astype(f) * tail
        else:  # unserved energy that ends the episode: charged like a trip on top
            terms[cause] = terms[cause] + flags[cause].astype(f) * tail
    if queue is not None:
        terms["work_value"] = jnp.sum(progress_rack_s * Q.slot_value(queue)) * rack_usd
        late = queue if queue_done is None else queue_done
        terms["deadline"] = Q.overdue_racks(late, s1.t_s) * rack_usd * p.dt_s
    return terms


#: a term computed by the task instead: ``fn(p, xp, prices, s0, s1, out, exo) -> USD``
Override = Callable


class Reward:
    """A task's reward: which USD terms it sums, which causes end its episodes (and are
    charged the rest of the episode's work), and any term the task computes its own way.

    :meth:`terms_of` gives one interval's terms in USD, :meth:`weighted` their signed
    contributions (costs and penalties negative, benefits positive); their sum is the
    env's reward, so a planner that calls the same two methods optimizes exactly it.
    """

    def __init__(self, terms, terminal=("trip", "hazard"), overrides: dict | None = None):
        known = (*COSTS, *PENALTIES, *BENEFITS)
        bad = [k for k in terms if k not in known]
        if bad:
            raise ValueError(f"unknown reward terms {bad}; allowed: {known}")
        self.terms = tuple(terms)
        self.terminal = tuple(terminal)
        self.overrides = dict(overrides or {})

    @property
    def spec(self) -> tuple[str, ...]:
        """The penalty terms: the specification an episode must meet."""
        return tuple(k for k in self.terms if k in PENALTIES and k != "violation")

    def terms_of(self, params, s0: State, s1: State, out: dict, exo, remaining,
                 progress_rack_s=None, queue=None, queue_done=None, plant=None,
                 exo_params=None) -> dict:
        """Every term of the task for one interval (USD).

        **Arguments**: the env params, the plant state before and after, the plant
        outputs, the interval's exogenous inputs, steps left in the episode after this
        one, per-slot progress (J,) in rack-s at nominal pace (``None``: from the two
        states); scheduling tasks: the job queue during the interval (``queue``, whose
        slots the progress is valued by) and after finished jobs left it
        (``queue_done``, whose overdue jobs are charged); ``plant`` and ``exo_params``:
        the episode's plant and exogenous params (default ``params.plant``, ``params.exo``;
        a planner may pass a coarser model).
        """
        p = params.plant if plant is None else plant
        xp = params.exo if exo_params is None else exo_params
        if progress_rack_s is None:
            progress_rack_s = Q.slot_progress_rack_s(s1.work) - Q.slot_progress_rack_s(s0.work)
        terms = usd_terms(p, params.prices, s0, s1, out, exo, progress_rack_s, remaining,
                          self.terminal, queue, queue_done)
        for name, fn in self.overrides.items():
            terms[name] = fn(p, xp, params.prices, s0, s1, out, exo)
        if "violation" in self.terms:
            bad = violations(p, s0, s1, out, exo, self.spec)
            terms["violation"] = bad * p.dt_s * params.prices.violation_usd_per_s
        return {k: terms[k] for k in self.terms}

    def weighted(self, terms: dict, dtype=jnp.float32) -> dict:
        """Signed terms by name (cast to ``dtype``; ``None``: kept): they sum to the reward."""
        out = {}
        for k in self.terms:
            v = terms[k] if k in BENEFITS else -terms[k]
            out[k] = v if dtype is None else v.astype(dtype)
        return out
