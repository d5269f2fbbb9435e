"""Pure-function policies (gymnax / PureJaxRL style): jit- and vmap-able controllers.

A JAX policy is a hashable object (its configuration is static: one compile per
configuration) with two pure functions::

    policy_state = policy.init(key, params, constants)
    action, policy_state = policy.act(policy_state, obs, key, params, state)

``params`` are the task's :class:`~heatsync.envs.EnvParams`, ``constants`` a pytree of
per-episode settings (tuning vmaps over it; by default the policy's
``default_constants()`` if it has one, else ``{}``: values that are data, not
configuration, so policies that differ only in them share compiled code), ``obs`` one
episode's observation, ``state`` the env state (for policies that read the plant, like
the MPC). Filter and integrator states live in ``policy_state``.
:func:`heatsync.envs.rollout` runs a whole episode of one under ``lax.scan``, vmapped
over episodes, and with ``--jit`` (``run_cell(..., jit=True)``) the benchmark runs a
controller whose Python object offers ``jax_policy()`` that way: the same episodes as its
``act(obs)`` loop, without a Python call per step.

Python policies (``act(obs)`` on a batch, :class:`heatsync.agents.Policy`) keep working
on the benchmark's step loop, so controllers in any framework plug in.

Ported so far: the constant controllers, ``fixed`` and ``best-constant``
(:class:`ConstantPolicy`), and the stateless rules written for any array namespace
(``Baseline.jax_ready``: PowerSmoothing's ``firmware``, ``lowpass`` and ``lowpass_ups``,
:class:`TracedRule`), the filter-state rules of CoolingDispatch (``thermostat``'s
hysteresis flags and ``pid``'s integrator live in the policy state) and trained JAX
agents (:mod:`heatsync.agents.jax_agent`); the scheduling rules (a queue walk on the
host), the Facility rule built on them and the MPC still run on the Python loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["JaxPolicy", "ConstantPolicy", "TracedRule", "is_jax_policy", "jax_policy_of"]


@runtime_checkable
class JaxPolicy(Protocol):
    """The pure-function policy protocol (see the module docstring)."""

    def init(self, key, params, constants) -> Any: ...

    def act(self, policy_state, obs, key, params, state) -> tuple[Any, Any]: ...


def is_jax_policy(obj) -> bool:
    """Whether ``obj`` has the JAX policy's ``init`` and ``act`` and is hashable (a static
    argument of the jitted rollout)."""
    if not (callable(getattr(obj, "init", None)) and callable(getattr(obj, "act", None))):
        return False
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def jax_policy_of(policy) -> JaxPolicy | None:
    """The JAX version of a Python policy (its ``jax_policy()``), or ``None`` where it has
    none (it then runs on the Python step loop)."""
    make = getattr(policy, "jax_policy", None)
    if not callable(make):
        return None
    jp = make()
    if jp is not None and not is_jax_policy(jp):
        raise TypeError(f"{type(policy).__name__}.jax_policy() returned {type(jp).__name__}, "
                        "which lacks hashable init(key, params, constants) and "
                        "act(policy_state, obs, key, params, state)")
    return jp


@dataclasses.dataclass(frozen=True)
class ConstantPolicy:
    """The same action every interval: ``fixed`` (every component 0) and
    ``best-constant`` (its stored action).

    ``action``: the components. Only the action's size and dtype are static (they alone
    define the policy's equality and hash), the values travel as the policy's
    ``default_constants()``, so every constant policy of a task shares one compiled
    rollout; an episode's ``constants["action"]`` overrides them (as tuning does).
    """

    action: tuple = dataclasses.field(compare=False)
    size: int = 0
    dtype: str = "float32"

    @classmethod
    def of(cls, action) -> ConstantPolicy:
        a = np.asarray(action)
        return cls(tuple(a.reshape(-1).tolist()), a.size, a.dtype.name)

    def default_constants(self) -> dict:
        return {"action": np.asarray(self.action, _jax_dtype(self.dtype))}

    def init(self, key, params, constants):
        del key, params
        return jnp.asarray(constants["action"], _jax_dtype(self.dtype))

    def act(self, policy_state, obs, key, params, state):
        del obs, key, params, state
        return policy_state, policy_state


def _jax_dtype(name: str):
    """``name`` as JAX holds it (64-bit types become 32-bit without x64)."""
    return jax.dtypes.canonicalize_dtype(np.dtype(name))


class TracedRule:
    """A baseline rule traced with ``jax.numpy``: the same ``_act`` the baseline runs on
    NumPy (one place for the rule), or for a rule with filter state its pure
    ``_step(obs, state, xp) -> (action, state)`` with the state in ``policy_state``
    (started from the baseline's ``_init_state(1)``, as the NumPy path starts each
    episode), on a batch of one observation, clipped to the action space as
    ``Baseline.act`` does. Equality and hash are the object's identity (its constants
    are host values of the baseline): one compile per controller instance. The rule
    computes in float32 here, float64 on NumPy."""

    def __init__(self, baseline):
        if not getattr(baseline, "jax_ready", False):
            raise TypeError(f"{type(baseline).__name__} is not written for jax.numpy "
                            "(Baseline.jax_ready is false)")
        self.baseline = baseline
        space = baseline.action_space
        self._low = np.asarray(space.low, np.float32)
        self._high = np.asarray(space.high, np.float32)

    def _stateful(self) -> bool:
        return callable(getattr(self.baseline, "_step", None))

    def init(self, key, params, constants):
        del key, params, constants
        if not self._stateful():
            return ()
        return jax.tree.map(lambda x: jnp.asarray(x, _jax_dtype(np.asarray(x).dtype.name)),
                            self.baseline._init_state(1))

    def act(self, policy_state, obs, key, params, state):
        del key, params, state
        o = jnp.asarray(obs)[None]
        if self._stateful():
            a, new = self.baseline._step(o, policy_state, xp=jnp)
            policy_state = jax.tree.map(lambda x, y: jnp.asarray(x, y.dtype), new,
                                        policy_state)
        else:
            a = self.baseline._act(o, xp=jnp)
        return jnp.clip(a[0], self._low, self._high).astype(jnp.float32), policy_state
