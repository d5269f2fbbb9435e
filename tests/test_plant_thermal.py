"""Thermal and cryogenic chain: LN2 hold time, chiller trip, oxygen, dt convergence,
bounds under random actions, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heatsync.physics import default_action, load_scenario, replace, rollout, simulate
from heatsync.physics.cryo import O2_AMBIENT


def ln2_rule(margin_k=1.0):
    """Open the LN2 valve fully while supply is more than ``margin_k`` above its setpoint."""

    def policy(p, s, exo):
        a = default_action(p)
        return replace(a, ln2_valve=jnp.where(s.t_supply_c > a.supply_setpoint_c + margin_k,
                                              1.0, 0.0))

    return policy


def test_ln2_hold_time__matches_mass_times_heat_per_kg_over_load():
    sc = load_scenario(
        "default",
        plant={"cdu": {"ua_w_per_k": 0.0}},  # primary cooling lost
        jobs=[{"racks": "all", "duty": 1.0, "u_compute": 1.0}],  # steady heat load
        control={"ln2_valve": 1.0},
    )
    p = sc.params
    m0 = float(p.ln2.fill_init * p.ln2.tank_capacity_kg)
    res = simulate(sc, steps=6000)
    s = res.series
    empty = np.flatnonzero(s["ln2_tank_kg"] <= 1e-6 * m0)
    assert empty.size > 0, "tank never emptied"
    t_empty = float(s["t_s"][empty[0]])
    before = slice(60, empty[0] - 5)
    load_w = float(np.mean((s["q_it_j"][before] - s["q_air_j"][before]) / p.dt_s))
    t_sup_k = float(np.mean(s["t_supply_c"][before])) + 273.15
    q_per_kg = p.ln2.latent_j_per_kg + p.ln2.cp_gas_j_per_kg_k * (t_sup_k - p.ln2.t_boil_k)
    expected = m0 * q_per_kg / load_w
    print(f"LN2 hold time: simulated {t_empty:.0f} s, M q / P = {expected:.0f} s "
          f"({m0:.0f} kg x {q_per_kg / 1e3:.0f} kJ/kg / {load_w / 1e3:.0f} kW)")
    assert t_empty == pytest.approx(expected, rel=0.02)
    # after the tank runs dry the loop warms: primary cooling is really gone
    assert s["t_supply_c"][-1] > s["t_supply_c"][empty[0]] + 5.0


def test_chiller_trip__fixed_setpoints_pass_slowdown_and_ln2_rule_holds_below(scenarios):
    sc = scenarios["chiller-trip"]
    t_slow = float(sc.params.gpu.t_slowdown_c)
    fixed = simulate(sc).kpis
    rule = simulate(sc, ln2_rule()).kpis
    print(f"chiller-trip peak junction: fixed setpoints {fixed['t_junction_max_c']:.1f} degC, "
          f"LN2 rule {rule['t_junction_max_c']:.1f} degC (slowdown {t_slow:.0f} degC); "
          f"LN2 used {rule['ln2_used_kg']:.0f} kg")
    assert fixed["t_junction_max_c"] > t_slow
    assert fixed["throttled_gpu_s"] > 0
    assert fixed["ln2_used_kg"] == 0.0
    assert rule["t_junction_max_c"] < t_slow
    assert rule["throttled_gpu_s"] == 0.0
    assert rule["ln2_used_kg"] > 0.0


def test_chiller_trip__heat_rejection_resumes_when_chiller_returns(scenarios):
    sc = scenarios["chiller-trip"]
    s = simulate(sc).series
    f = sc.config["faults"][0]
    t0, t1 = int(f["start_s"]), int(f["start_s"] + f["duration_s"])
    assert np.all(s["q_chiller_j"][t0 + 1:t1 - 1] == 0)
    assert s["q_chiller_j"][t1 + 5] > 0
    assert s["t_junction_max_c"][-1] < s["t_junction_max_c"][t1 - 1] - 5.0


def test_vent_failure__oxygen_falls_below_alarm_and_trips_hazard(scenarios):
    sc = scenarios["vent-failure"]
    bad = simulate(sc).kpis
    assert bad["ln2_used_kg"] > 0
    assert bad["o2_min_frac"] < 0.195
    assert bad["o2_hazard_s"] > 0
    vented = [f for f in sc.config["faults"] if f["kind"] != "vent-failure"]
    good = simulate(load_scenario("vent-failure", faults=vented)).kpis
    print(f"room O2 minimum: vent failed {bad['o2_min_frac']:.3f}, vent working "
          f"{good['o2_min_frac']:.4f}")
    assert good["ln2_used_kg"] > 0
    assert good["o2_min_frac"] == pytest.approx(O2_AMBIENT, abs=1e-6)
    assert good["o2_hazard_s"] == 0


DT_KPIS = ("energy_grid_kwh", "energy_it_kwh", "energy_cooling_kwh", "pue", "cost_total_usd",
           "carbon_kg", "water_l", "t_junction_max_c", "t_supply_max_c", "work_done_rack_s",
           "peak_demand_kw", "energy_waste_kwh", "ln2_used_kg", "overcool_k_s")


def test_halving_dt__changes_one_hour_kpis_by_less_than_one_percent(x64):
    """Substeps 0.1 -> 0.05 -> 0.025 -> 0.0125 s on the chiller-trip hour (fault,
    throttling, dry cooler and chiller all active). KPIs defined by the resolution
    (largest ramp between substeps, band share up to Nyquist) are excluded.

    ``throttled_gpu_s`` (time above slowdown) is tested for its convergence order
    instead: under throttling the junction is held within ~0.5 K of the slowdown
    threshold, so time above it is ill-conditioned; its change must shrink by more
    than half per halving and fall below 1 % by the last one."""
    runs = {}
    for n_sub in (10, 20, 40, 80):
        sc = load_scenario("chiller-trip", plant={"n_sub": n_sub})
        runs[n_sub] = simulate(sc, steps=3600).kpis
    worst = {}
    pairs = ((10, 20), (20, 40), (40, 80))
    for a, b in pairs:
        for k in DT_KPIS:
            rel = abs(runs[a][k] - runs[b][k]) / max(abs(runs[b][k]), 1e-9)
            worst[k] = max(worst.get(k, 0.0), rel)
            assert rel < 0.01, (k, a, b, runs[a][k], runs[b][k])
    thr = [abs(runs[a]["throttled_gpu_s"] - runs[b]["throttled_gpu_s"])
           / runs[b]["throttled_gpu_s"] for a, b in pairs]
    print("largest relative change per halving:",
          {k: f"{v:.1e}" for k, v in sorted(worst.items(), key=lambda kv: -kv[1])},
          "throttled_gpu_s per halving:", [f"{x:.1e}" for x in thr])
    assert runs[80]["throttled_gpu_s"] > 0
    assert thr[1] < 0.5 * thr[0] and thr[2] < 0.5 * thr[1] and thr[2] < 0.01


def _random_policy(seed):
    key = jax.random.PRNGKey(seed)

    def policy(p, s, exo):
        a = default_action(p)
        k = jax.random.fold_in(key, s.n_steps.astype(jnp.int32))
        ks = jax.random.split(k, 8)
        r = p.n_racks
        u = lambda i, shape=(): jax.random.uniform(ks[i], shape)  # noqa: E731
        return replace(
            a,
            gpu_cap_w=p.gpu.cap_min_w + (p.gpu.p_max_w - p.gpu.cap_min_w) * u(0, (r,)),
            gpu_floor_frac=u(1, (r,)),
            uc_target_w=2e5 * u(2, (r,)),
            uc_gain=u(3, (r,)),
            ups_target_w=2e6 * u(4),
            ups_gain=u(5),
            pump_speed=jnp.where(u(6) < 0.02, 0.0, u(6)),
            supply_setpoint_c=5.0 + 45.0 * u(7),
            ln2_valve=jax.random.uniform(jax.random.fold_in(k, 99)),
            ln2_order=(jax.random.uniform(jax.random.fold_in(k, 98)) < 0.001).astype(
                jnp.float32),
        )

    return policy


def test_random_actions__no_state_leaves_its_physical_range_for_3e4_steps():
    """Random actions over every actuator through every fault kind (8.3 h, 3e5 substeps)."""
    sc = load_scenario("vent-failure", faults=[
        {"kind": "chiller-trip", "start_s": 300.0, "duration_s": 6000.0},
        {"kind": "pump-failure", "start_s": 9000.0, "duration_s": 600.0},
        {"kind": "grid-outage", "start_s": 15000.0, "duration_s": 900.0},
        {"kind": "vent-failure", "start_s": 18000.0, "duration_s": 5000.0},
        {"kind": "heat-wave", "start_s": 21000.0, "duration_s": 9000.0, "magnitude": 10.0},
    ])
    p = sc.params
    n = 30_000
    _, ser = rollout(p, sc.exo, sc.init_state(), jax.random.PRNGKey(0), None, n,
                     policy=_random_policy(1))
    s = jax.device_get(ser)
    for k, v in s.items():
        assert np.all(np.isfinite(v)), k
    assert s["uc_soc_min"].min() >= -1e-6 and s["uc_soc_max"].max() <= 1 + 1e-6
    assert s["ups_soc"].min() >= p.ups.e_min_frac - 1e-6 and s["ups_soc"].max() <= 1 + 1e-6
    assert s["ln2_tank_kg"].min() >= 0 and s["ln2_tank_kg"].max() <= p.ln2.tank_capacity_kg
    assert s["o2_frac"].min() > 0 and s["o2_frac"].max() <= O2_AMBIENT + 1e-6
    assert 0 <= s["served_min_frac"].min() and s["served_min_frac"].max() <= 1
    for k in ("t_supply_c", "t_fw_c", "t_junction_mean_c"):
        assert s[k].min() > -5 and s[k].max() < 150, k
    assert s["t_junction_max_c"].max() < 150
    for k in ("e_grid_j", "e_gen_j", "e_it_j", "e_cool_j", "e_loss_j", "water_l",
              "ln2_used_kg", "q_ln2_j", "q_chiller_j", "q_dry_j"):
        assert s[k].min() >= 0, k
    # the random walk visited the hard corners
    assert s["trips"].sum() > 0 and s["ln2_used_kg"].sum() > 0 and s["e_gen_j"].sum() > 0
    print(f"3e4 random steps: max junction {s['t_junction_max_c'].max():.1f} degC, "
          f"trips {s['trips'].sum():.0f}, min O2 {s['o2_frac'].min():.3f}, "
          f"supply {s['t_supply_c'].min():.1f}..{s['t_supply_c'].max():.1f} degC")


def _thermal_cost(sc, steps):
    key = jax.random.PRNGKey(0)

    def cost(pump, setpoint, valve, r_gpu, ua):
        p = sc.params
        p = replace(p, coldplate=replace(p.coldplate, r_gpu_k_per_w=r_gpu),
                    cdu=replace(p.cdu, ua_w_per_k=ua))
        a = replace(default_action(p), pump_speed=pump, supply_setpoint_c=setpoint,
                    ln2_valve=valve)
        acts = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (steps,) + jnp.shape(x)), a)
        _, s = rollout(p, sc.exo, sc.init_state(), key, acts, steps)
        return (jnp.sum(s["cost_energy_usd"]) + 0.4 / 0.807 * jnp.sum(s["ln2_used_kg"])
                + 0.01 * jnp.sum(s["t_junction_max_c"]) + 0.01 * jnp.sum(s["t_supply_max_c"]))

    return cost


def _trip_from_start():
    return load_scenario("chiller-trip", faults=[{"kind": "chiller-trip", "start_s": 0.0,
                                                   "duration_s": 7200.0}])


def test_gradients__cooling_actions_and_params_agree_with_finite_differences(x64):
    sc = _trip_from_start()
    cost = _thermal_cost(sc, 600)
    x0 = (jnp.asarray(0.7), jnp.asarray(30.0), jnp.asarray(0.3), jnp.asarray(0.025),
          jnp.asarray(2.5e5))
    grads = jax.jit(jax.grad(cost, argnums=(0, 1, 2, 3, 4)))(*x0)
    f = jax.jit(cost)
    names = ("pump_speed", "supply_setpoint_c", "ln2_valve", "r_gpu_k_per_w", "ua_w_per_k")
    for i, name in enumerate(names):
        eps = 1e-5 * max(abs(float(x0[i])), 1e-3)
        up = list(x0)
        dn = list(x0)
        up[i] = x0[i] + eps
        dn[i] = x0[i] - eps
        fd = (f(*up) - f(*dn)) / (2 * eps)
        print(f"d cost / d {name}: grad {float(grads[i]):.6e}, fd {float(fd):.6e}")
        assert abs(float(grads[i])) > 0, name
        assert float(grads[i]) == pytest.approx(float(fd), rel=1e-4), name


def test_gradients__stay_finite_over_one_hour():
    sc = _trip_from_start()
    cost = _thermal_cost(sc, 3600)
    grads = jax.jit(jax.grad(cost, argnums=(0, 1, 2, 3, 4)))(
        jnp.asarray(0.7), jnp.asarray(30.0), jnp.asarray(0.3), jnp.asarray(0.025),
        jnp.asarray(2.5e5))
    assert all(bool(jnp.isfinite(g)) for g in grads)
