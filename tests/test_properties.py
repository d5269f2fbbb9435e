"""Property-based tests: randomized Params within their documented ranges and random
actions keep every quantity finite, every state in its physical range and the
balances closed, on every scenario.

Each continuous Params field is drawn log-uniformly within its declared [lo, hi]
intersected with [default / 3, default x 3] (the neighbourhood where the other
defaults stay physically coherent), then ordered constraints are restored
(slowdown < hard slowdown < shutdown, idle < cap_min <= TDP, setpoint range) and
the draw is checked by the same validator users get.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heatsync.physics import (
    Action,
    Params,
    ScenarioError,
    init_state,
    list_scenarios,
    load_scenario,
    replace,
    rollout,
)
from heatsync.physics._pytree import field_info
from heatsync.physics.cryo import O2_AMBIENT
from heatsync.physics.scenario import _cross_check

STEPS = 100
EXAMPLES = 4
TRIED = {"param_sets": 0, "steps": 0}


def _randomize(obj, u: np.ndarray, idx: list):
    """Replace every continuous leaf of a Params (sub)tree using uniforms ``u``."""
    changes = {}
    for name, f in field_info(type(obj)).items():
        v = getattr(obj, name)
        if f.metadata.get("sub"):
            changes[name] = _randomize(v, u, idx)
            continue
        if f.metadata.get("static") or "lo" not in f.metadata or np.ndim(v) > 0:
            continue
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        d = float(v)
        i = idx[0] % len(u)
        idx[0] += 1
        if d > 0:
            a, b = max(lo, d / 3), min(hi, d * 3)
            if a > 0 and b > a:
                changes[name] = float(np.exp(np.log(a) + u[i] * (np.log(b) - np.log(a))))
        elif hi is not None and lo is not None and hi > lo:
            changes[name] = float(lo + u[i] * (min(hi, lo + 1.0) - lo))
    return dataclasses.replace(obj, **changes)


def _coherent(p: Params) -> Params:
    g = p.gpu
    t = sorted([g.t_slowdown_c, g.t_hard_slowdown_c, g.t_shutdown_c])
    t = [t[0], max(t[1], t[0] + 0.5), max(t[2], t[1] + 1.0, t[0] + 1.5)]
    p_idle = min(g.p_idle_w, 0.5 * g.p_max_w)
    cap_min = min(max(g.cap_min_w, p_idle * 1.2), g.p_max_w)
    g = replace(g, t_slowdown_c=t[0], t_hard_slowdown_c=t[1], t_shutdown_c=t[2],
                p_idle_w=p_idle, cap_min_w=cap_min,
                ramp_min_w_per_s=min(g.ramp_min_w_per_s, g.ramp_max_w_per_s))
    c = p.cdu
    lo, hi = sorted([c.setpoint_min_c, c.setpoint_max_c])
    c = replace(c, setpoint_min_c=lo, setpoint_max_c=max(hi, lo + 5.0))
    return replace(p, gpu=g, cdu=c, dt_s=1.0)


def _random_actions(p: Params, seed: int) -> Action:
    """Uniformly random actions over each actuator's range, one per step (numpy).

    Built on the host and passed as traced inputs, so every draw of a scenario
    reuses one compiled rollout (a policy closure would be a new static argument
    and recompile per draw).
    """
    u = np.random.default_rng(seed).uniform(size=(12, STEPS, p.n_racks))
    g = p.gpu
    return Action(
        gpu_cap_w=g.cap_min_w + (g.p_max_w - g.cap_min_w) * u[0],
        gpu_floor_frac=u[1], ramp_up_w_per_s=g.ramp_max_w_per_s * u[2] ** 3,
        ramp_down_w_per_s=g.ramp_max_w_per_s * u[3] ** 3, uc_target_w=2e5 * u[4],
        uc_gain=u[5], ups_target_w=2e6 * u[6, :, 0], ups_gain=u[7, :, 0],
        pump_speed=u[8, :, 0], supply_setpoint_c=5.0 + 45.0 * u[9, :, 0],
        ln2_valve=u[10, :, 0], ln2_order=(u[11, :, 0] < 0.01).astype(np.float64))


def _run(name, params, seed):
    sc = load_scenario(name)
    s0 = init_state(params, sc.jobs, setpoint_c=float(sc.control.supply_setpoint_c))
    final, ser = rollout(params, sc.exo, s0, jax.random.PRNGKey(seed),
                         _random_actions(params, seed), STEPS)
    return sc, s0, final, jax.device_get(ser)


@pytest.mark.parametrize("name", list_scenarios())
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(u=st.lists(st.floats(0.0, 1.0), min_size=64, max_size=64), seed=st.integers(0, 2**16))
def test_random_params_and_actions__finite_in_range_and_balanced(name, u, seed):
    from heatsync.physics.simulate import compute_kpis

    base = load_scenario(name).params
    p = _coherent(_randomize(base, np.asarray(u), [0]))
    try:
        _cross_check(p)
    except ScenarioError:
        pytest.skip("draw rejected by the validator")  # pragma: no cover
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), p)
        sc, s0, s1, ser = _run(name, p64, seed)
        k = compute_kpis(p64, s0, s1, ser)
    TRIED["param_sets"] += 1
    TRIED["steps"] += STEPS
    for key, v in ser.items():
        assert np.all(np.isfinite(v)), key
    for key, v in k.items():
        assert np.isfinite(v), key
    assert ser["uc_soc_min"].min() >= -1e-9 and ser["uc_soc_max"].max() <= 1 + 1e-9
    assert ser["ups_soc"].min() >= p.ups.e_min_frac - 1e-9 and ser["ups_soc"].max() <= 1 + 1e-9
    assert 0 <= ser["ln2_tank_kg"].min() and ser["ln2_tank_kg"].max() <= p.ln2.tank_capacity_kg
    assert 0 < ser["o2_frac"].min() and ser["o2_frac"].max() <= O2_AMBIENT + 1e-12
    assert -20 < ser["t_supply_c"].min() and ser["t_junction_max_c"].max() < 250
    assert k["energy_balance_rel_error"] < 1e-9
    assert k["heat_balance_rel_error"] < 1e-9


def test_properties__report_how_many_draws_ran():
    """Runs last in this module (pytest keeps file order): prints the tally."""
    print(f"property tests: {TRIED['param_sets']} parameter sets, {TRIED['steps']} steps")
    assert TRIED["param_sets"] >= EXAMPLES * len(list_scenarios()) * 0.8
