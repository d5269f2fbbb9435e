"""heatsync.train (and scripts/train.py over it): tiny runs of every algorithm, TensorBoard
KPIs, seeding, resume, config validation, trained models as policies, the Python API.

Runs are in-process (``cli.main(argv)`` or ``heatsync.train.run(config)``) on 2 envs of
20-step CoolingDispatch episodes, so the jitted env compiles once for the whole module.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import heatsync.train
from heatsync.agents.sb3_policy import SB3Policy, load_models
from heatsync.envs import make_task
from heatsync.train import ConfigError, TrainConfig, cli, load_hyperparams

ROOT = Path(__file__).resolve().parent.parent
ENV = "CoolingDispatch-v0"
_PARAMS = make_task(ENV).make_params()
OBS_DIM = make_task(ENV).observation_space(_PARAMS).shape[0]
ACT_DIM = make_task(ENV).action_size(_PARAMS)

#: tiny hyperparameters per algorithm (2 envs, a few hundred steps)
TINY = {
    "ppo": ["n_steps=40", "batch_size=40", "n_epochs=1"],
    "a2c": ["n_steps=5"],
    "sac": ["learning_starts=40", "batch_size=32", "buffer_size=1000", "gradient_steps=1",
            "policy_kwargs.net_arch=[32,32]"],
    "td3": ["learning_starts=40", "batch_size=32", "buffer_size=1000", "gradient_steps=1",
            "policy_kwargs.net_arch=[32,32]"],
}
KPI_TAGS = ["plant/band_share", "plant/ramp_max_w_per_s", "plant/pue", "plant/cost_total_usd",
            "plant/ln2_used_kg", "plant/throttled_gpu_s", "plant/o2_min_frac",
            "plant/work_done_rack_s"]


def argv(root, algo="ppo", steps=200, seed=0, extra=(), hp=()):
    return ["--algo", algo, "--env", ENV, "--seed", str(seed), "--runs-root", str(root),
            "--env-kwargs", "episode__steps=20", "--eval-episodes", "2", "--eval-freq", "100",
            "--checkpoint-freq", "80", "--no-progress", "--jax-cache", "",
            "--log-interval", "1",
            "--hyperparams", "n_envs=2", f"n_timesteps={steps}", *TINY[algo], *hp, *extra]


def scalars(run_dir: Path, name: str) -> EventAccumulator:
    (tb,) = (run_dir / "tb").iterdir()
    assert tb.name == f"{name}_1"
    ea = EventAccumulator(str(tb))
    ea.Reload()
    return ea


class Record(BaseCallback):
    """Keeps the first actions the algorithm took and the state at training start."""

    def __init__(self):
        super().__init__()
        self.first = None
        self.at_start = {}

    def _on_training_start(self):
        rb = getattr(self.model, "replay_buffer", None)
        vn = self.model.get_vec_normalize_env()
        self.at_start = {"steps": self.model.num_timesteps,
                         "buffer": rb.size() if rb is not None else None,
                         "obs_count": float(vn.obs_rms.count) if vn is not None else None}

    def _on_step(self):
        if self.first is None:
            self.first = np.array(self.locals["actions"], copy=True)
        return True


class InterruptAt(BaseCallback):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def _on_step(self):
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt
        return True


@pytest.mark.parametrize("algo", ["ppo", "a2c", "sac", "td3"])
def test_train__each_algo_finishes_and_logs_plant_kpis(tmp_path, algo):
    run = cli.main(argv(tmp_path, algo))
    for f in ("config.yml", "command.txt", "seed.txt", "model.zip", "vecnormalize.pkl",
              "best_model.zip", "evaluations.npz", "eval_kpis.csv", "timing.json"):
        assert (run / f).is_file(), f
    assert list((run / "checkpoints").glob("model_*.zip"))
    cfg = yaml.safe_load((run / "config.yml").read_text())
    assert cfg["seed"] == 0 and cfg["algo"] == algo and cfg["env_id"] == f"heatsync/{ENV}"
    assert cfg["hyperparams"]["env_kwargs"] == {"episode__steps": 20}
    assert "--algo " + algo in (run / "command.txt").read_text()

    ea = scalars(run, algo.upper())
    tags = set(ea.Tags()["scalars"])
    missing = [t for t in KPI_TAGS + ["reward/energy", "reward/throttle",
                                      "eval/mean_reward", "eval/plant/pue",
                                      "rollout/ep_rew_mean", "time/env_step_share"]
               if t not in tags]
    assert not missing, missing
    assert any(t.startswith("train/") for t in tags)
    assert all(np.isfinite(e.value) for t in KPI_TAGS for e in ea.Scalars(t))
    assert ea.Scalars("plant/episode_steps")[-1].value == 20.0
    assert ea.PluginTagToContent("hparams")  # hyperparameters recorded (SB3 HParam)

    # the run loads back as a Policy acting on batched and single observations
    policy = SB3Policy.load(run)
    assert policy.tuned_on["scenarios"] == [make_task(ENV).spec.train_scenario]
    assert min(policy.tuned_on["seeds"]) >= 100  # the benchmark's test seeds stay held out
    obs = np.random.default_rng(0).normal(size=(5, OBS_DIM)).astype(np.float32)
    a = policy.act(obs)
    assert a.shape == (5, ACT_DIM) and a.dtype == np.float32
    assert np.all(np.abs(a) <= 1.0)
    np.testing.assert_allclose(policy.act(obs[0]), a[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(policy.act(obs), a)  # deterministic
    assert set(load_models(tmp_path, task=ENV)) == {run.name}
    assert load_models(tmp_path, task="PowerSmoothing-v0") == {}


def test_train__same_seed_same_first_actions(tmp_path):
    recs = [Record() for _ in range(3)]
    runs = [cli.main(argv(tmp_path, seed=s, steps=80, extra=["--eval-freq", "0"]),
                       callbacks=[r]) for s, r in zip((7, 7, 8), recs, strict=True)]
    np.testing.assert_array_equal(recs[0].first, recs[1].first)
    assert not np.allclose(recs[0].first, recs[2].first)
    obs = np.random.default_rng(1).normal(size=(3, OBS_DIM)).astype(np.float32)
    same = [SB3Policy.load(r, which="final").act(obs) for r in runs]
    np.testing.assert_array_equal(same[0], same[1])


def test_resume__continues_from_last_checkpoint_to_the_same_total(tmp_path):
    run_argv = argv(tmp_path, "sac", steps=240, extra=["--eval-freq", "0"])
    with pytest.raises(KeyboardInterrupt):
        cli.main(run_argv, callbacks=[InterruptAt(120)])
    run = tmp_path / "sac-CoolingDispatch-s0"
    assert not (run / "model.zip").exists()
    ckpts = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("model_*.zip"))
    assert ckpts[-1] == 120 and 80 in ckpts
    assert (run / "checkpoints" / "replay_buffer.pkl").is_file()

    rec = Record()
    assert cli.main(["--resume", str(run), "--no-progress", "--jax-cache", ""],
                      callbacks=[rec]) == run
    assert rec.at_start["steps"] == 120
    # replay buffer restored: rows of 2 envs (the interrupted step's row was not stored yet)
    assert rec.at_start["buffer"] in (120 // 2 - 1, 120 // 2)
    assert rec.at_start["obs_count"] > 120  # normalization statistics restored
    final = SB3Policy.load(run, which="final").model
    assert final.num_timesteps == 240
    assert "resumed from model_120.zip at 120 steps" in (run / "command.txt").read_text()
    ea = scalars(run, "SAC")  # one TensorBoard run, continued
    assert max(e.step for e in ea.Scalars("plant/pue")) >= 200
    assert json.loads((run / "timing.json").read_text())["steps"] == 120


def _write(tmp_path, doc) -> str:
    path = tmp_path / "hp.yml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return str(path)


BASE = {"n_envs": 2, "n_timesteps": 100}


@pytest.mark.parametrize("doc, words", [
    ({"default": {**BASE, "learnin_rate": 3e-4}},
     ["unknown key for ppo 'learnin_rate'", "did you mean 'learning_rate'", "allowed:",
      "n_epochs"]),
    ({"default": {**BASE, "learning_rate": -1e-3}},
     ["learning_rate: -0.001 is not allowed", "positive float", "lin_<float>"]),
    ({"default": {**BASE, "n_steps": "many"}}, ["n_steps: 'many' is not allowed", "integer"]),
    ({"default": {**BASE, "learning_rate": "exp_3e-4"}},
     ["unknown schedule 'exp_3e-4'", "schedules: lin, const"]),
    ({"default": {**BASE, "policy_kwargs": {"activation_fn": "swish"}}},
     ["policy_kwargs.activation_fn: unknown 'swish'", "tanh, relu"]),
    ({"default": {**BASE, "policy_kwargs": {"net_arch": [64, -1]}}},
     ["net_arch: [64, -1] is not allowed"]),
    ({"default": {**BASE, "normalize": "yes"}}, ["normalize: 'yes' is not allowed", "norm_obs"]),
    ({"default": BASE, "heatsync/PowerSmoothing-v9": {}},
     ["unknown entry 'heatsync/PowerSmoothing-v9'", "heatsync/PowerSmoothing-v0"]),
    ({"default": {**BASE, "batch_size": 1000, "n_steps": 10}},
     ["batch_size: 1000 is larger than n_steps x n_envs = 20"]),
    ({"default": {**BASE, "buffer_size": 100}}, ["unknown key for ppo 'buffer_size'"]),
])
def test_config__bad_yaml_fails_before_training_naming_the_key(tmp_path, doc, words):
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError) as e:
        cli.main(["--conf-file", _write(tmp_path, doc), "--runs-root", str(runs),
                    "--env", ENV, "--no-progress"])
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert not runs.exists()  # nothing was built


@pytest.mark.parametrize("args, words", [
    (["--algo", "dqn"], ["unknown algo 'dqn'", "ppo, sac, td3, a2c"]),
    (["--algo", "sac", "--env", "PowerAwareScheduling-v0"],
     ["needs continuous (Box) actions", "MultiDiscrete", "ppo, a2c"]),
    (["--hyperparams", "gamma=1.5"], ["gamma: 1.5 is not allowed", "(0.0, 1.0]"]),
    (["--hyperparams", "ent_coef=auto"], ["ent_coef: 'auto' is not allowed"]),
    (["--env-kwargs", "episode__stepz=20"], ["scenario / env_kwargs", "stepz"]),
])
def test_cli__bad_arguments_fail_with_a_clear_message(tmp_path, args, words):
    with pytest.raises(ConfigError) as e:
        cli.main(["--runs-root", str(tmp_path / "runs"), "--no-progress", *args])
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert not (tmp_path / "runs").exists()


def test_cli__help_documents_every_argument(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, flag
    assert "hyperparameter overrides key=value" in out


def test_bundled_hyperparams__validate_for_every_task():
    from heatsync.envs import ENV_IDS

    for algo in ("ppo", "a2c", "sac", "td3"):
        for env_id in ENV_IDS:
            if algo in ("sac", "td3") and "Scheduling" in env_id:
                continue
            hp = load_hyperparams(algo, env_id)
            assert hp["n_envs"] >= 1 and hp["n_timesteps"] >= 1


def _config(tmp_path, **kw) -> TrainConfig:
    """The argv() run of PPO as a TrainConfig (the Python API)."""
    base = dict(algo="ppo", env=ENV, seed=0, runs_root=str(tmp_path), progress=False,
                jax_cache="", eval_episodes=2, eval_freq=40, checkpoint_freq=40,
                env_kwargs={"episode__steps": 20},
                hyperparams={"n_envs": 2, "n_timesteps": 80, "n_steps": 20, "batch_size": 40,
                             "n_epochs": 1})
    return TrainConfig(**{**base, **kw})


def test_api__run_returns_the_run_dir_with_its_files(tmp_path):
    run = heatsync.train.run(_config(tmp_path))
    assert run == tmp_path / "ppo-CoolingDispatch-s0"
    for f in ("config.yml", "command.txt", "seed.txt", "model.zip", "vecnormalize.pkl",
              "best_model.zip", "evaluations.npz", "eval_kpis.csv", "timing.json"):
        assert (run / f).is_file(), f
    assert list((run / "tb").iterdir()) and list((run / "checkpoints").glob("model_*.zip"))
    cfg = yaml.safe_load((run / "config.yml").read_text())
    assert cfg["hyperparams"]["n_timesteps"] == 80 and cfg["hyperparams"]["n_envs"] == 2
    assert cfg["args"]["hyperparams"]["n_steps"] == 20
    assert cfg["hyperparams"]["env_kwargs"] == {"episode__steps": 20}
    assert "heatsync.train.run(TrainConfig(algo='ppo'" in (run / "command.txt").read_text()
    assert SB3Policy.load(run, which="final").model.num_timesteps == 80


def test_api__key_value_strings_and_mappings_make_the_same_config():
    a = TrainConfig(hyperparams=["n_envs=2", "policy_kwargs.net_arch=[32, 32]"],
                    env_kwargs=["episode__steps=20"])
    b = TrainConfig(hyperparams={"n_envs": 2, "policy_kwargs": {"net_arch": [32, 32]}},
                    env_kwargs={"episode__steps": 20})
    assert a == b
    with pytest.raises(ConfigError, match="--hyperparams: 'n_envs' is not key=value"):
        TrainConfig(hyperparams=["n_envs"])
    with pytest.raises(ConfigError, match="expected a mapping or key=value strings"):
        TrainConfig(env_kwargs="episode__steps=20")


def test_api__resume_continues_an_interrupted_run_to_its_total(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        heatsync.train.run(_config(tmp_path, eval_freq=0, hyperparams={
            "n_envs": 2, "n_timesteps": 120, "n_steps": 20, "batch_size": 40,
            "n_epochs": 1}), callbacks=[InterruptAt(40)])
    run = tmp_path / "ppo-CoolingDispatch-s0"
    assert not (run / "model.zip").exists()
    rec = Record()
    again = heatsync.train.run(TrainConfig(resume=str(run), progress=False, jax_cache=""),
                               callbacks=[rec])
    assert again == run and rec.at_start["steps"] == 40
    assert SB3Policy.load(run, which="final").model.num_timesteps == 120
    assert "resumed from model_40.zip at 40 steps" in (run / "command.txt").read_text()


def test_plant_kpis__equal_physics_kpis_of_the_same_episodes():
    """PlantKPIs folds step by step what physics.compute_kpis gets from the recorded
    series of the same two episodes per env (a JaxVectorEnv with the same seeds)."""
    from gymnasium.vector import AutoresetMode

    from heatsync.envs import JaxVectorEnv
    from heatsync.physics import OUTPUTS, compute_kpis
    from heatsync.train import KPI_NAMES, make_vec_env

    venv, _ = make_vec_env(f"heatsync/{ENV}", 2, None, {"episode__steps": 20}, False, 0.99)
    ref = JaxVectorEnv(f"heatsync/{ENV}", 2, episode__steps=20,
                       autoreset_mode=AutoresetMode.SAME_STEP)
    venv.seed(5)
    venv.reset()
    ref.reset(seed=5)
    rng = np.random.default_rng(0)
    keys = (*OUTPUTS, "t_s", "o2_frac", "p_grid_sub_w")
    got, want = [], []
    for _ in range(2):
        s0 = jax.tree.map(np.asarray, ref.states.plant)
        series = {k: [] for k in keys}
        for _t in range(20):
            a = rng.uniform(-1, 1, (2, ACT_DIM)).astype(np.float32)
            _, _, done, infos = venv.step(a)
            *_, info = ref.step(a)
            for k in keys:
                series[k].append(np.asarray(info[k]))
        assert done.all()
        s1 = ref.final_states(info).plant
        for i in range(2):
            row = {k: np.stack(v)[:, i] for k, v in series.items()}
            kp = compute_kpis(ref.params.plant, jax.tree.map(lambda x, i=i: x[i], s0),
                              jax.tree.map(lambda x, i=i: x[i], s1), row)
            want.append({**kp, "episode_steps": 20.0})
            got.append(infos[i]["plant"])
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(KPI_NAMES)
        for k in KPI_NAMES:
            assert g[k] == pytest.approx(w[k], rel=1e-9, abs=1e-9), k
    assert got[0] != got[2]  # the second episode is its own (new first state and totals)
    venv.close()


def test_script__is_thin_and_exits_2_naming_a_bad_argument():
    proc = subprocess.run([sys.executable, "scripts/train.py", "--algo", "dqn"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "train.py: error: unknown algo 'dqn'" in proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny PPO run directory (a few hundred steps)."""
    return cli.main(argv(tmp_path_factory.mktemp("runs"), "ppo"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_sb3_policy__corrupt_model_file_raises_policy_error_naming_it(tmp_path, tiny_run, damage):
    """A run directory whose model zip was cut short, overwritten or emptied."""
    import shutil

    from heatsync.agents import PolicyError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model = run / "best_model.zip"
    data = model.read_bytes()
    model.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a zip" * 100,
                       "empty": b""}[damage])
    with pytest.raises(PolicyError, match="best_model.zip: does not load as an SB3 model"):
        SB3Policy.load(run)
