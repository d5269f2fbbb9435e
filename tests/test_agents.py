"""Baseline controllers: what each one must show, the registry and the loader.

Each task compiles its batched env once (N = 3, a module fixture): the rows of
one rollout are driven by different controllers, each of which acts on the
whole batch (so every controller runs batched) and contributes its own row's
action. Episodes are short (``episode__steps``); the KPIs come from the env
info (the online values of the plant state).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import heatsync  # noqa: F401  (registers the ids)
from heatsync.agents import (
    BASELINES,
    EasyBackfill,
    FixedSetpoints,
    LowPassStorage,
    PolicyError,
    load_policy,
)
from heatsync.benchmark import parse_seeds
from heatsync.envs import JaxVectorEnv, make_task
from heatsync.envs.cooling_dispatch import cooling_layout
from heatsync.envs.power_smoothing import smoothing_layout

N = 3
WARMUP = 60


def _rollout(env, policies, steps, seed):
    """Drive row i of ``env`` with ``policies[i]`` (each acting on the whole batch).

    **Returns**: ``(infos, actions, obs)``: per-step info dicts, each policy's
    batched actions of the first step and the last batch of observations.
    """
    obs, _ = env.reset(seed=seed)
    for p in policies:
        p.reset(seed=0)
    infos, first = [], None
    for _ in range(steps):
        acts = [np.asarray(p.act(obs)) for p in policies]
        if first is None:
            first = acts
        rows = np.stack([a[i] for i, a in enumerate(acts)])
        obs, _, term, trunc, info = env.step(rows)
        assert not term.any(), {k: v for k, v in info.items() if k.startswith("cause_")}
        infos.append(info)
    return infos, first, obs


def _series(infos, key):
    return np.stack([np.asarray(i[key], dtype=float) for i in infos])


# ---- PowerSmoothing on sync-swings -----------------------------------------------------------

@pytest.fixture(scope="module")
def smoothing():
    env = JaxVectorEnv("PowerSmoothing-v0", N, scenario="sync-swings", episode__steps=400)
    names = ["fixed", "firmware", "lowpass"]
    pols = [BASELINES["PowerSmoothing"][k](env) for k in names]
    infos, first, last = _rollout(env, pols, 400, seed=[7, 7, 7])
    return dict(env=env, names=names, pols=pols, infos=infos, first=first, last=last)


def test_firmware_smoothing__cuts_band_share_versus_noop_on_sync_swings(smoothing):
    share = smoothing["infos"][-1]["band_share"]  # online 0.1-20 Hz share, whole episode
    noop, firmware, lowpass = share
    assert noop > 0.1  # the lockstep swing: ~0.13 of the spectral energy in the band
    assert firmware < 0.1 * noop
    assert lowpass < 0.01 * noop


def test_lowpass_storage__keeps_grid_ramps_under_the_scenario_limit(smoothing):
    env = smoothing["env"]
    limit = float(env.params.plant.grid.ramp_limit_w_per_s)
    ramp = _series(smoothing["infos"], "ramp_max_w_per_s")  # substep resolution
    after = ramp[WARMUP:].max(axis=0)
    assert after[2] < limit  # low-pass storage dispatch
    assert after[0] > 1000 * limit  # no-op: MW/s swings
    # the storage stays inside its range while doing it
    soc = _series(smoothing["infos"], "ups_soc")[:, 2]
    assert soc.min() > 0.5 and soc.max() < 0.99


def test_firmware_smoothing__wastes_energy_to_buy_smoothness(smoothing):
    waste = _series(smoothing["infos"], "e_waste_j").sum(axis=0)
    assert waste[0] == 0.0 and waste[2] == 0.0 and waste[1] > 0.0


# ---- CoolingDispatch on chiller-trip ---------------------------------------------------------

@pytest.fixture(scope="module")
def cooling():
    steps = 2200  # the chiller trips at 300 s; the do-nothing loop reaches slowdown ~1800 s
    env = JaxVectorEnv("CoolingDispatch-v0", N, scenario="chiller-trip", episode__steps=steps)
    names = ["fixed", "thermostat", "pid"]
    pols = [BASELINES["CoolingDispatch"][k](env) for k in names]
    infos, first, last = _rollout(env, pols, steps, seed=[7, 7, 7])
    return dict(env=env, names=names, pols=pols, infos=infos, first=first, last=last)


def test_rule_based_cooling__keeps_junctions_below_slowdown_on_chiller_trip(cooling):
    slowdown = float(cooling["env"].params.plant.gpu.t_slowdown_c)
    tj = _series(cooling["infos"], "t_junction_max_c").max(axis=0)
    throttled = _series(cooling["infos"], "throttled_gpu_s").sum(axis=0)
    ln2 = _series(cooling["infos"], "ln2_used_kg").sum(axis=0)
    assert tj[0] > slowdown and throttled[0] > 0.0  # no-op
    assert tj[1] < slowdown and throttled[1] == 0.0  # thermostat with LN2
    assert tj[2] < slowdown and throttled[2] == 0.0  # PID
    assert ln2[0] == 0.0 and ln2[1] > 0.0  # the thermostat did it with LN2


# ---- PowerAwareScheduling --------------------------------------------------------------------

@pytest.fixture(scope="module")
def scheduling():
    steps = 800
    env = JaxVectorEnv("PowerAwareScheduling-v0", N, episode__steps=steps)
    names = ["fcfs", "easy", "greedy"]
    pols = [BASELINES["PowerAwareScheduling"][k](env) for k in names]
    infos, first, last = _rollout(env, pols, steps, seed=[7, 7, 7])  # the same job mix in each row
    return dict(env=env, names=names, pols=pols, infos=infos, first=first, last=last)


def test_easy_backfill__finishes_more_work_than_fcfs_on_the_job_mix(scheduling):
    work = _series(scheduling["infos"], "work_rack_s").sum(axis=0)
    done = scheduling["infos"][-1]["jobs_done"]
    assert work[1] > 1.03 * work[0]
    assert done[1] >= done[0]


def test_schedulers__start_only_jobs_that_fit(scheduling):
    started = _series(scheduling["infos"], "job_started").sum(axis=0)
    assert (started > 5).all()


# ---- Facility --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def facility():
    steps = 120
    env = JaxVectorEnv("Facility-v0", N, episode__steps=steps)
    names = ["fixed", "rule", "rule"]
    pols = [BASELINES["Facility"][k](env) for k in names]
    infos, first, last = _rollout(env, pols, steps, seed=7)
    return dict(env=env, names=names, pols=pols, infos=infos, first=first, last=last)


def test_facility_rule__runs_jobs_with_a_ramp_limited_grid(facility):
    env = facility["env"]
    work = _series(facility["infos"], "work_rack_s").sum(axis=0)
    ramp = _series(facility["infos"], "ramp_max_w_per_s")[WARMUP:].max(axis=0)
    assert (work > 0).all()  # fixed runs the queue first come, first served, as the rule
    limit = float(env.params.plant.grid.ramp_limit_w_per_s)
    assert (ramp[1:] < limit).all() and ramp[0] > limit, (ramp, limit)  # the rule smooths


# ---- every baseline: batched, unbatched, in the space ----------------------------------------

FIXTURES = {"PowerSmoothing": "smoothing", "CoolingDispatch": "cooling",
            "PowerAwareScheduling": "scheduling", "Facility": "facility"}
ALL = [(task, name) for task, table in BASELINES.items() for name in table]


@pytest.mark.parametrize(("task", "name"), ALL)
def test_baseline__acts_batched_and_unbatched_in_the_space(task, name, request):
    run = request.getfixturevalue(FIXTURES[task])
    env = run["env"]
    obs = run["last"]  # a late batch of obs
    space = env.single_action_space
    batched = BASELINES[task][name](env)
    single = BASELINES[task][name](env.params)
    a = batched.act(obs)
    b = single.act(obs[0])
    assert a.shape == (N, *space.shape) and b.shape == space.shape
    assert all(space.contains(np.asarray(x, dtype=space.dtype)) for x in a)
    assert space.contains(np.asarray(b, dtype=space.dtype))
    np.testing.assert_allclose(a[0], b, atol=1e-6)  # a batch row equals the single env
    if name in run["names"]:  # the rollout's batched actions of the first step
        assert run["first"][run["names"].index(name)].shape == (N, *space.shape)
    batched.reset(seed=1)
    np.testing.assert_allclose(batched.act(obs), a, atol=1e-6)  # reset clears the filters


@pytest.mark.parametrize(("task", "name"), ALL)
def test_baseline__documents_its_rule_constants_and_tuning(task, name):
    pol = BASELINES[task][name]()  # the task's default scenario
    assert callable(pol.act) and callable(pol.reset)
    doc = inspect.getdoc(type(pol))
    assert "**Rule**" in doc and "**Source**" in doc and "**Constants**" in doc
    assert hasattr(pol, "tuned_on")
    if pol.tuned_on is not None:
        assert {"scenarios", "seeds"} <= set(pol.tuned_on)
        assert {"grid", "search"} & set(pol.tuned_on)  # what was tried
        assert min(parse_seeds(pol.tuned_on["seeds"])) >= 100  # test seeds stay held out
        assert "Tuned" in doc


def test_baselines__constants_can_be_overridden_and_unknown_ones_are_refused():
    assert LowPassStorage(ups_soc_ref=0.5).constants["ups_soc_ref"] == 0.5
    with pytest.raises(TypeError, match="unknown constant"):
        LowPassStorage(no_such_knob=1.0)
    with pytest.raises(ValueError, match="drives heatsync/PowerSmoothing-v0"):
        LowPassStorage(JaxVectorEnv("CoolingDispatch-v0", 1, episode__steps=5))


def test_fixed_setpoints__decode_to_the_scenario_control():
    task = make_task("CoolingDispatch")
    params = task.make_params("chiller-trip")
    pol = FixedSetpoints(params, task="CoolingDispatch")
    a = pol.act(np.zeros(pol.obs_dim, np.float32))
    np.testing.assert_array_equal(a, 0.0)  # action 0 is the scenario's default
    phys = cooling_layout(params).decode(a)
    for k, v in phys.items():
        np.testing.assert_allclose(v, getattr(params.control, k), rtol=1e-5, atol=1e-4)


def test_encode__inverts_decode_with_the_same_clipping():
    params = make_task("PowerSmoothing").make_params()
    segs = smoothing_layout(params) + cooling_layout(params)
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, segs.size).astype(np.float32)
    phys = {k: np.asarray(v) for k, v in segs.decode(a).items()}
    # decode saturates (|a| > SAT, and the side of a default at a range end), so encode is
    # its inverse on what decode can produce: decode(encode(x)) = x
    back = segs.decode(segs.encode(phys), xp=np)
    for k, v in phys.items():
        np.testing.assert_allclose(back[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
    inner = [i for i, s in _non_step(segs) if abs(a[i]) < 0.85 and s.size == 1
             and float(s.lo) < float(s.default) < float(s.hi)]
    assert inner  # and where decode is one-to-one, encode gives the action back
    np.testing.assert_allclose(segs.encode(phys)[inner], a[inner], atol=2e-5)
    too_big = {k: np.asarray(v) * 10.0 + 1e9 for k, v in phys.items()}
    top = segs.decode(np.ones(segs.size, np.float32), xp=np)
    for k, v in segs.decode(segs.encode(too_big), xp=np).items():
        np.testing.assert_allclose(v, top[k], rtol=1e-5, err_msg=k)  # clipped to the top
    batch = {k: np.stack([v, v]) for k, v in phys.items()}
    assert segs.encode(batch).shape == (2, a.size)
    with pytest.raises(ValueError, match="no value for segment"):
        segs.encode({})
    # the JAX implementation is the same function
    import jax.numpy as jnp

    np.testing.assert_allclose(np.asarray(segs.encode({k: jnp.asarray(v) for k, v in
                                                       phys.items()}, xp=jnp)),
                               segs.encode(phys), atol=1e-6)


def _non_step(segs):
    i = 0
    for s in segs:
        for _ in range(s.size):
            if s.scale != "step":
                yield i, s
            i += 1


# ---- the loader ------------------------------------------------------------------------------

def test_load_policy__builds_baselines_from_module_paths(smoothing):
    env = smoothing["env"]
    pol = load_policy("heatsync.agents:LowPassStorage", env)
    assert isinstance(pol, LowPassStorage) and pol.params is env.params
    pol = load_policy("heatsync.agents:EasyBackfill")  # no env: the default scenario
    assert isinstance(pol, EasyBackfill)


def test_load_policy__bad_paths_raise_policy_error():
    with pytest.raises(PolicyError, match="has no attribute"):
        load_policy("heatsync.agents:NoSuchBaseline")
    with pytest.raises(PolicyError, match="does not import"):
        load_policy("heatsync.no_such_module:Policy")
    with pytest.raises(PolicyError, match="module:attr"):
        load_policy("LowPassStorage")
