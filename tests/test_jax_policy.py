"""Pure-function policies and the benchmark cell that runs them inside jit."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import heatsync.benchmark as hb
from heatsync.agents import BASELINES, ConstantPolicy, TracedRule, is_jax_policy, jax_policy_of
from heatsync.benchmark import run_cell
from heatsync.envs import episode_keys, make_task, rollout

TASK, SCEN, SEEDS, STEPS = "PowerSmoothing", "PowerSmoothing-test", [0, 3], 120
#: closure errors are float round-off (~1e-8): compared absolutely
ROUNDOFF = ("energy_balance_rel_error", "heat_balance_rel_error")


def _compiled():
    from heatsync.envs.rollout import _rollout

    return _rollout._cache_size()


@pytest.mark.parametrize("task,name", [(TASK, "fixed"), (TASK, "best-constant"),
                                       (TASK, "lowpass"), ("CoolingDispatch", "thermostat"),
                                       ("CoolingDispatch", "pid")])
def test_jitted_cell_equals_the_python_step_loop(task, name):
    scen = make_task(task).spec.test_scenario
    loop = run_cell(task, scen, BASELINES[task][name], SEEDS, STEPS, jit=False)
    jit = run_cell(task, scen, BASELINES[task][name], SEEDS, STEPS, jit=True)
    assert loop.policy_calls == STEPS and jit.policy_calls == 0
    for a, b in zip(loop.rows, jit.rows, strict=True):
        assert set(a) == set(b)
        for k, x in a.items():
            if k == "wall_s":
                continue
            y = b[k]
            if isinstance(x, str):
                assert x == y, k
            elif k in ROUNDOFF:
                assert abs(x - y) < 1e-6, k
            elif not (math.isnan(x) and math.isnan(y)):
                assert y == pytest.approx(x, rel=1e-5, abs=1e-6), k
    for k in loop.trace:
        np.testing.assert_allclose(jit.trace[k], loop.trace[k], rtol=1e-5, atol=1e-3)


def test_constant_policies_share_one_compile_and_their_values_are_data():
    task = make_task(TASK)
    params = task.make_params(episode__steps=60)
    keys = episode_keys([0, 1])
    zero = ConstantPolicy.of(np.zeros(8, np.float32))
    other = ConstantPolicy.of(np.array([0.0, 0.5, 0, 0, 0, 0, -0.5, 0.3], np.float32))
    assert zero == other and hash(zero) == hash(other) and is_jax_policy(zero)
    r0 = rollout(task, params, zero, keys, 60, reset_keys=keys)
    before = _compiled()
    r1 = rollout(task, params, other, keys, 60, reset_keys=keys)
    assert _compiled() == before  # same structure: no new compile
    assert not np.allclose(np.asarray(r0.returns), np.asarray(r1.returns))
    # per-episode constants override the policy's own values (as tuning does)
    both = {"action": jnp.stack([jnp.zeros(8), jnp.asarray(other.action)])}
    r2 = rollout(task, params, zero, keys, 60, constants=both, reset_keys=keys)
    np.testing.assert_allclose(np.asarray(r2.returns),
                               [float(r0.returns[0]), float(r1.returns[1])], rtol=1e-6)


def test_jax_policy_of_checks_what_a_policy_offers():
    class NoJax:
        def act(self, obs):
            return obs

    class Bad:
        def jax_policy(self):
            return object()

    assert jax_policy_of(NoJax()) is None
    with pytest.raises(TypeError, match=r"jax_policy\(\).*init\(key, params, constants\)"):
        jax_policy_of(Bad())
    assert not is_jax_policy(NoJax())


def test_only_rules_written_for_any_array_namespace_are_traced():
    greedy = BASELINES["PowerAwareScheduling"]["greedy"](None)
    assert greedy.jax_policy() is None  # a queue walk on the host: the Python loop runs it
    with pytest.raises(TypeError, match="jax_ready"):
        TracedRule(greedy)
    for task, name in ((TASK, "lowpass"), ("CoolingDispatch", "pid")):
        assert isinstance(BASELINES[task][name](None).jax_policy(), TracedRule)


def test_a_traced_filter_rule_carries_its_state_in_the_policy_state():
    import jax

    pid = BASELINES["CoolingDispatch"]["pid"](None)
    jp = pid.jax_policy()
    st0 = jp.init(jax.random.PRNGKey(0), pid.params, {})
    assert set(st0) == {"integral", "t_prev"} and bool(jnp.isnan(st0["t_prev"]).all())
    obs = np.zeros(pid.obs_dim, np.float32)
    a_jax, st1 = jax.jit(jp.act)(st0, obs, jax.random.PRNGKey(0), pid.params, None)
    pid.reset()
    a_np = pid.act(obs)
    np.testing.assert_allclose(np.asarray(a_jax), a_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(st1["t_prev"]), pid._state["t_prev"], rtol=1e-6)
    assert jax.tree.map(lambda x: x.dtype, st1) == jax.tree.map(lambda x: x.dtype, st0)


def test_a_jax_policy_with_the_wrong_action_shape_is_named_before_the_episode_runs():
    class Short:
        def __init__(self, env=None):
            pass

        def act(self, obs):
            return np.zeros((np.shape(obs)[0], 8), np.float32)

        def jax_policy(self):
            return ConstantPolicy.of(np.zeros(3, np.float32))

    with pytest.raises(hb.BenchmarkError, match=r"mine: .*shape \(3,\).*needs \(8,\)"):
        run_cell(TASK, SCEN, Short, SEEDS, STEPS, controller="mine", jit=True)
    assert len(run_cell(TASK, SCEN, Short, SEEDS, 5, controller="mine").rows) == 2  # loop
