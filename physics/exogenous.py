"""What the world imposes on the plant: weather, tariffs, carbon, faults, job windows.

``exogenous_at(xp, key, t_s, dt_s)`` is a pure function of scenario parameters
(:class:`ExoParams`), a PRNG key and time, so a rollout of any length needs no
stored series and a batch of episodes shares one set of parameters. Generated
series: a diurnal ambient temperature, a time-of-use price and a diurnal carbon
intensity, each with smooth noise (normal draws at ``noise_knot_s`` knots,
interpolated linearly; knot ``k`` uses ``fold_in(key, k)``). A measured trace
(:func:`heatsync.physics.trace.load_trace`) replaces any of those series it
provides, interpolated in time.

Faults are arrays of (kind, start, duration, magnitude):

===============  ===========================================================
kind             effect while active (magnitude)
===============  ===========================================================
chiller-trip     chiller unavailable
pump-failure     CDU pump stops; flow falls to ``failed_flow_ratio``
grid-outage      grid lost; generator starts after ``gen_start_s``
heat-wave        ambient + magnitude K
vent-failure     share ``magnitude`` of vented N2 gas enters the room
sync-start       all jobs start together at ``start``; rack power scaled by
                 ``1 + (magnitude - 1) exp(-(t - start) / duration)``
===============  ===========================================================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._pytree import param, pytree_dataclass
from .units import SECONDS_PER_HOUR

__all__ = ["FAULT_KINDS", "ExoParams", "Exogenous", "exogenous_at", "hour_of_day",
           "faults_active", "FAULT_MAGNITUDE"]

FAULT_KINDS = ("chiller-trip", "pump-failure", "grid-outage", "heat-wave", "vent-failure",
               "sync-start")
#: allowed magnitude range of each fault kind
FAULT_MAGNITUDE = {
    "chiller-trip": (0.0, 1.0), "pump-failure": (0.0, 1.0), "grid-outage": (0.0, 1.0),
    "heat-wave": (0.0, 30.0), "vent-failure": (0.0, 1.0), "sync-start": (1.0, 2.0),
}
TRACE_COLUMNS = ("ambient_c", "price_usd_per_kwh", "carbon_g_per_kwh", "load_scale", "grid_up")


@pytree_dataclass
class ExoParams:
    """Scenario parameters of the exogenous series (scalars unless noted)."""

    start_hour: float = param(0.0, 0.0, 24.0, unit="h", doc="clock time at t = 0", source="-")
    ambient_mean_c: float = param(22.0, -40.0, 50.0, unit="degC", doc="daily mean ambient",
                                  source="est (temperate site)")
    ambient_amp_c: float = param(6.0, 0.0, 30.0, unit="K", doc="diurnal half swing",
                                 source="est")
    ambient_peak_hour: float = param(15.0, 0.0, 24.0, unit="h", doc="hottest hour", source="est")
    ambient_noise_c: float = param(0.5, 0.0, 10.0, unit="K", doc="noise amplitude", source="est")
    price_offpeak_usd_per_kwh: float = param(0.07, 0.0, 10.0, unit="USD/kWh",
                                             doc="off-peak energy price",
                                             source="PHYSICS.md EIA industrial 68-90 $/MWh")
    price_peak_usd_per_kwh: float = param(0.12, 0.0, 10.0, unit="USD/kWh",
                                          doc="peak energy price",
                                          source="PHYSICS.md EIA (New England 160 $/MWh) (est)")
    price_peak_start_h: float = param(14.0, 0.0, 24.0, unit="h", doc="peak window start",
                                      source="est")
    price_peak_end_h: float = param(20.0, 0.0, 24.0, unit="h", doc="peak window end",
                                    source="est")
    price_noise_frac: float = param(0.05, 0.0, 1.0, unit="1", doc="relative price noise",
                                    source="est")
    carbon_mean_g_per_kwh: float = param(445.0, 0.0, 2000.0, unit="g/kWh",
                                         doc="mean grid carbon intensity",
                                         source="PHYSICS.md IEA global ~445 g/kWh")
    carbon_amp_frac: float = param(0.25, 0.0, 1.0, unit="1", doc="diurnal relative swing",
                                   source="est (solar midday dip)")
    carbon_peak_hour: float = param(20.0, 0.0, 24.0, unit="h", doc="dirtiest hour", source="est")
    carbon_noise_frac: float = param(0.05, 0.0, 1.0, unit="1", doc="relative noise",
                                     source="est")
    noise_knot_s: float = param(300.0, 1.0, 86400.0, unit="s", doc="noise knot spacing",
                                source="est")
    # fault table (F,)
    fault_kind: jnp.ndarray = None
    fault_start_s: jnp.ndarray = None
    fault_duration_s: jnp.ndarray = None
    fault_magnitude: jnp.ndarray = None
    # job windows (J,)
    job_start_s: jnp.ndarray = None
    job_stop_s: jnp.ndarray = None
    # scheduled LN2 deliveries (D,)
    delivery_t_s: jnp.ndarray = None
    delivery_kg: jnp.ndarray = None
    # measured trace: times (N,), values (N, len(TRACE_COLUMNS)), column present (C,)
    trace_t_s: jnp.ndarray = None
    trace_values: jnp.ndarray = None
    trace_has: jnp.ndarray = None


@pytree_dataclass
class Exogenous:
    """Inputs held over one control interval starting at ``t_s``."""

    t_s: jnp.ndarray
    ambient_c: jnp.ndarray
    price_usd_per_kwh: jnp.ndarray
    carbon_g_per_kwh: jnp.ndarray
    grid_up: jnp.ndarray
    chiller_ok: jnp.ndarray
    pump_ok: jnp.ndarray
    leak_frac: jnp.ndarray
    load_scale: jnp.ndarray
    job_on: jnp.ndarray  # (J,)
    ln2_delivery_kg: jnp.ndarray


def _smooth_noise(key, series: int, t_s, knot_s):
    k = jax.random.fold_in(key, series)
    x = t_s / knot_s
    i = jnp.floor(x)
    w = x - i
    i = i.astype(jnp.int32)
    n0 = jax.random.normal(jax.random.fold_in(k, i), dtype=jnp.result_type(float))
    n1 = jax.random.normal(jax.random.fold_in(k, i + 1), dtype=jnp.result_type(float))
    return (1.0 - w) * n0 + w * n1


def _active(xp: ExoParams, kind: int, t_s):
    idx = FAULT_KINDS.index(kind)
    on = (xp.fault_kind == idx) & (t_s >= xp.fault_start_s) & (
        t_s < xp.fault_start_s + xp.fault_duration_s)
    return on


def faults_active(xp: ExoParams, t_s):
    """Whether a fault of each kind of :data:`FAULT_KINDS` is active at ``t_s`` (bool (K,))."""
    return jnp.stack([jnp.any(_active(xp, k, t_s)) for k in FAULT_KINDS])


def hour_of_day(xp: ExoParams, t_s):
    """Hour of the day (0-24) at simulated time ``t_s``."""
    return jnp.mod(xp.start_hour + t_s / SECONDS_PER_HOUR, 24.0)


def exogenous_at(xp: ExoParams, key, t_s, dt_s) -> Exogenous:
    """Exogenous inputs for the control interval ``[t_s, t_s + dt_s)``."""
    f = jnp.result_type(float)
    t_s = jnp.asarray(t_s, f)
    hour = hour_of_day(xp, t_s)
    two_pi = 2.0 * jnp.pi
    amb = (xp.ambient_mean_c + xp.ambient_amp_c * jnp.cos(two_pi * (hour - xp.ambient_peak_hour)
                                                          / 24.0)
           + xp.ambient_noise_c * _smooth_noise(key, 0, t_s, xp.noise_knot_s))
    in_peak = jnp.where(
        xp.price_peak_start_h <= xp.price_peak_end_h,
        (hour >= xp.price_peak_start_h) & (hour < xp.price_peak_end_h),
        (hour >= xp.price_peak_start_h) | (hour < xp.price_peak_end_h),
    )
    price = jnp.where(in_peak, xp.price_peak_usd_per_kwh, xp.price_offpeak_usd_per_kwh)
    price = price * jnp.maximum(
        1.0 + xp.price_noise_frac * _smooth_noise(key, 1, t_s, xp.noise_knot_s), 0.0)
    carbon = xp.carbon_mean_g_per_kwh * jnp.maximum(
        1.0 + xp.carbon_amp_frac * jnp.cos(two_pi * (hour - xp.carbon_peak_hour) / 24.0)
        + xp.carbon_noise_frac * _smooth_noise(key, 2, t_s, xp.noise_knot_s), 0.0)
    load_scale = jnp.ones((), f)
    grid_up = jnp.ones((), f)

    # measured trace overrides
    tr = [jnp.interp(t_s, xp.trace_t_s, xp.trace_values[:, c]) for c in range(len(TRACE_COLUMNS))]
    has = xp.trace_has
    amb = jnp.where(has[0] > 0.5, tr[0], amb)
    price = jnp.where(has[1] > 0.5, tr[1], price)
    carbon = jnp.where(has[2] > 0.5, tr[2], carbon)
    load_scale = jnp.where(has[3] > 0.5, tr[3], load_scale)
    grid_up = jnp.where(has[4] > 0.5, (tr[4] > 0.5).astype(f), grid_up)

    # faults
    heat = jnp.sum(jnp.where(_active(xp, "heat-wave", t_s), xp.fault_magnitude, 0.0))
    chiller_ok = 1.0 - jnp.any(_active(xp, "chiller-trip", t_s)).astype(f)
    pump_ok = 1.0 - jnp.any(_active(xp, "pump-failure", t_s)).astype(f)
    grid_up = grid_up * (1.0 - jnp.any(_active(xp, "grid-outage", t_s)).astype(f))
    leak = jnp.clip(jnp.sum(jnp.where(_active(xp, "vent-failure", t_s), xp.fault_magnitude,
                                      0.0)), 0.0, 1.0)
    is_sync = xp.fault_kind == FAULT_KINDS.index("sync-start")
    before_sync = jnp.any(is_sync & (t_s < xp.fault_start_s))
    since = t_s - xp.fault_start_s
    boost = jnp.where(is_sync & (since >= 0.0),
                      (xp.fault_magnitude - 1.0)
                      * jnp.exp(-jnp.maximum(since, 0.0) / jnp.maximum(xp.fault_duration_s, 1e-9)),
                      0.0)
    load_scale = load_scale * (1.0 + jnp.sum(boost))

    job_on = ((t_s >= xp.job_start_s) & (t_s < xp.job_stop_s)).astype(f)
    job_on = jnp.where(before_sync, 0.0, job_on)
    delivery = jnp.sum(jnp.where((xp.delivery_t_s >= t_s) & (xp.delivery_t_s < t_s + dt_s),
                                 xp.delivery_kg, 0.0))
    return Exogenous(
        t_s=t_s, ambient_c=amb + heat, price_usd_per_kwh=price, carbon_g_per_kwh=carbon,
        grid_up=grid_up, chiller_ok=chiller_ok, pump_ok=pump_ok, leak_frac=leak,
        load_scale=load_scale, job_on=job_on, ln2_delivery_kg=delivery,
    )
