"""The JAX-native trainer (``--algo ppo-jax``): it learns, it resumes bit for bit, its
agents load as Python and JAX policies that act alike, and bad settings fail early."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

import heatsync.train as ht
from heatsync.agents import load_policy
from heatsync.agents.jax_agent import JaxAgent
from heatsync.envs import episode_keys, make_task, rollout
from heatsync.train.jax_run import latest_state

TINY = {"n_envs": 32, "n_steps": 8, "n_minibatches": 4, "n_epochs": 2,
        "updates_per_chunk": 2, "n_timesteps": 1024}


def _config(tmp_path, **kw):
    base = dict(algo="ppo-jax", env="PowerSmoothing", runs_root=str(tmp_path), progress=False,
                env_kwargs={"episode__steps": 40}, hyperparams=dict(TINY), eval_freq=0,
                checkpoint_freq=512)
    base.update(kw)
    return ht.TrainConfig(**base)


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory):
    """A short run that should learn: 100-step episodes, about 400k steps (at 200k the
    held-out gain was within a few hundredths of noise from the random stream)."""
    root = tmp_path_factory.mktemp("ppo_jax_learn")
    cfg = ht.TrainConfig(
        algo="ppo-jax", env="PowerSmoothing", runs_root=str(root), progress=False,
        env_kwargs={"episode__steps": 100}, eval_freq=65536, eval_episodes=8,
        hyperparams={"n_envs": 256, "n_steps": 16, "n_timesteps": 393216,
                     "updates_per_chunk": 16, "learning_rate": 1e-3}, checkpoint_freq=0)
    return ht.run(cfg)


def test_ppo_jax__a_short_run_beats_its_untrained_policy_on_held_out_episodes(learning_run):
    z = np.load(learning_run / "seed_0" / "evaluations.npz")
    steps, ret, viol = z["timesteps"], z["returns"].mean(1), z["violation_s"].mean(1)
    assert steps[0] == 0 and steps[-1] == 393216
    # the untrained policy acts ~0 (the output layer starts at gain 0.01): `fixed`
    assert ret[-1] > ret[0] + 0.03, ret
    assert viol[-1] <= viol[0], viol


def test_curves__csv_and_plot_with_references_on_the_runs_own_eval_episodes(learning_run,
                                                                           tmp_path):
    import heatsync.benchmark as hb
    from heatsync.train.curves import write_curves

    files = write_curves([learning_run], tmp_path, controllers=["fixed", "lowpass_ups"])
    assert [f.name for f in files] == ["PowerSmoothing.csv", "PowerSmoothing_learning.png"]
    assert files[1].stat().st_size > 10_000
    z = np.load(learning_run / "seed_0" / "evaluations.npz")
    lines = files[0].read_text().splitlines()
    assert lines[0].split(",")[:4] == ["run", "seed", "timesteps", "return_mean"]
    rows = [ln.split(",") for ln in lines[1:]]
    assert [int(r[2]) for r in rows] == list(z["timesteps"])
    np.testing.assert_allclose([float(r[3]) for r in rows], z["returns"].mean(1), rtol=1e-5)
    # the references ran on exactly the run's evaluation episodes
    refs, _ = hb.read_csv(tmp_path / "learning" / "PowerSmoothing-refs" / "benchmark.csv")
    assert {r["controller"] for r in refs} == {"fixed", "lowpass_ups"}
    assert {r["seed"] for r in refs} == set(range(1_000_000, 1_000_008))
    assert {(r["scenario"], r["episode_steps"]) for r in refs} == {("PowerSmoothing-train", 100)}


def test_export__a_small_folder_that_loads_as_the_same_agent(learning_run, tmp_path):
    from heatsync.train.runs import export_run

    files = export_run(learning_run, tmp_path / "agent")
    names = {str(f.relative_to(tmp_path / "agent")) for f in files}
    assert {"config.yml", "command.txt", "seed_0/policy.npz", "seed_0/best_policy.npz",
            "seed_0/evaluations.npz"} <= names
    assert not any(n.startswith(("checkpoints", "seed_0/tb")) for n in names)
    assert sum(f.stat().st_size for f in files) < 300_000
    a, b = JaxAgent.load(learning_run), JaxAgent.load(tmp_path / "agent")
    obs = np.random.default_rng(0).normal(size=(5, a.spec.obs_dim)).astype(np.float32)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    with pytest.raises(ht.ConfigError, match="is the run itself"):
        export_run(learning_run, learning_run)


def test_ppo_jax__run_directory_has_config_logs_and_policies(learning_run):
    for name in ("config.yml", "command.txt", "timing.json", "seed_0/policy.npz",
                 "seed_0/best_policy.npz", "seed_0/evaluations.npz"):
        assert (learning_run / name).is_file(), name
    assert list((learning_run / "seed_0" / "tb").glob("events.out.tfevents.*"))
    cfg = ht.read_run_config(learning_run)
    assert cfg["algo"] == "ppo-jax" and cfg["n_timesteps"] == 393216
    # parameters only: a small file
    assert (learning_run / "seed_0" / "policy.npz").stat().st_size < 200_000


def test_ppo_jax__agent_acts_the_same_in_python_and_inside_jit(learning_run):
    agent = load_policy(str(learning_run))
    assert isinstance(agent, JaxAgent)
    task = make_task("PowerSmoothing")
    params = task.make_params(task.spec.train_scenario, episode__steps=30)
    jp = agent.jax_policy()
    out = rollout(task, params, jp, jax.random.split(jax.random.PRNGKey(0), 2), 30,
                  reset_keys=episode_keys([3, 4]))
    # the first observation of each episode, acted on by the Python face
    obs = np.stack([np.asarray(task.reset(k, params)[0]) for k in episode_keys([3, 4])])
    a_py = agent.act(obs)
    a_jax = np.stack([np.asarray(jp.act(jp.init(None, params, jp.default_constants()), o,
                                        None, params, None)[0]) for o in obs])
    np.testing.assert_allclose(a_py, a_jax, rtol=1e-6, atol=1e-6)
    assert np.isfinite(np.asarray(out.returns)).all()


def test_ppo_jax__resumes_bit_for_bit_from_a_checkpoint(tmp_path):
    """Two chunks straight, against the first chunk's checkpoint resumed (what a run
    killed after it leaves: whole files only, every write is atomic)."""
    a = ht.run(_config(tmp_path / "a", n_seeds=2))
    assert latest_state(a)[1] == 1024
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "checkpoints" / "state_1024.npz").unlink()
    for k in (0, 1):
        (b / f"seed_{k}" / "policy.npz").unlink()
    ht.run(ht.TrainConfig(resume=str(b), progress=False))
    for k in (0, 1):
        wa, wb = np.load(a / f"seed_{k}" / "policy.npz"), np.load(b / f"seed_{k}" / "policy.npz")
        assert set(wa.files) == set(wb.files)
        for f in wa.files:
            if f != "meta":
                np.testing.assert_array_equal(wa[f], wb[f], err_msg=f)
    # two seeds are two different agents
    w0, w1 = np.load(a / "seed_0" / "policy.npz"), np.load(a / "seed_1" / "policy.npz")
    assert not np.array_equal(w0["w0"], w1["w0"])


@pytest.mark.parametrize("hp, words", [
    ({"n_minibatches": 3}, ["n_minibatches", "divisor"]),
    ({"gamma": 1.5}, ["gamma", "(0, 1]"]),
    ({"n_envz": 4}, ["n_envz", "n_envs"]),
    ({"activation": "swish"}, ["activation", "tanh"]),
    ({"net_arch": [64, 0]}, ["net_arch", "positive"]),
])
def test_ppo_jax__bad_hyperparameters_fail_before_anything_is_written(tmp_path, hp, words):
    with pytest.raises(ht.ConfigError) as e:
        ht.run(_config(tmp_path, hyperparams={**TINY, **hp}))
    for w in words:
        assert w in str(e.value)
    assert not any(tmp_path.iterdir())


def test_ppo_jax__bundled_hyperparameters_validate_for_every_task():
    from heatsync.envs import ENV_IDS
    from heatsync.train.jax_run import load_jax_hyperparams

    for env_id in ENV_IDS:
        hp = load_jax_hyperparams(env_id)
        assert hp.batch % hp.n_minibatches == 0


def _tiny_chunk(stagger: bool, run: bool = True):
    from heatsync.agents.networks import NetSpec
    from heatsync.train.ppo_jax import PPOJaxHyperparams, make_ppo

    task = make_task("PowerSmoothing")
    params = task.make_params(task.default_scenario, episode__steps=40)
    hp = PPOJaxHyperparams.from_dict({**TINY, "updates_per_chunk": 4, "stagger_start": stagger})
    spec = NetSpec.of(task, params, net_arch=hp.net_arch, log_std_init=hp.log_std_init)
    ppo = make_ppo(task, params, hp, spec)
    ts = jax.jit(ppo.init)(jax.random.PRNGKey(0), episode_keys(range(hp.n_envs)))
    return (ts, *jax.jit(ppo.chunk)(ts)) if run else (ts, None, None)


def test_ppo_jax__stagger_start_puts_the_envs_out_of_phase_and_counts_whole_episodes():
    ts0, ts, m = _tiny_chunk(True)
    limit = np.asarray(ts0.ep_limit)
    assert limit.min() >= 1 and limit.max() <= 40 and len(set(limit)) > 10
    t = np.asarray(ts.env_state.t)  # 32 steps in: the envs cut before 32 started again
    np.testing.assert_array_equal(t, np.where(limit <= 32, 32 - limit, 32))
    # the cut first episodes ended but are not counted as episodes
    assert (limit <= 32).any() and float(np.sum(m["episode/count"])) == 0.0
    plain, _, _ = _tiny_chunk(False, run=False)  # no cut: the same chunk runs whole episodes
    assert set(np.asarray(plain.ep_limit)) == {np.iinfo(np.int32).max}
