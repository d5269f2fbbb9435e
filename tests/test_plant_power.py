"""Power chain: determinism, jit/vmap/eager agreement, storage bounds, gradients, sanity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lowpass_ultracap_policy

from heatsync.physics import (
    Action,
    default_action,
    exogenous_at,
    load_scenario,
    replace,
    rollout,
    simulate,
    step,
)


def _tile(a: Action, n: int) -> Action:
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), a)


def _random_actions(p, key, n, extreme=True):
    """Uniform random actions over (and beyond) every actuator's range."""
    lo_hi = {
        "gpu_cap_w": (0.0, 2 * p.gpu.p_max_w), "gpu_floor_frac": (-0.5, 1.5),
        "ramp_up_w_per_s": (0.0, 2e5), "ramp_down_w_per_s": (0.0, 2e5),
        "uc_target_w": (-1e5, 3e5), "uc_gain": (-0.5, 1.5),
        "ups_target_w": (-1e6, 3e6), "ups_gain": (-0.5, 1.5), "pump_speed": (-0.5, 1.5),
        "supply_setpoint_c": (0.0, 60.0), "ln2_valve": (-0.5, 1.5), "ln2_order": (0.0, 1.0),
    }
    base = default_action(p)
    keys = jax.random.split(key, len(lo_hi))
    fields = {}
    for k_, (name, (lo, hi)) in zip(keys, lo_hi.items(), strict=True):
        shape = (n,) + jnp.shape(getattr(base, name))
        u = jax.random.uniform(k_, shape)
        if extreme:  # a third of the draws sit at the ends
            u = jnp.where(u < 0.15, 0.0, jnp.where(u > 0.85, 1.0, u))
        fields[name] = lo + (hi - lo) * u
    return Action(**fields)


def test_same_key__gives_the_same_rollout_and_another_key_differs(scenarios):
    sc = scenarios["default"]
    a = simulate(sc, seed=3, steps=120).series
    b = simulate(sc, seed=3, steps=120).series
    c = simulate(sc, seed=4, steps=120).series
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["ambient_c"], c["ambient_c"])


def test_step__jit_equals_eager(x64):
    sc = load_scenario("sync-swings")
    p, s = sc.params, sc.init_state()
    exo = exogenous_at(sc.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)
    a = replace(sc.control, gpu_cap_w=jnp.full((p.n_racks,), 900.0),
                uc_gain=jnp.ones(p.n_racks), ups_gain=jnp.asarray(0.5),
                ups_target_w=jnp.asarray(6e5))
    jitted = jax.jit(step)
    s_j, o_j = s, None
    s_e, o_e = s, None
    for _ in range(2):
        s_j, o_j = jitted(p, s_j, a, exo)
    with jax.disable_jit():
        for _ in range(2):
            s_e, o_e = step(p, s_e, a, exo)
    for x, y in zip(jax.tree_util.tree_leaves((s_j, o_j)), jax.tree_util.tree_leaves((s_e, o_e)),
                    strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-10, atol=1e-9)


def test_rollout__vmap_equals_a_python_loop(x64):
    sc = load_scenario("default")
    p, s0 = sc.params, sc.init_state()
    acts = _random_actions(p, jax.random.PRNGKey(1), 40, extreme=False)
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    batched = jax.jit(jax.vmap(lambda k: rollout(p, sc.exo, s0, k, acts, 40)))(keys)
    for i in range(3):
        single = rollout(p, sc.exo, s0, keys[i], acts, 40)
        for x, y in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(batched),
                        strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y)[i], rtol=1e-10, atol=1e-9)


def test_step__traces_once_per_shape(scenarios):
    sc = scenarios["default"]
    p, s = sc.params, sc.init_state()
    traces = []

    @jax.jit
    def counted(p, s, a, exo):
        traces.append(1)
        return step(p, s, a, exo)

    exo = exogenous_at(sc.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)
    for i in range(4):
        a = replace(sc.control, pump_speed=jnp.asarray(0.5 + 0.1 * i))
        s, _ = counted(p, s, a, replace(exo, t_s=jnp.asarray(float(i))))
    assert len(traces) == 1
    sc16 = load_scenario("default", plant={"n_racks": 16, "n_jobs": 2}, jobs=[{"racks": "all"}])
    exo16 = exogenous_at(sc16.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)
    counted(sc16.params, sc16.init_state(), default_action(sc16.params), exo16)
    assert len(traces) == 2


def test_storage__stays_in_bounds_for_any_action(scenarios):
    sc = scenarios["grid-outage"]
    p = sc.params
    n = 900
    acts = _random_actions(p, jax.random.PRNGKey(11), n)
    # small stores so the bounds are actually reached
    p = replace(p, ultracap=replace(p.ultracap, e_max_j=5e3),
                ups=replace(p.ups, e_max_j=5e6))
    _, ser = rollout(p, sc.exo, sc.init_state(), jax.random.PRNGKey(0), acts, n)
    ser = jax.device_get(ser)
    uc_lo, uc_hi, ups = ser["uc_soc_min"], ser["uc_soc_max"], ser["ups_soc"]
    assert np.all(np.isfinite(uc_lo)) and np.all(np.isfinite(uc_hi)) and np.all(np.isfinite(ups))
    assert uc_lo.min() >= -1e-6 and uc_hi.max() <= 1 + 1e-6
    assert ups.min() >= p.ups.e_min_frac - 1e-6 and ups.max() <= 1 + 1e-6
    # the bounds were reached, so the test exercises the limits
    assert uc_lo.min() < 0.02 and uc_hi.max() > 0.98
    assert ups.min() < p.ups.e_min_frac + 0.02


def test_sync_swings__unbuffered_grid_swings_at_the_job_period(scenarios):
    sc = scenarios["sync-swings"]
    res = simulate(sc, steps=120)
    fine = res.series["p_grid_sub_w"][20:].reshape(-1)  # after the first 20 s
    h = sc.params.h_s
    g = sc.params.gpu
    job = sc.config["jobs"][0]
    dyn_range = sc.params.n_racks * g.n_gpu * (g.p_max_w - g.p_idle_w) * (
        job["u_compute"] - job["u_comm"]) / sc.params.grid.eta_dist
    swing = np.percentile(fine, 99) - np.percentile(fine, 1)
    assert swing > 0.8 * dyn_range, (swing, dyn_range)
    spec = np.abs(np.fft.rfft(fine - fine.mean()))
    freq = np.fft.rfftfreq(fine.size, d=h)
    assert freq[np.argmax(spec)] == pytest.approx(1.0 / job["period_s"], rel=0.02)


def test_lowpass_ultracap__cuts_band_share_by_at_least_half(scenarios):
    sc = scenarios["sync-swings"]
    base = simulate(sc, steps=600).kpis
    smooth = simulate(sc, lowpass_ultracap_policy(), steps=600).kpis
    print(f"band share: none {base['band_share']:.3f}, low-pass ultracap "
          f"{smooth['band_share']:.3f}; fft {base['band_share_fft']:.3f} -> "
          f"{smooth['band_share_fft']:.3f}")
    assert smooth["band_share"] < 0.5 * base["band_share"]
    assert smooth["band_share_fft"] < 0.5 * base["band_share_fft"]
    assert smooth["work_lost_frac"] == pytest.approx(base["work_lost_frac"], abs=1e-6)


def test_power_floor__flattens_swing_and_waste_matches_hand_calculation(scenarios):
    sc = scenarios["sync-swings"]
    p = sc.params
    floor = 0.9
    steps = 300
    res = simulate(sc, replace(sc.control, gpu_floor_frac=jnp.full((p.n_racks,), floor)),
                   steps=steps)
    base = simulate(sc, steps=steps)
    g, job = p.gpu, sc.config["jobs"][0]
    p_comm = g.p_idle_w + (g.p_max_w - g.p_idle_w) * job["u_comm"]  # f = 1, uncapped
    hand_j = p.n_racks * g.n_gpu * (floor * g.p_max_w - p_comm) * steps * (1 - job["duty"])
    got_j = res.kpis["energy_waste_kwh"] * 3.6e6
    print(f"waste: simulated {got_j / 3.6e6:.3f} kWh, by hand {hand_j / 3.6e6:.3f} kWh")
    assert got_j == pytest.approx(hand_j, rel=0.01)

    def swing(r):
        x = r.series["p_grid_sub_w"][20:].reshape(-1)
        return np.percentile(x, 99) - np.percentile(x, 1)

    assert swing(res) < 0.15 * swing(base)


def test_grid_outage__ups_carries_load_until_generator_and_bus_never_drops(scenarios):
    sc = scenarios["grid-outage"]
    res = simulate(sc)
    s, k = res.series, res.kpis
    f = sc.config["faults"][0]
    t0, dur = int(f["start_s"]), int(f["duration_s"])
    gen_start = float(sc.params.grid.gen_start_s)
    assert k["served_min_frac"] == 1.0
    assert k["energy_unserved_kwh"] == 0.0
    out = slice(t0, t0 + int(gen_start))
    assert np.all(s["e_grid_j"][out] == 0) and np.all(s["e_gen_j"][out] == 0)
    assert np.all(s["ups_throughput_j"][out] > 0)
    assert s["ups_soc"][t0 + int(gen_start)] < s["ups_soc"][t0 - 1]
    gen = slice(t0 + int(gen_start) + 1, t0 + dur)
    assert np.all(s["e_gen_j"][gen] > 0) and np.all(s["e_grid_j"][gen] == 0)
    assert np.all(s["e_grid_j"][t0 + dur + 1:] > 0)
    assert k["trips"] == 0


def test_grid_outage__small_ups_sheds_load_and_says_so(scenarios):
    sc = load_scenario("grid-outage", plant={"ups": {"e_max_j": 3e6}})
    k = simulate(sc).kpis
    assert k["served_min_frac"] < 1.0
    assert k["energy_unserved_kwh"] > 0.0


def _cap_cost(sc, steps):
    p, s0 = sc.params, sc.init_state()
    key = jax.random.PRNGKey(0)

    def cost(cap_w, uc_e_max):
        pp = replace(p, ultracap=replace(p.ultracap, e_max_j=uc_e_max))
        a = replace(sc.control, gpu_cap_w=cap_w, uc_gain=jnp.ones(p.n_racks),
                    uc_target_w=jnp.full((p.n_racks,), 7.5e4))
        acts = _tile(a, steps)
        _, ser = rollout(pp, sc.exo, s0, key, acts, steps)
        g = ser["p_grid_sub_w"]
        return jnp.sum(ser["cost_energy_usd"]) + 1e-12 * jnp.sum((g - jnp.mean(g)) ** 2)

    return cost


def test_gradients__cap_and_ultracap_size_agree_with_finite_differences(x64):
    """Caps differ per rack so the lockstep minimum over a job's racks is not at a tie
    (a kink): rack 0 sets the job's pace, the other racks' caps do not bind."""
    sc = load_scenario("sync-swings")
    cost = _cap_cost(sc, 60)
    cap = 900.0 + 10.0 * jnp.arange(sc.params.n_racks, dtype=jnp.float64)
    e_max = jnp.asarray(3.0e4)
    g_cap, g_e = jax.jit(jax.grad(cost, argnums=(0, 1)))(cap, e_max)
    f = jax.jit(cost)
    eps = 1e-3
    for i in (0, 5):
        d = jnp.zeros_like(cap).at[i].set(eps)
        fd = (f(cap + d, e_max) - f(cap - d, e_max)) / (2 * eps)
        assert float(g_cap[i]) == pytest.approx(float(fd), rel=1e-4, abs=1e-12)
    assert abs(float(g_cap[0])) > 1e-3  # the binding cap matters
    eps = 1.0
    fd = (f(cap, e_max + eps) - f(cap, e_max - eps)) / (2 * eps)
    assert abs(float(g_e)) > 1e-7
    assert float(g_e) == pytest.approx(float(fd), rel=1e-4)
