"""Small numerical helpers shared by the plant's components."""

from __future__ import annotations

import jax.numpy as jnp

CELSIUS_TO_KELVIN = 273.15  # K, definition
SECONDS_PER_HOUR = 3600.0
J_PER_KWH = 3.6e6


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


def softplus_k(x: jnp.ndarray, k) -> jnp.ndarray:
    """Softplus with sharpness ``k``: ``log(1 + exp(k x)) / k`` -> ``max(x, 0)`` as k grows."""
    return jnp.logaddexp(0.0, k * x) / k


def safe_pow(base: jnp.ndarray, exponent, floor: float = 1e-12) -> jnp.ndarray:
    """``max(base, floor) ** exponent`` with a finite gradient at 0."""
    return jnp.maximum(base, floor) ** exponent
