"""The Gymnasium envs and their functional core: checkers, spaces, rewards, actions, jit.

Episodes are short (``episode__steps``) and envs are shared per module so that
each task compiles its reset and step once.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import heatsync  # noqa: F401  (registers the ids)
from heatsync.envs import (
    ENV_IDS,
    TRACE_COUNTS,
    AutoReset,
    CoolingDispatchEnv,
    FacilityEnv,
    PowerAwareSchedulingEnv,
    PowerSmoothingEnv,
    make_task,
)
from heatsync.physics import ScenarioError

IDS = list(ENV_IDS)
STEPS = 50


def _safe_action(env):
    """An action that keeps the plant calm: no cap, no floor, fast ramps, storage
    idle, pump 80 %, supply 32 degC, LN2 shut; start the first job."""
    names = env.unwrapped.action_names
    if names == ["job", "phase_bin"]:
        return np.array([0, 0])
    a = np.zeros(len(names), np.float32)
    rules = {"gpu_cap_w": 1.0, "gpu_floor_frac": -1.0, "ramp_up_w_per_s": 1.0,
             "ramp_down_w_per_s": 1.0, "uc_gain": -1.0, "ups_gain": -1.0, "pump_speed": 0.6,
             "supply_setpoint_c": (32.0 - 10.0) / 35.0 * 2.0 - 1.0, "ln2_valve": -1.0,
             "ln2_order": -1.0, "defer_job": -1.0, "job_select": -1.0, "phase_offset": -1.0}
    for i, n in enumerate(names):
        a[i] = rules.get(n.split("[")[0], 0.0)
    return a


@pytest.fixture(scope="module")
def envs():
    """One short-episode env per id, made through the registry."""
    return {i: gymnasium.make(i, episode__steps=STEPS) for i in IDS}


@pytest.fixture(scope="module")
def random_episodes(envs):
    """A random-policy episode per id: (observations, rewards, terminated, truncated, infos)."""
    out = {}
    for i, env in envs.items():
        env.action_space.seed(7)
        obs, _ = env.reset(seed=7)
        rec = {"obs": [obs], "rew": [], "term": [], "trunc": [], "info": []}
        for _ in range(STEPS):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            rec["obs"].append(obs)
            rec["rew"].append(r)
            rec["term"].append(term)
            rec["trunc"].append(trunc)
            rec["info"].append(info)
            if term or trunc:
                break
        out[i] = rec
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_checkers__gymnasium_and_sb3_pass_without_warnings(envs, env_id):
    env = envs[env_id]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_random_episode__stays_finite_and_in_its_spaces(envs, random_episodes, env_id):
    env, rec = envs[env_id], random_episodes[env_id]
    for obs in rec["obs"]:
        assert obs.dtype == np.float32
        assert env.observation_space.contains(obs)
    assert np.all(np.isfinite(rec["rew"]))
    for info in rec["info"]:
        for k, v in info.items():
            assert np.all(np.isfinite(np.asarray(v, dtype=float))), k
    # the episode ended by exactly one of the two, and only at its last step
    assert rec["term"][-1] != rec["trunc"][-1]
    assert not any(rec["term"][:-1]) and not any(rec["trunc"][:-1])
    if rec["trunc"][-1]:
        assert len(rec["rew"]) == STEPS


@pytest.mark.parametrize("env_id", IDS)
def test_reward__weighted_terms_in_info_sum_to_reward(random_episodes, env_id):
    rec = random_episodes[env_id]
    task = make_task(env_id)
    for r, info in zip(rec["rew"], rec["info"], strict=True):
        parts = {k: v for k, v in info.items() if k.startswith("reward_")}
        assert set(parts) == {f"reward_{t}" for t in task.terms}
        assert sum(parts.values()) == pytest.approx(r, rel=1e-5, abs=1e-5)


def test_reward__prices_come_from_the_scenario_config():
    """The reward section sets the USD prices: a free band costs nothing, a tripled
    ramp price triples the ramp term, everything else unchanged."""
    def run(**prices):
        env = gymnasium.make("heatsync/PowerSmoothing-v0", scenario="sync-swings",
                             episode__steps=STEPS, **{f"reward__{k}": v for k, v in prices.items()})
        env.reset(seed=1)
        infos = [env.step(np.zeros(env.action_space.shape, np.float32))[4] for _ in range(4)]
        return infos[-1]

    base, free, steep = run(), run(band_usd_per_kw_s=0.0), run(ramp_usd_per_mw=0.3)
    assert base["reward_band"] < 0.0 and free["reward_band"] == 0.0
    assert base["reward_ramp"] < 0.0
    assert steep["reward_ramp"] == pytest.approx(3.0 * base["reward_ramp"], rel=1e-5)
    assert steep["reward_energy"] == base["reward_energy"]


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("bad", ["nan", "inf", "shape", "string", "object"])
def test_actions__bad_values_raise_naming_action_and_space(envs, env_id, bad):
    env = envs[env_id]
    env.reset(seed=0)
    good = np.asarray(env.action_space.sample())
    action = {
        "nan": np.where(np.arange(good.size) == 0, np.nan, good.astype(np.float32)),
        "inf": np.where(np.arange(good.size) == 0, np.inf, good.astype(np.float32)),
        "shape": np.concatenate([good, good]),
        "string": np.array(["a"] * good.size),
        "object": np.array([object()] * good.size, dtype=object),
    }[bad]
    with pytest.raises(ValueError, match=r"action.*expected") as e:
        env.step(action)
    assert str(env.unwrapped.action_space.shape) in str(e.value) or "MultiDiscrete" in str(
        e.value)


@pytest.mark.parametrize("env_id", IDS)
def test_actions__out_of_range_values_are_clipped(envs, env_id):
    env = envs[env_id]
    space = env.unwrapped.action_space
    inside = np.asarray(space.sample())
    if isinstance(space, gymnasium.spaces.Box):
        inside = np.sign(inside).astype(np.float32)
        inside[inside == 0] = 1.0
        outside = inside * 7.5
    else:
        inside = space.nvec - 1
        outside = space.nvec + 3
    env.reset(seed=3)
    o1, r1, *_ = env.step(inside)
    env.reset(seed=3)
    o2, r2, *_ = env.step(outside)
    np.testing.assert_array_equal(o1, o2)
    assert r1 == r2


def test_termination__pump_off_trip_terminates_not_truncates():
    env = CoolingDispatchEnv(scenario="pump-failure", episode__steps=400)
    env.reset(seed=0)
    off = np.array([-1.0, 0.257, -1.0, -1.0], np.float32)  # pump speed 0
    for _ in range(400):
        _, r, term, trunc, info = env.step(off)
        if term or trunc:
            break
    assert term and not trunc
    assert info["cause_trip"] and info["trips"] > 0
    # terminal charge: the pod's GPU time for the rest of the episode (8 x 72 GPUs, 4 $/h)
    rest = (1 + 400 - info["step"]) * 8 * 72 * 4.0 / 3600.0
    assert info["reward_trip"] == pytest.approx(-rest, rel=1e-5)


def test_truncation__time_limit_truncates_not_terminates(envs):
    env = envs["heatsync/CoolingDispatch-v0"]
    env.reset(seed=0)
    flags = [env.step(_safe_action(env))[2:4] for _ in range(STEPS)]
    assert flags[-1] == (False, True)
    assert all(f == (False, False) for f in flags[:-1])


@pytest.mark.parametrize("env_id", IDS)
def test_jit__reset_and_step_trace_once_per_shape(envs, env_id):
    env = envs[env_id]
    name = make_task(env_id).name
    start = dict(TRACE_COUNTS)
    env.reset(seed=0)
    env.step(_safe_action(env))
    before = dict(TRACE_COUNTS)
    for kind in ("reset", "step"):  # compiled here or by an earlier test of this shape
        assert before[(name, kind)] - start.get((name, kind), 0) <= 1
        assert before[(name, kind)] >= 1
    for seed in (1, 2, None):
        env.reset(seed=seed)
        for _ in range(3):
            env.step(env.action_space.sample())
    # other leaf values (episode length, weights, a scenario of the same shape) reuse the code
    other = gymnasium.make(env_id, episode__steps=9, reward__gpu_hour_usd=2.5,
                           exogenous__ambient_mean_c=30.0)
    other.reset(seed=5)
    other.step(_safe_action(other))
    assert dict(TRACE_COUNTS) == before


def test_flat__buffers_round_trip_every_leaf_and_key_the_compile_cache():
    """The faces keep the state and params as one buffer per dtype: packing on the
    host or in a jit gives the same buffers, unpacking gives every leaf back with its
    dtype (the uint32 key bits and int32 placements exactly), batched or not, and
    specs of equal structure are equal static keys while another task's is not."""
    from heatsync.envs.drive import flat_specs

    task = make_task("PowerAwareScheduling")
    params = task.make_params(episode__steps=5)
    sflat, pflat = flat_specs(task, params)
    _, state = task.reset(jax.random.PRNGKey(3), params)
    bufs = sflat.pack(state, xp=np)
    assert {b.dtype for b in bufs} == {np.dtype("float32"), np.dtype("int32"),
                                       np.dtype("uint32")}
    for b, jb in zip(bufs, jax.jit(sflat.pack)(state), strict=True):
        np.testing.assert_array_equal(b, np.asarray(jb))

    def same(a, b):
        la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
        assert len(la) == len(lb)
        for x, y in zip(la, lb, strict=True):
            assert np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    same(sflat.unpack(bufs), state)
    same(pflat.unpack(pflat.pack(params, xp=np)), params)
    _, states = jax.vmap(task.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(4), 3), params)
    b3 = sflat.pack(states, batch_ndim=1, xp=np)
    assert [b.shape for b in b3] == [(3, n) for n in sflat.sizes]
    same(sflat.unpack(b3, batch_ndim=1), states)
    same(jax.jit(lambda b: sflat.unpack(b, batch_ndim=1))(b3), states)

    s2, p2 = flat_specs(task, task.make_params(episode__steps=9, reward__gpu_hour_usd=3.0))
    assert (s2, p2) == (sflat, pflat) and hash(s2) == hash(sflat)
    other = make_task("PowerSmoothing")
    assert flat_specs(other, other.make_params())[0] != sflat


def test_make__picks_bundled_scenario_yaml_path_and_overrides(tmp_path):
    env = gymnasium.make("heatsync/CoolingDispatch-v0", scenario="heatwave", episode__steps=7)
    assert env.unwrapped.scenario.name == "heatwave"
    assert env.unwrapped.episode_steps == 7
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nextends: default\nepisode: {steps: 11}\n"
                    "reward: {gpu_hour_usd: 4.5}\n")
    env = gymnasium.make("heatsync/PowerSmoothing-v0", scenario=str(path))
    assert env.unwrapped.scenario.name == "mine"
    assert env.unwrapped.episode_steps == 11
    assert float(env.unwrapped.params.prices.gpu_hour_usd) == 4.5
    with pytest.raises(ScenarioError, match="episode.steps"):
        gymnasium.make("heatsync/PowerSmoothing-v0", episode__steps=0)
    with pytest.raises(ValueError, match="render_mode"):
        PowerSmoothingEnv(render_mode="ansi")


def test_make__module_prefix_works_without_a_prior_import():
    code = ("import gymnasium, sys; env = gymnasium.make('heatsync:heatsync/PowerSmoothing-v0');"
            "print(type(env.unwrapped).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "PowerSmoothingEnv"


def test_render__rgb_array_dashboard_is_uint8_image():
    env = gymnasium.make("heatsync/PowerSmoothing-v0", episode__steps=STEPS,
                         render_mode="rgb_array")
    env.reset(seed=0)
    empty = env.render()
    for _ in range(5):
        env.step(_safe_action(env))
    img = env.render()
    for im in (empty, img):
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3
        assert 100 < im.shape[0] < 1000 and 100 < im.shape[1] < 1000
    assert img.std() > 0


@pytest.mark.parametrize("cls", [PowerSmoothingEnv, CoolingDispatchEnv, PowerAwareSchedulingEnv,
                                 FacilityEnv])
def test_docstrings__table_every_observation_and_action_with_a_snippet(envs, cls):
    env = envs[cls.task.env_id].unwrapped
    doc = cls.__doc__
    pieces = {n.split("[")[0] for n in env.obs_names}
    for p in pieces:
        stem = p.removesuffix("_sin").removesuffix("_cos")
        assert stem in doc or p in doc or p.split("_")[0] + "_*" in doc, p
    for a in {n.split("[")[0] for n in env.action_names}:
        assert a in doc, a
    for t in cls.task.terms:
        assert t in doc, t
    assert "Termination" in doc and "Truncation" in doc and "gym.make(" in doc
    assert f"{len(env.obs_names)} components" in doc


def test_functional__jit_vmap_autoreset_starts_a_fresh_episode_and_keeps_final_obs():
    auto = AutoReset(make_task("PowerSmoothing"))
    params = auto.task.make_params(episode__steps=2)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    obs0, states = jax.jit(jax.vmap(auto.reset, in_axes=(0, None)))(keys, params)
    assert obs0.shape == (3, *auto.task.observation_space(params).shape)
    amb = np.asarray(states.exo.ambient_c)
    assert amb[0] != amb[1]  # the key draws the exogenous noise
    action = jnp.zeros(auto.task.action_space(params).shape, jnp.float32)
    step = jax.jit(jax.vmap(auto.step, in_axes=(0, 0, None, None)))
    obs1, states, _, term, trunc, info = step(keys, states, action, params)
    assert not np.any(term) and not np.any(trunc)
    assert np.all(np.asarray(states.t) == 1)
    np.testing.assert_array_equal(info["final_obs"], obs1)  # nothing ended: same obs
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    obs2, states, _, term, trunc, info = step(keys, states, action, params)
    assert np.all(trunc) and not np.any(term)
    assert np.all(np.asarray(states.t) == 0) and np.all(np.asarray(states.plant.t_s) == 0.0)
    assert not np.allclose(info["final_obs"], obs2)
    np.testing.assert_allclose(obs2[:, 0], 0.0)  # time_frac of the new episode


def test_scheduling__started_job_occupies_racks_and_finishes():
    env = PowerAwareSchedulingEnv(episode__steps=STEPS,
                                  queue={"duration_min_s": 6.0, "duration_max_s": 8.0,
                                         "period_min_s": 2.0, "period_max_s": 2.0})
    env.reset(seed=0)
    defer = env.action_space.nvec[0] - 1
    _, _, _, _, info = env.step([defer, 0])
    assert not info["job_started"] and info["jobs_running"] == 0
    _, _, _, _, info = env.step([0, 0])  # the oldest waiting job
    assert info["job_started"] and info["jobs_running"] == 1
    assert info["reward_work_value"] > 0.0
    _, _, _, _, info = env.step([0, 2])  # a second job, anti-phase to the first
    assert info["jobs_running"] == 2
    ws = env.state.plant.work
    pos = np.mod(np.asarray(ws.phase + ws.spec.phase_offset), 1.0)[:2]
    assert abs(((pos[1] - pos[0]) % 1.0) - 0.5) < 0.05
    done = 0
    for _ in range(12):
        _, _, _, _, info = env.step([defer, 0])
        done = info["jobs_done"]
    assert done == 2 and info["jobs_running"] == 0
    assert int(np.sum(np.asarray(env.state.plant.work.rack_job) >= 0)) == 0


@pytest.mark.parametrize("cls", [PowerSmoothingEnv, CoolingDispatchEnv, PowerAwareSchedulingEnv,
                                 FacilityEnv])
def test_docstrings__example_snippet_runs(cls, capsys):
    import textwrap

    code = textwrap.dedent(cls.__doc__.split("Example::", 1)[1])
    exec(compile(code, f"<{cls.__name__} example>", "exec"), {})
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("env_id", ["heatsync/PowerSmoothing-v0",
                                    "heatsync/PowerAwareScheduling-v0"])
def test_state__checkpoint_mid_episode_restores_an_identical_continuation(envs, env_id):
    """get_state -> pickle -> set_state on another env of the same id: the same actions
    then give the same observations, rewards and flags, bit for bit."""
    import pickle

    env = envs[env_id]
    env.reset(seed=7)
    for _ in range(5):
        env.step(env.action_space.sample())
    snap = pickle.loads(pickle.dumps(env.unwrapped.get_state()))
    actions = [env.action_space.sample() for _ in range(8)]
    first = [env.step(a)[:4] for a in actions]
    # a different env of the same id, in another episode, restored from the snapshot
    other = gymnasium.make(env_id, episode__steps=STEPS)
    other.reset(seed=123)
    other.unwrapped.set_state(snap)
    second = [other.step(a)[:4] for a in actions]
    for (o1, r1, te1, tr1), (o2, r2, te2, tr2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(o1, o2)
        assert (r1, te1, tr1) == (r2, te2, tr2)
    # and the original env, rewound, repeats itself
    env.unwrapped.set_state(snap)
    np.testing.assert_array_equal(env.step(actions[0])[0], first[0][0])


def test_state__snapshot_from_another_task_or_shape_is_refused(envs):
    ps = envs["heatsync/PowerSmoothing-v0"].unwrapped
    ps.reset(seed=0)
    snap = ps.get_state()
    with pytest.raises(ValueError, match="snapshot.task"):
        envs["heatsync/CoolingDispatch-v0"].unwrapped.set_state(snap)
    with pytest.raises(ValueError, match="snapshot"):
        ps.set_state({"state": 1})
    with pytest.raises(ValueError, match="snapshot.shapes"):
        ps.set_state({**snap, "shapes": {**snap["shapes"], "racks": 2}})
