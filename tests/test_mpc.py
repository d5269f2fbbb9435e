"""Gradient MPC (agents/mpc.py): range, warm start, descent, KPIs against no-op, vmap.

Kept short: tiny horizons and iteration counts; each task's planner is compiled
once per batch size and shared by the tests through module fixtures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heatsync.agents.mpc import (
    MPC_FACTORIES,
    GradientMPC,
    MPCConfig,
    plan_actions,
    plan_of_actions,
    plant_layout,
    shift_plan,
    to_action,
)
from heatsync.envs import JaxVectorEnv

#: tiny settings: a 20 s horizon of two 10 s actions, a few Adam steps
PS_CFG = MPCConfig(horizon_s=20.0, hold_s=10.0, iters=3, iters_first=30, lr=0.2, lr_warm=0.05,
                   term_scale=(("lost_work", 20.0),))
PS_STEPS = 40
#: chiller tripped from the start, small thermal masses and dry cooler: the
#: fixed setpoints throttle after ~2 min (throttled GPU-s > 0 from step ~135)
CD_OVERRIDES = dict(
    faults=[{"kind": "chiller-trip", "start_s": 60.0, "duration_s": 3600.0}],
    plant__rejection__c_fw_j_per_k=2e6, plant__cdu__c_loop_j_per_k=3e5,
    plant__rejection__q_dry_max_w=3e5)
CD_CFG = MPCConfig(horizon_s=120.0, hold_s=30.0, model_dt_s=10.0, model_sub_s=0.5, iters=4,
                   iters_first=12, lr=0.3, lr_warm=0.1)
CD_STEPS = 240


def noop_action(envs):
    """The scenario's fixed setpoints as an env action (what the plant does alone): 0."""
    return np.zeros((envs.num_envs, *envs.single_action_space.shape), np.float32)


def run_episode(envs, policy, steps, seed=0):
    """Run one episode; returns the actions and the per-step infos (numpy, with
    the reward under ``"reward"``)."""
    obs, _ = envs.reset(seed=seed)
    actions, infos = [], []
    for _ in range(steps):
        a = policy(obs)
        actions.append(np.array(a))
        obs, r, term, trunc, info = envs.step(a)
        infos.append(dict(info, reward=r))
        if (term | trunc).any():
            break
    return np.stack(actions), infos


def run_mpc(envs, mpc, steps, seed=0):
    """Run the MPC and record every re-plan: (warm start, previous plan, costs)."""
    replans = []

    def policy(obs):
        prev = mpc.plan
        a = mpc.act_state(obs, envs.states, envs.params)
        if mpc.last_info["replanned"]:
            replans.append(dict(z0=np.asarray(mpc._z0), prev=prev, plan=mpc.plan,
                                before=mpc.last_info["cost_before"],
                                after=mpc.last_info["cost_after"]))
        return a

    actions, infos = run_episode(envs, policy, steps, seed)
    return actions, infos, replans


def total(infos, key):
    return np.sum([np.asarray(i[key], float) for i in infos], axis=0)


@pytest.fixture(scope="module")
def ps():
    envs = JaxVectorEnv("PowerSmoothing", 2, scenario="sync-swings", episode__steps=PS_STEPS)
    mpc = GradientMPC(envs, config=PS_CFG)
    out = run_mpc(envs, mpc, PS_STEPS)
    noop = run_episode(envs, lambda obs: noop_action(envs), PS_STEPS)
    return envs, mpc, out, noop


@pytest.fixture(scope="module")
def cd():
    envs = JaxVectorEnv("CoolingDispatch", 1, scenario="chiller-trip", episode__steps=CD_STEPS,
                        **CD_OVERRIDES)
    mpc = GradientMPC(envs, config=CD_CFG)
    out = run_mpc(envs, mpc, CD_STEPS)
    noop = run_episode(envs, lambda obs: noop_action(envs), CD_STEPS)
    return envs, mpc, out, noop


def test_to_action__stays_in_range_and_inverts_encode():
    z = jnp.linspace(-50.0, 50.0, 101)
    a = to_action(z)
    assert float(jnp.min(a)) == -1.0 and float(jnp.max(a)) == 1.0
    envs_p = JaxVectorEnv("CoolingDispatch", 1).params
    segs = plant_layout("CoolingDispatch", envs_p)
    phys = {"pump_speed": 0.7, "supply_setpoint_c": 38.0, "ln2_valve": 0.25, "ln2_order": 0.0}
    back = segs.decode(plan_actions(segs, plan_of_actions(segs, segs.encode(phys, xp=jnp))))
    for k in ("pump_speed", "supply_setpoint_c", "ln2_valve"):
        np.testing.assert_allclose(float(back[k]), phys[k], rtol=1e-5)
    assert float(back["ln2_order"]) == 0.0


def test_shift_plan__drops_the_first_action_and_repeats_the_last():
    z = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(shift_plan(z), [[3, 4, 5], [6, 7, 8], [9, 10, 11],
                                                  [9, 10, 11]])


@pytest.mark.parametrize("which", ["ps", "cd"])
def test_mpc__actions_stay_in_range(which, request):
    envs, mpc, (actions, infos, replans), _ = request.getfixturevalue(which)
    assert np.isfinite(actions).all()
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert envs.single_action_space.contains(actions[0, 0])
    segs = plant_layout(envs.task, envs.params)
    for r in replans:
        phys = segs.decode(plan_actions(segs, jnp.asarray(r["plan"][0, 0])))
        for s in segs:
            v = np.asarray(phys[s.name])
            assert (v >= np.asarray(s.lo) - 1e-4 * abs(np.asarray(s.hi))).all()
            assert (v <= np.asarray(s.hi) * (1 + 1e-6) + 1e-6).all()


@pytest.mark.parametrize("which", ["ps", "cd"])
def test_mpc__warm_start_is_the_shifted_previous_plan(which, request):
    _, mpc, (_, _, replans), _ = request.getfixturevalue(which)
    assert len(replans) >= 3
    for r in replans[1:]:
        want = np.concatenate([r["prev"][:, 1:], r["prev"][:, -1:]], axis=1)
        np.testing.assert_array_equal(r["z0"], want)
    assert mpc.replan_every == int(mpc.config.hold_s)


@pytest.mark.parametrize("which", ["ps", "cd"])
def test_mpc__optimization_lowers_its_own_cost(which, request):
    _, _, (_, _, replans), _ = request.getfixturevalue(which)
    first = replans[0]
    assert (first["after"] < first["before"]).all(), (first["before"], first["after"])
    for r in replans:  # the best plan seen is kept: never worse than the warm start
        assert (r["after"] <= r["before"] + 1e-6 * np.abs(r["before"])).all()


def test_mpc_persistence__beats_noop_on_band_share_without_more_lost_work(ps):
    _, _, (_, infos, _), (_, noop) = ps
    band_mpc, band_noop = infos[-1]["band_share"], noop[-1]["band_share"]
    assert (band_mpc < 0.5 * band_noop).all(), (band_mpc, band_noop)
    lost_mpc, lost_noop = -total(infos, "reward_lost_work"), -total(noop, "reward_lost_work")
    assert (lost_mpc <= lost_noop + 1e-3).all(), (lost_mpc, lost_noop)


def test_mpc_persistence__beats_noop_on_chiller_trip_cost_without_throttling(cd):
    _, _, (_, infos, _), (_, noop) = cd
    assert len(infos) == len(noop) == CD_STEPS
    assert total(noop, "throttled_gpu_s").sum() > 0.0  # the case is hard for fixed setpoints
    assert total(infos, "throttled_gpu_s").sum() == 0.0
    assert total(infos, "overcool_k_s").sum() == 0.0
    cost_mpc, cost_noop = -total(infos, "reward"), -total(noop, "reward")
    assert (cost_mpc < cost_noop).all(), (cost_mpc, cost_noop)


def test_mpc__batched_act_state_equals_unbatched_calls(cd):
    envs1, _, _, _ = cd
    envs2 = JaxVectorEnv("CoolingDispatch", 2, scenario="chiller-trip", episode__steps=CD_STEPS,
                         **CD_OVERRIDES)
    obs2, _ = envs2.reset(seed=[0, 5])
    batched = GradientMPC(envs2, config=CD_CFG).act_state(obs2, envs2.states, envs2.params)
    single = []
    for i in range(2):
        mpc = GradientMPC(task="CoolingDispatch", config=CD_CFG)
        st = jax.tree.map(lambda x, i=i: x[i], envs2.states)
        a = mpc.act_state(obs2[i], st, envs2.params)
        assert a.shape == envs1.single_action_space.shape
        single.append(a)
    np.testing.assert_allclose(batched, np.stack(single), rtol=1e-4, atol=1e-5)


def test_mpc_factories__cover_the_three_tasks_with_both_forecasts():
    assert set(MPC_FACTORIES) == {"PowerSmoothing", "CoolingDispatch", "Facility"}
    for task, makers in MPC_FACTORIES.items():
        assert set(makers) == {"mpc-persistence", "mpc-perfect"}
        pol = makers["mpc-perfect"](None)
        assert pol.task.name == task and pol.config.forecast == "perfect"
        assert callable(pol.act) and callable(pol.act_state)
