"""The Policy protocol and the ``module:attr`` loader.

A policy maps observations to actions, batched or not::

    class MyPolicy:
        def act(self, obs):            # obs: (obs_dim,) or (N, obs_dim) numpy float32
            return np.zeros(...)       # action(s) in the env's action space
        def reset(self, seed=None):    # optional: clear internal state (filters, queues)
            ...

A policy that wants the plant may also define ``act_state(obs, env_state, params)``;
the benchmark passes the functional :class:`heatsync.envs.EnvState` (batched) and
:class:`heatsync.envs.EnvParams` to it when present. A policy fitted to particular
episodes (the oracle's stored plans) may define ``reset_episodes(seeds)``; the benchmark
calls it with the seeds of the batch, in order, after ``reset``.

:func:`load_policy` turns ``"module:attr"`` into a policy: ``attr`` may be a policy
object, a class or a factory called with the env (``factory(env)``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Policy", "PolicyError", "load_policy", "is_policy"]


@runtime_checkable
class Policy(Protocol):
    """Anything with ``act(obs) -> action``; ``reset(seed)`` is optional."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...


class PolicyError(ValueError):
    """A policy that cannot be loaded or used, with the reason."""


def is_policy(obj: Any) -> bool:
    """True if ``obj`` has a callable ``act``."""
    return callable(getattr(obj, "act", None))


def load_policy(spec: Any, env: Any = None) -> Policy:
    """Resolve a policy from an object or a ``"module:attr"`` path.

    **Arguments**: ``spec`` a policy object, a training run directory (JAX or
    stable-baselines3; a JAX run of several seeds loads its first), or
    ``"package.module:name"`` naming a
    policy object, a class, or a factory; classes and factories are called with
    ``env`` when given (``factory(env)``), else with no argument.

    **Returns**: an object with ``act``. Raises :class:`PolicyError` naming the path.
    """
    if is_policy(spec):
        return spec
    if isinstance(spec, str) and ":" not in spec and Path(spec).exists():
        return _load_run(Path(spec))
    if not isinstance(spec, str) or ":" not in spec:
        raise PolicyError(f"policy {spec!r}: expected an object with act(obs) or a "
                          "'module:attr' path, e.g. 'my_pkg.policies:MyPolicy'")
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # ImportError, or an error raised while importing
        raise PolicyError(f"policy '{spec}': module '{mod_name}' does not import "
                          f"({type(e).__name__}: {e})") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicyError(f"policy '{spec}': '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if is_policy(obj) and not isinstance(obj, type):
        return obj
    if callable(obj):
        try:
            made = obj(env) if env is not None else obj()
        except TypeError:
            made = obj()
        if is_policy(made):
            return made
        raise PolicyError(f"policy '{spec}': calling it returned {type(made).__name__}, "
                          "which has no act(obs) method")
    raise PolicyError(f"policy '{spec}': {type(obj).__name__} is neither a policy nor a "
                      "factory")


def _load_run(path: Path) -> Policy:
    """A training run directory (or its policy file): a JAX agent (``policy.npz``,
    ``seed_<k>/``; the first seed) or a stable-baselines3 model (``model.zip``)."""
    if path.suffix == ".npz" or any(path.glob("seed_*/policy.npz")) or \
            any(path.glob("seed_*/best_policy.npz")) or (path / "policy.npz").is_file():
        from .jax_agent import JaxAgent

        return JaxAgent.load(path)
    from .sb3_policy import SB3Policy

    return SB3Policy.load(path)
