"""Conservation over a day of simulated time (64-bit). The float32 figures come from
the week-long run in test_long_run.py.

Electrical: grid + generator = IT + cooling + losses + change in stored energy.
Heat: IT heat + pump work = air + chiller + dry cooler + LN2 + change in stored heat.
"""

from __future__ import annotations

import jax
import pytest
from conftest import simulate_many

from heatsync.physics import load_scenario, simulate

DAY = 86_400
DAY_SCENARIOS = ["default", "sync-swings", "heatwave", "chiller-trip"]


@pytest.fixture(scope="module")
def days():
    """The four scenarios' days as one vmapped float64 rollout."""
    with jax.enable_x64(True):
        return simulate_many(DAY_SCENARIOS, DAY)


@pytest.mark.slow
@pytest.mark.parametrize("name", DAY_SCENARIOS)
def test_energy_and_heat_balances__close_over_a_day_in_float64(days, name):
    k = days[name].kpis
    print(f"{name}: 24 h energy balance {k['energy_balance_rel_error']:.1e}, "
          f"heat balance {k['heat_balance_rel_error']:.1e} (float64)")
    assert k["duration_s"] == DAY
    assert k["energy_grid_kwh"] > 0 and k["energy_cooling_kwh"] > 0
    assert k["energy_balance_rel_error"] < 1e-6
    assert k["heat_balance_rel_error"] < 1e-6


def test_grid_outage__balances_close_with_ups_and_generator(x64):
    k = simulate(load_scenario("grid-outage")).kpis
    assert k["energy_gen_kwh"] > 0
    assert k["energy_balance_rel_error"] < 1e-9
    assert k["heat_balance_rel_error"] < 1e-9
    # the balance is not trivially met: conversion losses are a few % of the draw
    assert k["energy_loss_kwh"] > 0.01 * k["energy_grid_kwh"]
