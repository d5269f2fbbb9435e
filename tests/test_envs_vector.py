"""The batched faces: JaxVectorEnv (Gymnasium) and SB3VecEnv (stable-baselines3).

Every test uses N = 4 envs so that each task compiles its batched reset and
step once; episode lengths are leaves, so changing them does not recompile.
"""

from __future__ import annotations

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO

import heatsync  # noqa: F401  (registers the ids)
from heatsync.envs import ENV_IDS, TRACE_COUNTS, JaxVectorEnv, make_task
from heatsync.envs import vector as vector_module
from heatsync.envs.sb3 import SB3VecEnv

IDS = list(ENV_IDS)
N = 4
TOL = dict(rtol=1e-5, atol=1e-6)


def _assert_close(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), **TOL)


def _singles(env_id, steps=5):
    return [gymnasium.make(env_id, episode__steps=steps).unwrapped for _ in range(N)]


def _reset_both(venv, singles, seed):
    vobs, vinfo = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        _assert_close(vobs[i], obs)
        _assert_close(vinfo["t_supply_c"][i], info["t_supply_c"])


@pytest.mark.parametrize("env_id", IDS)
def test_vector__next_step_equals_single_envs_across_an_episode_boundary(env_id):
    """NEXT_STEP (the default): the ending step returns the last obs; the next call
    resets that env (reset obs, reward 0, no flags, action ignored) exactly as a single
    env reset after the end; info["final_state"] is the ended episode's last state."""
    venv = JaxVectorEnv(env_id, N, episode__steps=5)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    singles = _singles(env_id)
    _reset_both(venv, singles, 20)
    space = venv.single_action_space
    space.seed(3)
    term_name = "reward_" + make_task(env_id).terms[0]
    pending = np.zeros(N, bool)
    ended = resets = 0
    for _ in range(8):  # crosses the end of the 5-step episodes
        actions = np.stack([space.sample() for _ in range(N)])
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            if pending[i]:
                obs, info = env.reset()  # continues the key chain as the batch does
                resets += 1
                _assert_close(vobs[i], obs)
                assert vrew[i] == 0.0 and not vterm[i] and not vtrunc[i]
                _assert_close(vinfo["t_s"][i], info["t_s"])
                assert vinfo["_t_s"][i] and not vinfo[f"_{term_name}"][i]
                continue
            obs, rew, term, trunc, info = env.step(actions[i])
            assert (vterm[i], vtrunc[i]) == (term, trunc)
            assert vrew[i] == pytest.approx(rew, rel=1e-5, abs=1e-6)
            _assert_close(vinfo[term_name][i], info[term_name])
            _assert_close(vobs[i], obs)
            if term or trunc:
                ended += 1
                assert vinfo["_final_state"][i]
                final = venv.final_states(vinfo).plant
                _assert_close(final.t_s[i], env.state.plant.t_s)
                _assert_close(final.t_supply_c[i], env.state.plant.t_supply_c)
        pending = vterm | vtrunc
        assert "final_obs" not in vinfo
    assert ended >= N and resets >= N


@pytest.mark.parametrize("env_id", IDS)
def test_vector__same_step_equals_single_envs_stepped_with_the_same_seeds(env_id):
    venv = JaxVectorEnv(env_id, N, episode__steps=5, autoreset_mode=AutoresetMode.SAME_STEP)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    singles = _singles(env_id)
    _reset_both(venv, singles, 20)
    space = venv.single_action_space
    space.seed(3)
    ended = 0
    for _ in range(8):  # crosses the end of the 5-step episodes
        actions = np.stack([space.sample() for _ in range(N)])
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            obs, rew, term, trunc, info = env.step(actions[i])
            assert (vterm[i], vtrunc[i]) == (term, trunc)
            assert vrew[i] == pytest.approx(rew, rel=1e-5, abs=1e-6)
            _assert_close(vinfo["reward_" + make_task(env_id).terms[0]][i],
                          info["reward_" + make_task(env_id).terms[0]])
            assert vinfo["_final_obs"][i] == (term or trunc)
            if term or trunc:  # same-step autoreset: the last obs is kept in info
                ended += 1
                _assert_close(vinfo["final_obs"][i], obs)
                _assert_close(venv.final_states(vinfo).plant.t_s[i], env.state.plant.t_s)
                obs, _ = env.reset()  # continues the key chain as the batch does
            _assert_close(vobs[i], obs)
    assert ended >= N


def test_vector__disabled_mode_never_resets_and_reset_mask_resets_only_those_envs():
    env_id = "heatsync/CoolingDispatch-v0"
    venv = JaxVectorEnv(env_id, N, episode__steps=3, autoreset_mode="Disabled")
    assert venv.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    singles = _singles(env_id, steps=3)
    _reset_both(venv, singles, 7)
    a = np.zeros((N, 4), np.float32)
    for _ in range(3):
        vobs, _, _, vtrunc, _ = venv.step(a)
        for i, env in enumerate(singles):
            obs, _, _, trunc, _ = env.step(a[i])
            _assert_close(vobs[i], obs)
    assert vtrunc.all()
    t_end = venv.states.plant.t_s.copy()
    mask = np.array([True, False, True, False])
    vobs, vinfo = venv.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(venv.states.plant.t_s[~mask], t_end[~mask])
    assert (venv.states.plant.t_s[mask] == 0.0).all()
    for i in np.flatnonzero(mask):
        obs, _ = singles[i].reset()
        _assert_close(vobs[i], obs)
    for i in np.flatnonzero(~mask):
        _assert_close(vinfo["t_s"][i], t_end[i])
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(N + 1, bool)})


def test_vector__unknown_autoreset_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match="autoreset_mode.*allowed"):
        JaxVectorEnv("heatsync/CoolingDispatch-v0", N, autoreset_mode="sometimes")


def _wrappers():
    """Every wrapper of gymnasium.wrappers.vector that applies to a Box obs and action:
    name -> (class, factory)."""
    import gymnasium.wrappers.vector as W

    made = {
        "NormalizeObservation": W.NormalizeObservation,
        "NormalizeReward": W.NormalizeReward,
        "RecordEpisodeStatistics": W.RecordEpisodeStatistics,
        "ClipAction": W.ClipAction,
        "RescaleAction": lambda e: W.RescaleAction(e, min_action=0.0, max_action=2.0),
        "ClipReward": lambda e: W.ClipReward(e, min_reward=-10.0, max_reward=10.0),
        "TransformObservation": lambda e: W.TransformObservation(e, lambda o: 2.0 * o),
        "TransformReward": lambda e: W.TransformReward(e, lambda r: 0.5 * r),
        "TransformAction": lambda e: W.TransformAction(e, lambda a: np.clip(a, -1, 1)),
        "FlattenObservation": W.FlattenObservation,
        "DtypeObservation": lambda e: W.DtypeObservation(e, np.float64),
        "RescaleObservation": lambda e: W.RescaleObservation(e, min_obs=-1.0, max_obs=1.0),
        "ReshapeObservation": lambda e: W.ReshapeObservation(
            e, (1, *e.single_observation_space.shape)),
        "DictInfoToList": W.DictInfoToList,
    }
    return {name: (getattr(W, name), make) for name, make in made.items()}


def _accepts(cls, mode) -> bool:
    """What gymnasium documents: observation wrappers take NEXT_STEP or DISABLED only,
    NormalizeObservation NEXT_STEP only; the others every mode."""
    from gymnasium.vector import VectorObservationWrapper

    if cls.__name__ == "NormalizeObservation":
        return mode is AutoresetMode.NEXT_STEP
    return not (issubclass(cls, VectorObservationWrapper) and mode is AutoresetMode.SAME_STEP)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP,
                                  AutoresetMode.DISABLED], ids=lambda m: m.value)
def test_vector__gymnasium_vector_wrappers_step_through_an_episode_boundary(mode):
    base = JaxVectorEnv("heatsync/CoolingDispatch-v0", N, episode__steps=3, autoreset_mode=mode)
    accepted = 0
    for name, (cls, make) in _wrappers().items():
        if not _accepts(cls, mode):
            # gymnasium >= 1.4 raises ValueError naming autoreset_mode; 1.3 (which the
            # perf extra's gymnax pins) asserts
            with pytest.raises((ValueError, AssertionError)) as err:
                make(base)
            assert err.type is AssertionError or "autoreset_mode" in str(err.value)
            continue
        accepted += 1
        env = make(base)
        obs, _ = env.reset(seed=1)
        assert obs.shape[0] == N and np.all(np.isfinite(obs)), name
        episodes = 0
        for _ in range(7):  # two episode ends of 3 steps (and the resets after them)
            obs, rew, term, trunc, info = env.step(env.action_space.sample())
            assert np.all(np.isfinite(obs)) and np.all(np.isfinite(rew)), name
            done = np.asarray(term) | np.asarray(trunc)
            if done.any():
                episodes += 1
                if name == "RecordEpisodeStatistics":
                    assert (info["episode"]["l"][done] == 3).all()
                if mode is AutoresetMode.DISABLED:
                    env.reset(options={"reset_mask": done})
        assert episodes >= 2, name
    assert accepted >= (13 if mode is AutoresetMode.NEXT_STEP else 7)


def test_vector__make_vec_uses_the_jitted_batch_and_takes_the_autoreset_mode():
    envs = gymnasium.make_vec("heatsync/PowerSmoothing-v0", num_envs=N, episode__steps=5)
    assert isinstance(envs.unwrapped, JaxVectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (N, *envs.single_observation_space.shape)
    assert envs.observation_space.contains(obs)
    same = gymnasium.make_vec("heatsync/PowerSmoothing-v0", num_envs=N, episode__steps=5,
                              autoreset_mode=AutoresetMode.SAME_STEP)
    assert same.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP


def test_vector__one_jitted_call_per_batch_step_and_one_trace(monkeypatch):
    calls = []
    real = vector_module.drive_vstep_flat

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(vector_module, "drive_vstep_flat", counting)
    venv = JaxVectorEnv("heatsync/PowerSmoothing-v0", N, episode__steps=3)
    venv.reset(seed=0)
    venv.step(venv.action_space.sample())
    before = dict(TRACE_COUNTS)
    for _ in range(7):
        venv.step(venv.action_space.sample())
    venv.reset(seed=1)
    venv.step(venv.action_space.sample())
    assert len(calls) == 9
    assert dict(TRACE_COUNTS) == before


def test_vector__bad_batches_raise_and_out_of_range_is_clipped():
    venv = JaxVectorEnv("heatsync/CoolingDispatch-v0", N, episode__steps=5)
    venv.reset(seed=0)
    good = np.zeros((N, 4), np.float32)
    for bad, what in [(np.zeros((N + 1, 4), np.float32), "shape"),
                      (np.zeros((4,), np.float32), "shape"),
                      (np.where(good == 0, np.nan, good), "NaN"),
                      (np.full((N, 4), "x"), "numeric")]:
        with pytest.raises(ValueError, match=rf"actions.*{what}.*a batch of {N} actions"):
            venv.step(bad)
    inside = np.tile(np.array([[1.0, -1.0, -1.0, -1.0]], np.float32), (N, 1))
    venv.reset(seed=4)
    o1, r1, *_ = venv.step(inside)
    venv.reset(seed=4)
    o2, r2, *_ = venv.step(inside * 9.0)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)


def test_sb3__trip_terminates_time_limit_truncates_and_infos_say_which():
    venv = SB3VecEnv("heatsync/CoolingDispatch-v0", N, scenario="pump-failure",
                     episode__steps=150)
    venv.seed(0)
    obs = venv.reset()
    assert obs.shape == (N, *venv.observation_space.shape)
    pump = np.array([-1.0, 0.6, 0.6, 0.6], np.float32)  # env 0: pump off, the others 80 %
    actions = np.stack([np.array([p, 0.257, -1.0, -1.0], np.float32) for p in pump])
    first_done = {}
    for _ in range(150):
        obs, rew, done, infos = venv.step(actions)
        for i in np.flatnonzero(done):
            if i in first_done:
                continue
            first_done[i] = infos[i]
            assert "terminal_observation" in infos[i]
            assert infos[i]["terminal_observation"].shape == venv.observation_space.shape
            assert not np.array_equal(infos[i]["terminal_observation"], obs[i])
    trip = first_done[0]
    assert trip["TimeLimit.truncated"] is False and trip["cause_trip"] == 1.0
    assert trip["step"] < 150
    for i in range(1, N):
        assert first_done[i]["TimeLimit.truncated"] is True
        assert first_done[i]["step"] == 150 and first_done[i]["cause_trip"] == 0.0


def test_sb3__seed_then_reset_matches_the_gymnasium_vector_env():
    a = SB3VecEnv("heatsync/PowerSmoothing-v0", N, episode__steps=5)
    a.seed(42)
    obs_a = a.reset()
    obs_b, _ = JaxVectorEnv("heatsync/PowerSmoothing-v0", N, episode__steps=5).reset(seed=42)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert a.get_attr("render_mode") == [None] * N
    assert a.env_is_wrapped(gymnasium.Wrapper) == [False] * N


@pytest.mark.parametrize("env_id", IDS)
def test_sb3__ppo_learns_2048_steps_on_the_vecenv(env_id):
    venv = SB3VecEnv(env_id, N, episode__steps=64)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=2, seed=0,
                device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (N, *venv.action_space.shape)


def test_sb3__an_ended_envs_info_holds_its_final_state():
    """The SB3 face carries what the KPI accounting needs at an episode's end: the
    ended env's last state (its info["final_state"], one env's EnvState), equal to the
    Gymnasium vector env's final_states(info) row; the env itself already holds the
    next episode's first state."""
    a = SB3VecEnv("heatsync/PowerSmoothing-v0", N, episode__steps=5)
    b = JaxVectorEnv("heatsync/PowerSmoothing-v0", N, episode__steps=5,
                     autoreset_mode=AutoresetMode.SAME_STEP)
    a.seed(7)
    a.reset()
    b.reset(seed=7)
    actions = np.zeros((N, *a.action_space.shape), np.float32)
    for t in range(5):
        _, _, done, infos = a.step(actions)
        *_, binfo = b.step(actions)
        if t < 4:
            assert not done.any() and all("final_state" not in d for d in infos)
    assert done.all()
    expect = b.final_states(binfo)
    dt = float(a.params.plant.dt_s)
    for i in range(N):
        final = infos[i]["final_state"]
        assert float(final.t) == 5 and float(final.plant.t_s) == pytest.approx(5 * dt)
        for x, y in zip(jax.tree.leaves(final), jax.tree.leaves(expect), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y)[i])
    assert np.all(np.asarray(a.venv.states.t) == 0)  # reset in the same step
