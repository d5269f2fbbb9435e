"""PPO as pure JAX functions (PureJaxRL-style): the whole update loop in one program.

:func:`make_ppo` returns :class:`PPO`: ``init(key, reset_keys) -> TrainState`` and
``chunk(state) -> (state, metrics)``; a chunk is ``updates_per_chunk`` PPO updates under
``lax.scan``, each one a rollout of ``n_steps`` intervals of ``n_envs`` auto-resetting envs (vmapped
task steps), GAE, then ``n_epochs`` passes of ``n_minibatches`` minibatches. Both are
pure and jit-/vmap-able, so several training seeds run as one program
(``jax.vmap(chunk)`` over stacked states; :mod:`heatsync.train.jax_run` does this).

Inside the program, as SB3's ``VecNormalize`` does outside it: observations are
normalised by running statistics (then clipped), rewards scaled by the running standard
deviation of the discounted return (then clipped). A truncated episode (the time limit)
is bootstrapped with the value of its last observation, a terminated one is not.
Networks are equinox modules, action distributions distrax, the optimiser optax (Adam,
global-norm clipping, a linear learning-rate decay).

Metrics per update (scalars, stacked over the chunk's updates): the losses, approximate
KL, clip fraction, entropy, explained variance, learning rate, and for the episodes that
ended in the update's rollout their count, mean return (raw USD reward), cost, time
out of specification, length and reward terms.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heatsync.agents.networks import ActorCritic, NetSpec, ObsNorm

from .schema import ConfigError

__all__ = ["PPOJaxHyperparams", "TrainState", "PPO", "make_ppo", "METRICS"]


@dataclasses.dataclass(frozen=True)
class PPOJaxHyperparams:
    """Hyperparameters of ``--algo ppo-jax`` (``configs/hyperparams/ppo-jax.yml``)."""

    n_timesteps: int = 1_000_000
    """env steps per training seed (rounded up to whole chunks)"""
    n_envs: int = 512
    """envs stepped together (one vmapped step)"""
    n_steps: int = 32
    """steps per env per update (rollout length)"""
    n_minibatches: int = 8
    """minibatches per epoch (must divide n_envs x n_steps)"""
    n_epochs: int = 4
    """passes over each rollout"""
    learning_rate: float = 3e-4
    """Adam step size"""
    anneal_lr: bool = True
    """decay the step size linearly to 0 over the run"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_range: float = 0.2
    """PPO ratio clip"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    normalize_advantage: bool = True
    """normalise advantages per minibatch"""
    norm_obs: bool = True
    """normalise observations by running statistics"""
    norm_reward: bool = True
    """scale rewards by the running std of the discounted return"""
    clip_obs: float = 10.0
    """clip of normalised observations"""
    clip_reward: float = 10.0
    """clip of scaled rewards"""
    net_arch: tuple = (64, 64)
    """hidden layer sizes (actor and critic, separate weights)"""
    activation: str = "tanh"
    """hidden activation: tanh, relu, elu, gelu, silu"""
    log_std_init: float = -1.0
    """initial log std of the Gaussian (Box actions, action units)"""
    stagger_start: bool = True
    """cut each env's first episode at a uniform random step in [1, T] (T: the scenario's
    time limit; a truncation, bootstrapped, and not counted in the episode metrics), so
    that the envs run out of phase. Without it every env is at the same step of its
    episode, and with episodes of thousands of steps each update sees one phase of them
    (a non-stationary stream: the policy follows the phase it last saw)"""
    updates_per_chunk: int = 0
    """updates per jitted chunk (logging, evaluation and checkpoints happen between
    chunks); 0: about 2^18 env steps per chunk"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """scenario overrides (load_scenario keys, e.g. {episode__steps: 600})"""

    @property
    def batch(self) -> int:
        return self.n_envs * self.n_steps

    @property
    def chunk_updates(self) -> int:
        return self.updates_per_chunk or max(1, round(2 ** 18 / self.batch))

    @property
    def n_chunks(self) -> int:
        return max(1, math.ceil(self.n_timesteps / (self.batch * self.chunk_updates)))

    @property
    def n_updates(self) -> int:
        return self.n_chunks * self.chunk_updates

    @property
    def total_steps(self) -> int:
        """Env steps per seed of the run (n_timesteps rounded up to whole chunks)."""
        return self.n_updates * self.batch

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> PPOJaxHyperparams:
        """Validated hyperparameters; :class:`ConfigError` names the key and what is
        allowed."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out = {}
        for k, v in (d or {}).items():
            if k not in fields:
                from .schema import unknown_error

                raise unknown_error("key for ppo-jax", k, sorted(fields), where)
            out[k] = _check(k, v, where)
        hp = cls(**out)
        if hp.batch % hp.n_minibatches:
            raise ConfigError(f"{where}n_minibatches: {hp.n_minibatches} does not divide "
                              f"n_envs x n_steps = {hp.batch}; allowed: a divisor of "
                              f"{hp.batch}")
        return hp

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def _check(k: str, v, where: str):
    ints = {"n_timesteps": 1, "n_envs": 1, "n_steps": 1, "n_minibatches": 1, "n_epochs": 1,
            "updates_per_chunk": 0}
    unit = {"gamma": (0.0, 1.0), "gae_lambda": (0.0, 1.0)}
    pos = ("learning_rate", "clip_range", "max_grad_norm", "clip_obs", "clip_reward")
    nonneg = ("ent_coef", "vf_coef")
    bools = ("anneal_lr", "normalize_advantage", "norm_obs", "norm_reward", "stagger_start")

    def bad(allowed):
        return ConfigError(f"{where}{k}: {v!r} is not allowed; expected {allowed}")

    num = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if k in ints:
        if not (num and float(v).is_integer() and v >= ints[k]):
            raise bad(f"an integer >= {ints[k]}")
        return int(v)
    if k in unit:
        if not (num and 0.0 < v <= 1.0):
            raise bad("a number in (0, 1]")
        return float(v)
    if k in pos:
        if not (num and v > 0):
            raise bad("a number > 0")
        return float(v)
    if k in nonneg:
        if not (num and v >= 0):
            raise bad("a number >= 0")
        return float(v)
    if k in bools:
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if k == "log_std_init":
        if not num:
            raise bad("a number")
        return float(v)
    if k == "net_arch":
        if not (isinstance(v, (list, tuple)) and v and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v)):
            raise bad("a list of positive layer sizes")
        return tuple(int(n) for n in v)
    if k == "activation":
        from heatsync.agents.networks import ACTIVATIONS

        if v not in ACTIVATIONS:
            raise bad("one of " + ", ".join(ACTIVATIONS))
        return v
    if k == "env_kwargs":
        if not isinstance(v, dict):
            raise bad("a mapping of load_scenario overrides")
        return dict(v)
    raise AssertionError(k)


#: ``TrainState.ep_limit`` of an episode that runs to its own end
_NO_CUT = np.iinfo(np.int32).max


class RetNorm(NamedTuple):
    """Running variance of the discounted return (reward scaling), per-env returns."""

    var: Any
    mean: Any
    count: Any
    ret: Any


class TrainState(NamedTuple):
    """Everything a PPO run carries between updates (one training seed)."""

    net: ActorCritic
    opt_state: Any
    obs_norm: ObsNorm
    ret_norm: RetNorm
    env_state: Any
    obs: Any  # raw observations (n_envs, obs_dim)
    ep_return: Any  # running raw return per env
    ep_terms: Any  # running reward terms per env (n_envs, n_terms)
    key: Any
    update: Any
    ep_limit: Any  # per env: the step that cuts its first episode (stagger_start), else BIG


#: per-update metric names (besides ``reward/<term>``)
METRICS = ("loss/policy", "loss/value", "loss/entropy", "loss/approx_kl", "loss/clip_fraction",
           "loss/explained_variance", "train/learning_rate", "episode/count",
           "episode/return", "episode/cost_usd", "episode/violation_s", "episode/steps")


class Transition(NamedTuple):
    obs: Any
    action: Any
    logp: Any
    value: Any
    reward: Any
    done: Any


def _ret_update(rn: RetNorm, r, done, gamma):
    ret = rn.ret * gamma + r
    b_mean, b_var, n = jnp.mean(ret), jnp.var(ret), ret.shape[0]
    delta = b_mean - rn.mean
    tot = rn.count + n
    mean = rn.mean + delta * n / tot
    var = (rn.var * rn.count + b_var * n + delta ** 2 * rn.count * n / tot) / tot
    return RetNorm(var, mean, tot, jnp.where(done, 0.0, ret))


class PPO(NamedTuple):
    """The pure functions of PPO on one task (:func:`make_ppo`)."""

    init: Any
    """``init(key, reset_keys) -> TrainState``; ``reset_keys`` are the first reset keys of
    the ``n_envs`` envs ((n_envs, 2), e.g. :func:`heatsync.envs.episode_keys`)"""
    chunk: Any
    """``chunk(state) -> (state, metrics)``: ``chunk_updates`` PPO updates"""
    tx: Any
    """the optax optimiser"""
    env_chunk: Any
    """``env_chunk(state) -> state``: the chunk's env steps alone (the same auto-resetting
    vmapped step, one fixed action, no policy and no learning); what the plant costs of
    a chunk (``scripts/perf.py`` splits the trainer's time with it)"""


def make_ppo(task, params, hp: PPOJaxHyperparams, spec: NetSpec) -> PPO:
    """PPO on ``task`` with env ``params`` as pure functions (:class:`PPO`; see the module
    docstring)."""
    n_envs, n_steps = hp.n_envs, hp.n_steps
    terms = task.terms
    sched = (optax.linear_schedule(hp.learning_rate, 0.0,
                                   hp.n_updates * hp.n_epochs * hp.n_minibatches)
             if hp.anneal_lr else hp.learning_rate)
    tx = optax.chain(optax.clip_by_global_norm(hp.max_grad_norm),
                     optax.adam(sched, eps=1e-5))
    v_reset = jax.vmap(task.reset, (0, None))
    v_step = jax.vmap(task.step, (0, 0, 0, None))

    def norm_obs(on: ObsNorm, obs):
        return on.apply(obs, hp.clip_obs) if hp.norm_obs else obs

    def init(key, reset_keys):
        k_net, k_run = jax.random.split(key)
        if hp.stagger_start:
            limit = jax.random.randint(jax.random.fold_in(key, 1), (n_envs,), 1,
                                       params.episode_steps + 1)
        else:
            limit = jnp.full((n_envs,), _NO_CUT, jnp.int32)
        net = ActorCritic.create(k_net, spec)
        obs, env_state = v_reset(reset_keys, params)
        on = ObsNorm.create(spec.obs_dim)
        on = on.update(obs) if hp.norm_obs else on
        f = jnp.float32
        rn = RetNorm(jnp.ones((), f), jnp.zeros((), f), jnp.asarray(1e-4, f),
                     jnp.zeros((n_envs,), f))
        return TrainState(net, tx.init(net), on, rn, env_state, obs,
                          jnp.zeros((n_envs,), f), jnp.zeros((n_envs, len(terms)), f),
                          k_run, jnp.zeros((), jnp.int32), limit.astype(jnp.int32))

    def sample(net, x, k):
        d = net.dist(x)
        a = d.sample(seed=k)
        return a, d.log_prob(a), net.value(x)

    def env_step(ts: TrainState, action, key):
        """Step every env; where an episode ended, reset it (a fresh key) and report
        the ended episode's totals (``ended["whole"]``: 0 for a first episode cut short
        by ``stagger_start``)."""
        k_step, k_reset = jax.random.split(key)
        obs, st, r, term, trunc, info = v_step(jax.random.split(k_step, n_envs), ts.env_state,
                                               action, params)
        cut = (st.t >= ts.ep_limit) & ~term & ~trunc
        trunc = trunc | cut
        done = term | trunc
        obs_r, st_r = v_reset(jax.random.split(k_reset, n_envs), params)
        ended = {"return": ts.ep_return + r, "cost_usd": st.cost_usd,
                 "violation_s": st.violation_s, "steps": st.t.astype(jnp.float32),
                 "terms": ts.ep_terms + jnp.stack([info[f"reward_{t}"] for t in terms], -1),
                 "whole": (~cut).astype(jnp.float32)}
        sel = jax.vmap(lambda d, a, b: jax.tree.map(lambda x, y: jnp.where(d, x, y), a, b))
        new_state = sel(done, st_r, st)
        new_obs = jnp.where(done[:, None], obs_r, obs)
        limit = jnp.where(done, _NO_CUT, ts.ep_limit)
        return new_obs, obs, new_state, r, term, trunc, ended, limit

    def rollout_step(carry, _):
        ts, stats = carry
        key, k_act, k_env = jax.random.split(ts.key, 3)
        x = norm_obs(ts.obs_norm, ts.obs)
        a, logp, v = jax.vmap(sample, (None, 0, 0))(ts.net, x, jax.random.split(k_act, n_envs))
        env_a = jax.vmap(ts.net.to_env)(a)
        obs, final_obs, env_state, r, term, trunc, ended, limit = env_step(ts, env_a, k_env)
        done = term | trunc
        on = ts.obs_norm.update(obs) if hp.norm_obs else ts.obs_norm
        rn = _ret_update(ts.ret_norm, r, done, hp.gamma) if hp.norm_reward else ts.ret_norm
        r_t = r
        if hp.norm_reward:
            r_t = jnp.clip(r / jnp.sqrt(rn.var + 1e-8), -hp.clip_reward, hp.clip_reward)
        # the time limit is not a terminal state: bootstrap with the last observation's value
        v_final = jax.vmap(ts.net.value)(norm_obs(on, final_obs))
        r_t = r_t + hp.gamma * jnp.where(trunc, v_final, 0.0)
        d = done.astype(jnp.float32)
        w = d * ended.pop("whole")  # the metrics count whole episodes only
        stats = {k: stats[k] + jnp.sum(x * (w if x.ndim == 1 else w[:, None]), 0)
                 for k, x in ended.items()} | {"count": stats["count"] + jnp.sum(w)}
        ep_return = jnp.where(done, 0.0, ended["return"])
        ep_terms = jnp.where(done[:, None], 0.0, ended["terms"])
        ts = ts._replace(obs=obs, env_state=env_state, obs_norm=on, ret_norm=rn, key=key,
                         ep_return=ep_return, ep_terms=ep_terms, ep_limit=limit)
        return (ts, stats), Transition(x, a, logp, v, r_t, d)

    def gae(tr: Transition, last_value):
        def body(carry, t):
            adv, next_v = carry
            delta = t.reward + hp.gamma * next_v * (1 - t.done) - t.value
            adv = delta + hp.gamma * hp.gae_lambda * (1 - t.done) * adv
            return (adv, t.value), adv

        _, adv = jax.lax.scan(body, (jnp.zeros_like(last_value), last_value), tr,
                              reverse=True)
        return adv, adv + tr.value

    def loss_fn(net, mb):
        tr, adv, ret = mb

        def per(x, a):
            d = net.dist(x)
            return d.log_prob(a), d.entropy(), net.value(x)

        logp, ent, v = jax.vmap(per)(tr.obs, tr.action)
        log_ratio = logp - tr.logp
        ratio = jnp.exp(log_ratio)
        if hp.normalize_advantage:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.mean(jnp.minimum(ratio * adv,
                                   jnp.clip(ratio, 1 - hp.clip_range, 1 + hp.clip_range) * adv))
        vf = jnp.mean((ret - v) ** 2)
        entropy = jnp.mean(ent)
        total = pg + hp.vf_coef * vf - hp.ent_coef * entropy
        kl = jnp.mean((ratio - 1) - log_ratio)
        clip_frac = jnp.mean((jnp.abs(ratio - 1) > hp.clip_range).astype(jnp.float32))
        return total, (pg, vf, entropy, kl, clip_frac)

    def epoch(carry, key):
        net, opt_state, data = carry
        perm = jax.random.permutation(key, hp.batch)
        mbs = jax.tree.map(lambda x: x[perm].reshape(hp.n_minibatches, -1, *x.shape[1:]), data)

        def minibatch(c, mb):
            net, opt_state = c
            (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(net, mb)
            updates, opt_state = tx.update(grads, opt_state, net)
            return (optax.apply_updates(net, updates), opt_state), aux

        (net, opt_state), aux = jax.lax.scan(minibatch, (net, opt_state), mbs)
        return (net, opt_state, data), aux

    def update(ts: TrainState, _):
        zero = {"return": jnp.zeros(()), "cost_usd": jnp.zeros(()),
                "violation_s": jnp.zeros(()), "steps": jnp.zeros(()),
                "terms": jnp.zeros((len(terms),)), "count": jnp.zeros(())}
        (ts, stats), tr = jax.lax.scan(rollout_step, (ts, zero), None, n_steps)
        last_v = jax.vmap(ts.net.value)(norm_obs(ts.obs_norm, ts.obs))
        adv, ret = gae(tr, last_v)
        flat = jax.tree.map(lambda x: x.reshape(hp.batch, *x.shape[2:]), (tr, adv, ret))
        key, k_ep = jax.random.split(ts.key)
        (net, opt_state, _), aux = jax.lax.scan(epoch, (ts.net, ts.opt_state, flat),
                                                jax.random.split(k_ep, hp.n_epochs))
        pg, vf, ent, kl, cf = (jnp.mean(a) for a in aux)
        y, v = flat[2], flat[0].value
        ev = 1.0 - jnp.var(y - v) / (jnp.var(y) + 1e-8)
        n = jnp.maximum(stats["count"], 1.0)
        step_count = (ts.update + 1) * hp.n_epochs * hp.n_minibatches
        lr = sched(step_count) if callable(sched) else jnp.asarray(sched)
        m = {"loss/policy": pg, "loss/value": vf, "loss/entropy": ent, "loss/approx_kl": kl,
             "loss/clip_fraction": cf, "loss/explained_variance": ev,
             "train/learning_rate": lr, "episode/count": stats["count"],
             "episode/return": stats["return"] / n, "episode/cost_usd": stats["cost_usd"] / n,
             "episode/violation_s": stats["violation_s"] / n,
             "episode/steps": stats["steps"] / n}
        for i, t in enumerate(terms):
            m[f"reward/{t}"] = stats["terms"][i] / n
        ts = ts._replace(net=net, opt_state=opt_state, key=key, update=ts.update + 1)
        return ts, m

    def chunk(ts: TrainState):
        return jax.lax.scan(update, ts, None, hp.chunk_updates)

    def env_chunk(ts: TrainState):
        x0 = jnp.zeros((n_envs, spec.obs_dim), jnp.float32)
        action = jax.vmap(ts.net.deterministic)(x0)  # the env's action type, in its box

        def body(ts: TrainState, _):
            key, k_env = jax.random.split(ts.key)
            obs, _, env_state, _, term, trunc, ended, limit = env_step(ts, action, k_env)
            done = term | trunc
            return ts._replace(obs=obs, env_state=env_state, key=key, ep_limit=limit,
                               ep_return=jnp.where(done, 0.0, ended["return"]),
                               ep_terms=jnp.where(done[:, None], 0.0, ended["terms"])), None

        return jax.lax.scan(body, ts, None, hp.chunk_updates * n_steps)[0]

    return PPO(init, chunk, tx, env_chunk)


def tree_to_arrays(tree) -> dict[str, np.ndarray]:
    """The leaves of a pytree as ``{"l<i>": array}`` (a checkpoint's content)."""
    return {f"l{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}


def arrays_to_tree(template, arrays: dict, where: str):
    """A pytree of ``template``'s structure from :func:`tree_to_arrays` output; raises
    :class:`ConfigError` if the shapes or dtypes differ (a checkpoint of another run)."""
    leaves, treedef = jax.tree.flatten(template)
    if len(arrays) != len(leaves):
        raise ConfigError(f"{where}: {len(arrays)} arrays, the run's state has {len(leaves)}")
    out = []
    for i, t in enumerate(leaves):
        a = arrays[f"l{i}"]
        if a.shape != np.shape(t) or a.dtype != np.asarray(t).dtype:
            raise ConfigError(f"{where}: array {i} is {a.dtype}{a.shape}, the run's state "
                              f"has {np.asarray(t).dtype}{np.shape(t)}")
        out.append(jnp.asarray(a))
    return jax.tree.unflatten(treedef, out)


