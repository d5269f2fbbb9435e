"""Shared fixtures: scenarios are loaded once per session; helpers for x64 and policies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import heatsync
from heatsync.physics import default_action, replace


@pytest.fixture(scope="session")
def scenarios():
    """Bundled scenarios by name, loaded once."""
    return {name: heatsync.load_scenario(name) for name in heatsync.list_scenarios()}


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats."""
    with jax.enable_x64(True):
        yield


def lowpass_ultracap_policy(alpha=0.2, k_soc=0.5):
    """Rack ultracapacitors follow a low-pass of rack power (a baseline-like rule).

    The bus-draw setpoint relaxes toward the rack's present draw with factor
    ``alpha`` per interval, plus a state-of-charge correction.
    """

    def policy(p, s, exo):
        a = default_action(p)
        g = p.gpu
        p_rack = g.n_gpu * s.p_gpu_w + g.p_other_w
        prev = jnp.where(s.n_steps < 0.5, p_rack, s.uc_target_prev_w)
        soc = s.uc_e_j / p.ultracap.e_max_j
        target = prev + alpha * (p_rack - prev) + k_soc * (0.5 - soc) * p.ultracap.p_max_w * 0.2
        return replace(a, uc_target_w=target, uc_gain=jnp.ones_like(target))

    return policy
