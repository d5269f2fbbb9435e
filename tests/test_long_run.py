"""A week of simulated time in float32: bounded, balances closing, no drift.

Documented tolerances (float32, 7 days at 0.1 s substeps, 6.05e6 substeps):
energy balance < 1e-5 relative, heat balance < 1e-4 relative; junction, supply
and facility-water temperatures stay inside their physical ranges; the workload
repeats daily, so the last day's IT energy and work match the second day's within
1 % and its grid energy within 3 % (cooling energy and tower water follow the
weather's day-to-day noise, ~2 % and more, so they are not drift measures).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import simulate_many

WEEK = 7 * 86_400
DAY = 86_400
NAMES = ["default", "heatwave"]


@pytest.fixture(scope="module")
def weeks():
    """Both weeks as one vmapped float32 rollout (about the wall time of one)."""
    return simulate_many(NAMES, WEEK)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_week__stays_bounded_balances_close_and_does_not_drift(weeks, name):
    res = weeks[name]
    sc, k, s = res.scenario, res.kpis, res.series
    print(f"{name} 7 days float32: energy balance {k['energy_balance_rel_error']:.1e}, heat "
          f"balance {k['heat_balance_rel_error']:.1e}, Tj max {k['t_junction_max_c']:.1f} degC")
    assert k["duration_s"] == WEEK
    assert k["energy_balance_rel_error"] < 1e-5
    assert k["heat_balance_rel_error"] < 1e-4
    for key in ("t_supply_c", "t_fw_c", "t_junction_mean_c", "ups_soc", "uc_soc", "o2_frac",
                "ln2_tank_kg"):
        assert np.all(np.isfinite(s[key])), key
    assert 0 < s["t_supply_c"].min() and s["t_supply_c"].max() < 60
    assert s["t_junction_max_c"].max() < sc.params.gpu.t_shutdown_c
    assert 0 <= s["ups_soc"].min() and s["ups_soc"].max() <= 1
    # daily KPIs do not drift: day 2 and day 7 agree (day 1 holds the start-up transient)
    for key, tol in (("e_it_j", 0.01), ("work_rack_s", 0.01), ("e_grid_j", 0.03)):
        v = s[key].astype(np.float64).reshape(7, DAY).sum(axis=1)
        assert v[1] > 0 and v[6] == pytest.approx(v[1], rel=tol), (key, v)
