"""Property-based tests on every task: randomized Params within their documented ranges
(the draw of tests/test_properties.py) under each task's default scenario, and uniformly
random actions over the task's action space: observations, rewards and every info value
stay finite, observations inside their bound, and the plant state inside its physical
range. One compiled episode per task (the draws are traced inputs).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import _coherent, _randomize

from heatsync.envs import ENV_IDS, OBS_BOUND, make_task
from heatsync.physics import ScenarioError
from heatsync.physics.cryo import O2_AMBIENT
from heatsync.physics.scenario import _cross_check

STEPS = 30
EXAMPLES = 3
TASKS = [make_task(i).name for i in ENV_IDS]
TRIED = {"param_sets": 0, "steps": 0}


@partial(jax.jit, static_argnums=0)
def _episode(task, params, key, actions):
    obs0, state = task.reset(key, params)

    def body(s, xs):
        k, a = xs
        obs, s, r, term, trunc, info = task.step(k, s, a, params)
        return s, (obs, r, term, info)

    keys = jax.random.split(key, actions.shape[0])
    final, (obs, r, term, info) = jax.lax.scan(body, state, (keys, actions))
    return obs0, obs, r, term, info, final


def _actions(space, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if isinstance(space, spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, size=(STEPS, *space.nvec.shape)).astype(np.int32)
    return rng.uniform(-1.0, 1.0, (STEPS, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("task_name", TASKS)
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(u=st.lists(st.floats(0.0, 1.0), min_size=64, max_size=64), seed=st.integers(0, 2**16))
def test_random_params_and_actions__every_task_stays_finite_and_in_range(task_name, u, seed):
    task = make_task(task_name)
    sc = task.load()
    p = _coherent(_randomize(sc.params, np.asarray(u), [0]))
    try:
        _cross_check(p)
    except ScenarioError:
        pytest.skip("draw rejected by the validator")  # pragma: no cover
    params = task.params_from_scenario(dataclasses.replace(sc, params=p))
    space = task.action_space(params)
    obs0, obs, r, term, info, final = jax.device_get(
        _episode(task, params, jax.random.PRNGKey(seed), _actions(space, seed)))
    TRIED["param_sets"] += 1
    TRIED["steps"] += STEPS
    assert np.all(np.isfinite(obs0)) and np.all(np.isfinite(obs)) and np.all(np.isfinite(r))
    assert np.abs(obs).max() <= OBS_BOUND and np.abs(obs0).max() <= OBS_BOUND
    for k, v in info.items():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            assert np.all(np.isfinite(v)), k
    s = final.plant
    p = final.plant_params  # the episode's own params: the scenario's distribution redraws some
    assert p.ups.e_min_frac * p.ups.e_max_j - 1e-3 <= s.ups.e_j <= p.ups.e_max_j * (1 + 1e-6)
    assert np.all(s.uc_e_j >= -1e-3) and np.all(s.uc_e_j <= p.ultracap.e_max_j * (1 + 1e-6))
    assert 0 <= s.ln2.tank_kg <= p.ln2.tank_capacity_kg
    assert 0 < s.ln2.o2_frac <= O2_AMBIENT + 1e-6
    assert -20 < s.t_supply_c < 100 and np.all(s.t_junction_c < 250)


def test_properties_envs__report_how_many_draws_ran():
    """Runs last in this module: prints the tally."""
    print(f"env property tests: {TRIED['param_sets']} parameter sets, {TRIED['steps']} steps "
          f"over {len(TASKS)} tasks")
    assert TRIED["param_sets"] >= EXAMPLES * len(TASKS) * 0.8
