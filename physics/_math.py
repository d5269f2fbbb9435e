"""Small numerical helpers shared by the plant's components."""

from __future__ import annotations

import jax.numpy as jnp


def phi1(x: jnp.ndarray) -> jnp.ndarray:
    """(1 - exp(-x)) / x, continued smoothly to 1 at x = 0 (x >= 0).

    The exact update of a first-order node ``C dT/dt = Q - G (T - T_ref)`` with
    ``Q``, ``G`` and ``T_ref`` held over a substep ``h`` is
    ``T' = T + h/C * (Q - G (T - T_ref)) * phi1(h G / C)``; it is stable for any
    ``h`` and reduces to forward Euler as ``G -> 0``.
    """
    small = x < 1e-4
    xs = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - 0.5 * x + x * x / 6.0, -jnp.expm1(-xs) / xs)


def exp_node(temp, heat_in_w, conductance_w_per_k, temp_ref, capacity_j_per_k, h_s):
    """Advance a first-order thermal node over ``h_s`` exactly.

    **Arguments**: node temperature, heat input (W), conductance to ``temp_ref``
    (W/K), reference temperature, heat capacity (J/K), substep (s).

    **Returns**: ``(new_temp, heat_out_j)`` where ``heat_out_j`` is the heat that
    left through the conductance during the substep, computed as
    ``heat_in * h - C * dT`` so that energy is conserved to rounding.
    """
    x = h_s * conductance_w_per_k / capacity_j_per_k
    rate = (heat_in_w - conductance_w_per_k * (temp - temp_ref)) / capacity_j_per_k
    d_temp = h_s * rate * phi1(x)
    heat_out = heat_in_w * h_s - capacity_j_per_k * d_temp
    return temp + d_temp, heat_out


def smooth_ramp(x: jnp.ndarray, width) -> tuple[jnp.ndarray, jnp.ndarray]:
    """C1 ramp ``max(x, 0)`` with a quadratic blend over ``|x| < width``, and its slope.

    Exactly 0 below ``-width`` and exactly ``x`` above ``width``, so it costs no
    transcendental function and adds no bias away from the kink.
    """
    w = jnp.maximum(width, 1e-12)
    inside = jnp.abs(x) < w
    val = jnp.where(x >= w, x, jnp.where(inside, (x + w) ** 2 / (4.0 * w), 0.0))
    slope = jnp.where(x >= w, 1.0, jnp.where(inside, (x + w) / (2.0 * w), 0.0))
    return val, slope


def pow_pos(base: jnp.ndarray, exponent) -> jnp.ndarray:
    """``base ** exponent`` for ``base > 0``, as ``exp(exponent * log(base))``.

    XLA:CPU lowers a non-integer ``**`` to a scalar ``powf`` call per element:
    9.6 ns per float32 element against 1.8 ns for ``exp`` and ``log``, which
    vectorize (a jitted loop over a (4096, 8) array on this project's 2-core
    machine). The plant evaluates ``f ** gamma`` about a dozen times per rack
    per substep; with ``**`` that was its largest cost in a profile of the
    batched rollout.
    """
    return jnp.exp(exponent * jnp.log(base))


def safe_pow(base: jnp.ndarray, exponent, floor: float = 1e-12) -> jnp.ndarray:
    """``max(base, floor) ** exponent`` with a finite gradient at 0."""
    return pow_pos(jnp.maximum(base, floor), exponent)


def share_above(t0, t1, t_eq, tau_s, threshold, h_s):
    """Share of a substep during which an exponential trajectory is above ``threshold``.

    The node moves from ``t0`` toward ``t_eq`` with time constant ``tau_s`` and
    reaches ``t1`` after ``h_s``; a crossing happens at
    ``t* = tau ln((t0 - t_eq) / (threshold - t_eq))``.
    """
    lo = jnp.minimum(t0, t1)
    hi = jnp.maximum(t0, t1)
    crossing = (lo < threshold) & (hi > threshold)
    num = jnp.where(crossing, t0 - t_eq, 1.0)
    den = jnp.where(crossing, threshold - t_eq, 1.0)
    t_star = tau_s * jnp.log(jnp.maximum(num / den, 1.0))
    frac = jnp.clip(t_star / h_s, 0.0, 1.0)
    share = jnp.where(t1 > t0, 1.0 - frac, frac)
    return jnp.where(crossing, share, (lo >= threshold).astype(t0.dtype))
