"""Whole episodes of a pure-function policy as one jitted program.

A JAX policy (the protocol of :mod:`heatsync.agents.jax_policy`, duck-typed here) has
``init(key, params, constants) -> policy_state`` and ``act(policy_state, obs, key,
params, state) -> (action, policy_state)``; :func:`rollout` runs ``steps`` control
intervals of it under ``lax.scan``, vmapped over episode keys (and, optionally, over
per-episode constants of the policy), and returns what the benchmark and the tuners
need: returns, lengths, termination, the recorded per-step outputs, and the first and
last plant states of every episode::

    from heatsync.envs import make_task, rollout
    task = make_task("PowerSmoothing")
    params = task.make_params(episode__steps=600)
    out = rollout(task, params, policy, keys, 600)   # keys (N, 2)
    out.returns, out.steps, out.series["e_grid_j"]   # (N,), (N,), (N, T)

An episode that ends early (a termination) keeps its return, length and last state from
that step; the scan runs on (its later steps are masked out).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from heatsync.physics import OUTPUTS

__all__ = ["RolloutResult", "rollout", "episode_keys", "RECORD_EXTRA"]

#: info entries recorded per step besides the plant OUTPUTS
RECORD_EXTRA = ("p_grid_sub_w", "t_s", "o2_frac", "t_supply_c", "ups_soc", "ln2_tank_kg",
                "violation")


@dataclasses.dataclass
class RolloutResult:
    """Episodes of :func:`rollout` (leading axis N = episodes; series (N, T, ...)).

    ``returns``: summed rewards (USD); ``cost_usd``: the episode's cost terms;
    ``violation_s``: time the specification was broken; ``steps``: intervals run;
    ``terminated``: ended by a termination; ``series``: per-step outputs
    (:data:`~heatsync.physics.OUTPUTS` and :data:`RECORD_EXTRA`, ``uc_soc`` as the rack
    mean, ``reward_<term>``); ``s0`` / ``s1``: first and last plant states (batched);
    ``final``: the batched env states at the end.
    """

    returns: jnp.ndarray
    cost_usd: jnp.ndarray
    violation_s: jnp.ndarray
    steps: jnp.ndarray
    terminated: jnp.ndarray
    series: dict
    s0: object
    s1: object
    final: object


def _select(mask, a, b):
    return jax.tree.map(lambda x, y: jnp.where(
        jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(x) - mask.ndim)), x, y), a, b)


def _episode(task, policy, params, steps: int, record: tuple, key, constants, reset_key):
    k_reset, k_policy, k_steps = jax.random.split(key, 3)
    obs, state = task.reset(k_reset if reset_key is None else reset_key, params)
    pstate = policy.init(k_policy, params, constants)
    s0 = state.plant
    f = s0.t_s.dtype

    def body(carry, k):
        obs, state, pstate, active, ret, length, term_any, last = carry
        k_act, k_env = jax.random.split(k)
        action, pstate = policy.act(pstate, obs, k_act, params, state)
        obs, state, r, term, trunc, info = task.step(k_env, state, action, params)
        rec = {name: info[name] for name in record}
        rec["uc_soc"] = jnp.mean(info["uc_soc"])
        rec.update({k: v for k, v in info.items() if k.startswith("reward_")})
        done = term | trunc
        ret = ret + jnp.where(active, r, 0.0)
        length = length + active.astype(length.dtype)
        term_any = term_any | (term & active)
        last = _select(active, state, last)
        return (obs, state, pstate, active & ~done, ret, length, term_any, last), rec

    init = (obs, state, pstate, jnp.ones((), bool), jnp.zeros((), f), jnp.zeros((), jnp.int32),
            jnp.zeros((), bool), state)
    (_, _, _, _, ret, length, term, last), series = jax.lax.scan(
        body, init, jax.random.split(k_steps, steps))
    return ret, length, term, series, s0, last


@partial(jax.jit, static_argnums=(0, 1, 4, 5))
def _rollout(task, policy, params, keys, steps, record, constants, reset_keys):
    return jax.vmap(partial(_episode, task, policy, params, steps, record))(keys, constants,
                                                                          reset_keys)


def episode_keys(seeds) -> jnp.ndarray:
    """The reset keys (N, 2) that ``JaxVectorEnv.reset(seed=seeds)`` gives its envs: pass
    them as ``rollout(..., reset_keys=...)`` to run the vector env's (and the benchmark's)
    episodes of those seeds."""
    return jnp.stack([jax.random.split(jax.random.PRNGKey(int(s)))[1] for s in seeds])


def rollout(task, params, policy, keys, steps: int, constants=None,
            record: tuple = (*OUTPUTS, *RECORD_EXTRA), reset_keys=None) -> RolloutResult:
    """Run one episode per key (``keys`` (N, 2)) of ``policy`` for ``steps`` intervals.

    **Arguments**: the task and its params, a JAX policy (hashable: its configuration
    is static), the keys, the episode length, ``constants`` (a pytree with leading axis
    N handed to ``policy.init``: one setting per episode, as tuning does; ``None``: the
    policy's ``default_constants()`` for every episode, or ``{}``), ``record`` (info keys
    kept per step), ``reset_keys`` ((N, 2), e.g. :func:`episode_keys`: reset each episode
    with its own key instead of one split from ``keys``, which still feed the policy).

    **Returns**: :class:`RolloutResult` (JAX arrays; one compile per task, policy
    configuration, batch size and length).
    """
    if constants is None:  # the policy's own values, one copy per episode
        own = getattr(policy, "default_constants", None)
        n = jnp.shape(keys)[0]
        constants = {} if own is None else jax.tree.map(
            lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))), own())
    ret, length, term, series, s0, last = _rollout(task, policy, params, keys, int(steps),
                                                   tuple(record), constants, reset_keys)
    return RolloutResult(returns=ret, cost_usd=last.cost_usd, violation_s=last.violation_s,
                         steps=length, terminated=term, series=series, s0=s0,
                         s1=last.plant, final=last)
