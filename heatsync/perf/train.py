"""Probes of training throughput (section 8): the JAX-native trainer (``--algo ppo-jax``)
on a heatsync task with its bundled hyperparameters, the same trainer on gymnax's
Pendulum with PureJaxRL's settings (the reference a user of that stack knows), and
stable-baselines3 PPO through ``scripts/train.py``'s VecEnv stack, all in one run.

The three run in one child process (:class:`TrainingThroughput`, a
:class:`~heatsync.perf.runner.SubprocessProbe`): their programs are the largest of the
run, and with every other probe's in one process XLA:CPU's LLVM ran out of memory maps
("LLVM compilation error: Cannot allocate memory" with 22 GB free; the kernel's
``vm.max_map_count`` is 65530 here).

What is timed: whole compiled chunks of PPO updates (rollout, GAE, epochs, minibatches:
learning included; no held-out evaluation and no logging, which the run driver adds at
chunk boundaries), medians over repeats; then the chunk's env steps alone
(:attr:`heatsync.train.ppo_jax.PPO.env_chunk`: the same auto-resetting vmapped task
steps with one fixed action, no policy), whose time over the chunk's is the plant's
share. For SB3 PPO, ``model.learn`` over whole rollouts, with the share of it spent
inside the jitted vector env (``StepTimer``).
"""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .runner import SubprocessProbe

__all__ = ["GymnaxTask", "TrainerThroughput", "SB3PPOThroughput", "TrainingThroughput",
           "PUREJAXRL_PENDULUM", "gymnax_available"]

#: PureJaxRL's ``ppo_continuous_action.py`` settings (its ``__main__`` config and its
#: 256 x 256 tanh actor-critic), for the gymnax Pendulum reference
PUREJAXRL_PENDULUM = {"n_envs": 2048, "n_steps": 10, "n_epochs": 4, "n_minibatches": 32,
                      "learning_rate": 3e-4, "anneal_lr": False, "gamma": 0.99,
                      "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5,
                      "max_grad_norm": 0.5, "net_arch": [256, 256], "activation": "tanh",
                      "log_std_init": 0.0, "norm_obs": True, "norm_reward": True,
                      "stagger_start": False}


def gymnax_available() -> bool:
    """Whether gymnax imports (``pip install heatsync[perf]``)."""
    try:
        import gymnax  # noqa: F401
    except ImportError:
        return False
    return True


class _GState(NamedTuple):
    inner: object
    t: jax.Array
    cost_usd: jax.Array
    violation_s: jax.Array


class GymnaxTask:
    """A gymnax environment behind the trainer's task interface (``reset``, ``step``
    without auto-reset, ``terms``, a state with ``t``, ``cost_usd`` and ``violation_s``),
    for the reference figure only. Episodes end at gymnax's time limit, reported as a
    truncation (Pendulum has no terminal state)."""

    terms = ("env",)

    def __init__(self, env_name: str = "Pendulum-v1"):
        import gymnax

        self.name = env_name
        self.env, self.params = gymnax.make(env_name)

    def reset(self, key, params):
        obs, s = self.env.reset_env(key, params)
        z = jnp.zeros((), jnp.float32)
        return obs, _GState(s, jnp.zeros((), jnp.int32), z, z)

    def step(self, key, state: _GState, action, params):
        obs, s, r, done, _ = self.env.step_env(key, state.inner, action, params)
        t = state.t + 1
        trunc = t >= params.max_steps_in_episode
        r = jnp.asarray(r, jnp.float32).reshape(())
        return (obs, state._replace(inner=s, t=t), r, jnp.asarray(done) & ~trunc, trunc,
                {"reward_env": r})

    def spec(self, hp):
        from heatsync.agents.networks import NetSpec

        space = self.env.action_space(self.params)
        obs_dim = int(self.env.observation_space(self.params).shape[0])
        return NetSpec(obs_dim=obs_dim, kind="box", act_dim=int(space.shape[0]),
                       low=tuple(float(x) for x in jnp.broadcast_to(space.low, space.shape)),
                       high=tuple(float(x) for x in jnp.broadcast_to(space.high, space.shape)),
                       net_arch=tuple(hp.net_arch), activation=hp.activation,
                       log_std_init=hp.log_std_init)


class TrainerThroughput:
    """Env-steps/s of ``--algo ppo-jax``: whole compiled chunks (learning included) and
    the same chunk's env steps alone. ``task`` is a heatsync task name (bundled
    hyperparameters, ``overrides`` over them) or ``"gymnax:<env>"`` (``overrides``
    alone, over :class:`~heatsync.train.ppo_jax.PPOJaxHyperparams`' defaults)."""

    def __init__(self, task: str, repeats: int, overrides: dict | None = None,
                 label: str | None = None):
        self.task, self.repeats = task, repeats
        self.overrides = dict(overrides or {})
        self.label = label or f"ppo-jax {task}"
        self.skipped = None

    def _build(self):
        from heatsync.agents.networks import NetSpec
        from heatsync.envs import episode_keys, make_task
        from heatsync.train.jax_run import load_jax_hyperparams
        from heatsync.train.ppo_jax import PPOJaxHyperparams

        if self.task.startswith("gymnax:"):
            task = GymnaxTask(self.task.split(":", 1)[1])
            hp = PPOJaxHyperparams.from_dict(self.overrides, "perf: ")
            params, spec = task.params, task.spec(hp)
            reset_keys = jax.random.split(jax.random.PRNGKey(1), hp.n_envs)
        else:
            task = make_task(self.task)
            hp = load_jax_hyperparams(task.env_id, None, self.overrides)
            params = task.make_params(task.default_scenario, **hp.env_kwargs)
            spec = NetSpec.of(task, params, net_arch=hp.net_arch, activation=hp.activation,
                              log_std_init=hp.log_std_init)
            reset_keys = episode_keys(range(100_000, 100_000 + hp.n_envs))
        return task, params, hp, spec, reset_keys

    def prepare(self):
        from heatsync.train.ppo_jax import make_ppo

        if self.task.startswith("gymnax:") and not gymnax_available():
            self.skipped = "gymnax is not installed (pip install 'heatsync[perf]')"
            return
        task, params, hp, spec, reset_keys = self._build()
        ppo = make_ppo(task, params, hp, spec)
        ts = jax.jit(ppo.init)(jax.random.PRNGKey(0), reset_keys)
        t0 = time.perf_counter()
        self.chunk = jax.jit(ppo.chunk).lower(ts).compile()
        self.compile_s = time.perf_counter() - t0
        self.env_chunk = jax.jit(ppo.env_chunk).lower(ts).compile()
        self.ts, self.hp = ts, hp

    def measure(self) -> dict:
        if self.skipped:
            return {"label": self.label, "task": self.task, "skipped": self.skipped}
        hp, ts = self.hp, self.ts
        steps = hp.batch * hp.chunk_updates

        def run(fn, ts, learn: bool):
            walls = []
            for i in range(self.repeats + 1):  # the first call is a warm-up
                t0 = time.perf_counter()
                out = fn(ts)
                ts = out[0] if learn else out
                jax.block_until_ready(ts)
                if i:
                    walls.append(time.perf_counter() - t0)
            return statistics.median(walls)

        t_train = run(self.chunk, ts, True)
        t_env = run(self.env_chunk, ts, False)
        return {"label": self.label, "task": self.task, "n_envs": hp.n_envs,
                "n_steps": hp.n_steps, "n_epochs": hp.n_epochs,
                "n_minibatches": hp.n_minibatches, "net_arch": list(hp.net_arch),
                "steps_per_chunk": steps, "chunk_s": t_train, "env_chunk_s": t_env,
                "steps_per_s": steps / t_train, "env_steps_per_s": steps / t_env,
                "plant_share": t_env / t_train, "compile_s": self.compile_s}

    def summary(self, x: dict) -> str:
        if x.get("skipped"):
            return f"{x['label']}: skipped ({x['skipped']})"
        return (f"{x['label']}: {x['steps_per_s']:,.0f} env-steps/s training "
                f"({100 * x['plant_share']:.0f} % in the env steps)")


class SB3PPOThroughput:
    """Env-steps/s of stable-baselines3 PPO on a heatsync task, with the bundled
    ``configs/hyperparams/ppo.yml`` and ``scripts/train.py``'s VecEnv stack:
    ``updates`` whole rollouts and their updates, after one untimed."""

    def __init__(self, task: str, updates: int):
        self.task, self.updates = task, updates
        self.label = f"SB3 PPO {task}"
        self.skipped = None

    def prepare(self):
        try:
            import torch  # noqa: F401
            from stable_baselines3 import PPO
        except ImportError:
            self.skipped = "stable-baselines3 is not installed"
            return
        from heatsync.envs import make_task
        from heatsync.train import algo_kwargs, load_hyperparams, make_vec_env
        from heatsync.train.vec import warm_up

        env_id = make_task(self.task).env_id
        hp = load_hyperparams("ppo", env_id)
        venv, (self.env_timer, _) = make_vec_env(env_id, hp["n_envs"], None,
                                                 hp.get("env_kwargs", {}),
                                                 hp.get("normalize", False),
                                                 hp.get("gamma", 0.99))
        warm_up(venv)
        self.model = PPO(hp.get("policy", "MlpPolicy"), venv, seed=0, verbose=0, device="cpu",
                         **algo_kwargs("ppo", hp, venv.action_space))
        self.rollout = hp["n_envs"] * self.model.n_steps
        self.model.learn(self.rollout)  # the first rollout and update: untimed
        self.hp = hp

    def measure(self) -> dict:
        if self.skipped:
            return {"label": self.label, "task": self.task, "skipped": self.skipped}
        timer = self.env_timer
        s0 = timer.seconds
        n = self.updates * self.rollout
        t0 = time.perf_counter()
        self.model.learn(n, reset_num_timesteps=False)
        wall = time.perf_counter() - t0
        self.model.get_env().close()
        return {"label": self.label, "task": self.task, "n_envs": self.hp["n_envs"],
                "n_steps": self.model.n_steps, "steps": n, "wall_s": wall,
                "steps_per_s": n / wall, "env_share": (timer.seconds - s0) / wall}

    def summary(self, x: dict) -> str:
        if x.get("skipped"):
            return f"{x['label']}: skipped ({x['skipped']})"
        return (f"{x['label']}: {x['steps_per_s']:,.0f} env-steps/s training "
                f"({100 * x['env_share']:.0f} % in the env)")


class TrainingThroughput(SubprocessProbe):
    """Section 8 in a child process: :class:`TrainerThroughput` on ``task`` (bundled
    hyperparameters, ``overrides`` over them) and on gymnax Pendulum
    (:data:`PUREJAXRL_PENDULUM`, ``pendulum_overrides`` over it), and
    :class:`SB3PPOThroughput` on ``task`` for ``sb3_updates`` rollouts; each prepared
    and then measured alone, one after another."""

    label = "training throughput (ppo-jax, gymnax Pendulum, SB3 PPO)"
    timeout_s = 900.0

    def run(self) -> dict:
        task, repeats, overrides, pendulum_overrides, sb3_updates = self.args
        probes = {"ppo_jax": TrainerThroughput(task, repeats, overrides),
                  "pendulum": TrainerThroughput("gymnax:Pendulum-v1", repeats,
                                                {**PUREJAXRL_PENDULUM, **pendulum_overrides}),
                  "sb3_ppo": SB3PPOThroughput(task, sb3_updates)}
        out = {}
        for key in list(probes):
            p = probes.pop(key)  # the last reference: its programs go before the next compiles
            p.prepare()
            out[key] = p.measure()
            del p
        return out

    def summary(self, x: dict) -> str:
        if "error" in x:
            return f"{self.label}: failed ({x['error'][-300:]})"
        ps, sb3 = x["ppo_jax"], x["sb3_ppo"]
        if ps.get("skipped"):
            return f"{self.label}: skipped ({ps['skipped']})"
        line = f"ppo-jax {ps['task']}: {ps['steps_per_s']:,.0f} env-steps/s training"
        if not sb3.get("skipped"):
            ratio = ps["steps_per_s"] / sb3["steps_per_s"]
            line += f"; SB3 PPO {sb3['steps_per_s']:,.0f} ({ratio:.1f}x)"
        return line
