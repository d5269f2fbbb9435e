"""GPU power with DVFS, power cap, firmware-style smoothing and thermal throttling.

Per rack, lumping the rack's ``n_gpu`` GPUs (all quantities per GPU unless the
name says rack):

* demand ``P = P_idle + (P_max - P_idle) * u * f^gamma`` (PHYSICS.md coupling 1);
* the power cap lowers the clock: ``f_cap`` solves ``P(f_cap) = cap``;
* throttling (coupling 4): the clock falls from the slowdown temperature and
  halves at the hard-slowdown temperature; the onset is a C1 quadratic blend of
  half-width ``throttle_smooth_k`` so that gradients see the cliff coming; past the
  shutdown temperature the rack trips for ``trip_recovery_s``;
* firmware smoothing (NVML power smoothing): a floor (fraction of TDP) and
  ramp-up / ramp-down limits (W/s per GPU). Power above the need, burnt by the
  floor or a slow ramp-down, is waste. A ramp-up limit that holds power below
  the need slows the clock (``f_eff``).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._math import safe_pow, smooth_ramp
from ._pytree import param, pytree_dataclass

__all__ = ["GpuParams", "throttle_factor", "throttle_implicit", "clock_for_power", "demand_w",
           "smooth_power"]


@pytree_dataclass
class GpuParams:
    """GPU and rack electrical and thermal-limit constants."""

    n_gpu: float = param(72.0, 1.0, 1024.0, unit="1", doc="GPUs per rack",
                         source="PHYSICS.md NVL72-class rack", per_rack=True)
    p_max_w: float = param(1200.0, 100.0, 3000.0, unit="W", doc="GPU TDP",
                           source="PHYSICS.md GB200 GPU power up to 1,200 W")
    p_idle_w: float = param(100.0, 0.0, 500.0, unit="W", doc="GPU idle power",
                            source="PHYSICS.md H100 idle 70-100 W (est for B200-class)")
    cap_min_w: float = param(340.0, 0.0, 3000.0, unit="W", doc="lowest settable power cap",
                             source="PHYSICS.md H100 cap 200-700 W, scaled to TDP (est)")
    p_other_w: float = param(40000.0, 0.0, 200000.0, unit="W",
                             doc="rack power besides GPUs (CPUs, switches, NICs, fans)",
                             source="est: 120-140 kW NVL72 rack minus 72 x 1.2 kW", per_rack=True)
    gamma: float = param(2.7, 1.0, 4.0, unit="1", doc="DVFS exponent P_dyn ~ f^gamma",
                         source="PHYSICS.md DVFS power law f^2.5-f^3")
    f_min: float = param(0.17, 0.05, 1.0, unit="1", doc="lowest relative SM clock",
                         source="PHYSICS.md H100 SM clock 345/1980 MHz")
    floor_max_frac: float = param(0.9, 0.0, 1.0, unit="1", doc="highest settable power floor",
                                  source="PHYSICS.md firmware smoothing floor 20-90 % of TDP")
    ramp_max_w_per_s: float = param(1.0e5, 1.0, 1.0e7, unit="W/s",
                                    doc="ramp limit meaning 'unlimited' (per GPU)",
                                    source="est: a GPU swings 0->TDP in ~10 ms")
    ramp_min_w_per_s: float = param(50.0, 0.1, 1.0e5, unit="W/s",
                                    doc="slowest settable ramp limit (per GPU)", source="est")
    t_slowdown_c: float = param(87.0, 40.0, 120.0, unit="degC", doc="throttle onset",
                                source="PHYSICS.md H100 thermal")
    t_hard_slowdown_c: float = param(89.0, 40.0, 125.0, unit="degC",
                                     doc="clock halves here", source="PHYSICS.md H100 thermal")
    t_shutdown_c: float = param(92.0, 40.0, 130.0, unit="degC", doc="rack trips above",
                                source="PHYSICS.md H100 thermal")
    throttle_smooth_k: float = param(0.1, 1e-3, 2.0, unit="K",
                                     doc="half-width of the smoothed throttle onset "
                                         "(gradients see the cliff this far ahead)",
                                     source="est (a numerical choice)")
    trip_recovery_s: float = param(300.0, 0.0, 86400.0, unit="s",
                                   doc="time a tripped rack stays down", source="est")


def throttle_factor(gp: GpuParams, t_junction_c):
    """Relative clock allowed by the junction temperature: 1 below slowdown, 0.5 at hard."""
    span = gp.t_hard_slowdown_c - gp.t_slowdown_c
    ramp, _ = smooth_ramp(t_junction_c - gp.t_slowdown_c, gp.throttle_smooth_k)
    return jnp.maximum(1.0 - 0.5 * ramp / span, gp.f_min)


def throttle_implicit(gp: GpuParams, t_j_c, u, t_drift_c, k_heat_c_per_w, iters: int = 4):
    """Clock ``f`` consistent with the junction temperature over the substep.

    Thermal throttling reacts within milliseconds, far faster than a substep, and
    its loop gain is high (the clock halves over 2 K), so an explicit update
    chatters. We solve ``f = throttle_factor(T(f))`` by Newton's method, where
    ``T(f) = t_drift_c + k_heat_c_per_w * P(u, f)`` is the junction's mean
    temperature over the substep on its exact path (linear in GPU power).
    ``g(f) = f - f_th(T(f))`` is increasing, so the root is unique; iterations
    are unrolled (differentiable).
    """
    span = gp.t_hard_slowdown_c - gp.t_slowdown_c
    dyn = (gp.p_max_w - gp.p_idle_w) * u
    f = jnp.clip(throttle_factor(gp, t_j_c), gp.f_min, 1.0)
    for _ in range(iters):
        f_gamma = safe_pow(f, gp.gamma)
        t_mean = t_drift_c + k_heat_c_per_w * (gp.p_idle_w + dyn * f_gamma)
        ramp, slope = smooth_ramp(t_mean - gp.t_slowdown_c, gp.throttle_smooth_k)
        raw = 1.0 - 0.5 * ramp / span
        dfth_dt = jnp.where(raw > gp.f_min, -0.5 * slope / span, 0.0)
        dt_df = k_heat_c_per_w * dyn * gp.gamma * f_gamma / jnp.maximum(f, 1e-6)
        g = f - jnp.maximum(raw, gp.f_min)
        f = jnp.clip(f - g / (1.0 - dfth_dt * dt_df), gp.f_min, 1.0)
    return f


def demand_w(gp: GpuParams, u, f):
    """Per-GPU power demand at utilization ``u`` and relative clock ``f``."""
    return gp.p_idle_w + (gp.p_max_w - gp.p_idle_w) * u * safe_pow(f, gp.gamma)


def clock_for_power(gp: GpuParams, u, p_w):
    """Relative clock at which demand equals ``p_w`` (1 where it never binds)."""
    dyn = (gp.p_max_w - gp.p_idle_w) * u
    ratio = (p_w - gp.p_idle_w) / jnp.maximum(dyn, 1e-9)
    f = safe_pow(ratio, 1.0 / gp.gamma)
    return jnp.where(dyn > 1e-9, jnp.clip(f, gp.f_min, 1.0), 1.0)


def smooth_power(gp: GpuParams, p_prev_w, p_need_w, cap_w, floor_w, up_w_s, down_w_s, on, h_s):
    """Firmware smoothing of per-GPU power over one substep.

    **Returns**: ``(p_w, waste_w)``: power drawn per GPU (floor, ramp limits and
    cap applied; 0 where the rack is off) and the part above the need.
    """
    target = jnp.maximum(p_need_w, floor_w)
    ramped = jnp.clip(target, p_prev_w - down_w_s * h_s, p_prev_w + up_w_s * h_s)
    p = jnp.minimum(ramped, cap_w) * on
    waste = jnp.maximum(p - p_need_w * on, 0.0)
    return p, waste
