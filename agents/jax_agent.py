"""Agents trained by the JAX-native trainer (``scripts/train.py --algo ppo-jax``) as
policies: a Python :class:`~heatsync.agents.Policy` (``act(obs)``, any batch) whose
``jax_policy()`` is the pure-function version the jitted benchmark and
:func:`heatsync.envs.rollout` run::

    from heatsync.agents.jax_agent import JaxAgent
    agent = JaxAgent.load("runs/ppo-jax-PowerSmoothing-s0")       # a run, a seed or a file
    actions = agent.act(obs)                                       # deterministic
    out = rollout(task, params, agent.jax_policy(), keys, 600)

A run directory of several vmapped training seeds holds ``seed_<k>/``; ``load`` takes
``best_policy.npz`` (best held-out evaluation) if there is one, else ``policy.npz``.
Every agent of the same network spec shares one compiled program: the weights and
observation statistics travel as the policy's constants.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._policy import PolicyError
from .networks import ActorCritic, NetSpec, ObsNorm, load_policy_file

__all__ = ["AgentJaxPolicy", "JaxAgent", "policy_files"]


@dataclasses.dataclass(frozen=True)
class AgentJaxPolicy:
    """The JAX policy of a trained agent (see :mod:`heatsync.agents.jax_policy`): only the
    network spec, the normalisation switch and its clip are static; the weights and
    statistics are ``default_constants()`` and become the policy state."""

    spec: NetSpec
    normalize: bool
    clip_obs: float
    constants: dict = dataclasses.field(compare=False, hash=False, repr=False)

    def default_constants(self) -> dict:
        return self.constants

    def init(self, key, params, constants):
        del key, params
        return constants

    def act(self, policy_state, obs, key, params, state):
        del key, params, state
        return _greedy(policy_state, obs, self.normalize, self.clip_obs), policy_state


def _greedy(c, obs, normalize: bool, clip: float):
    x = jnp.asarray(obs, jnp.float32)
    if normalize:
        x = ObsNorm(c["obs_mean"], c["obs_var"], jnp.asarray(1.0)).apply(x, clip)
    return c["net"].deterministic(x)


def policy_files(path: str | os.PathLike, which: str = "auto") -> list[Path]:
    """The policy files a path names: a ``.npz``, a seed directory (``best_policy.npz``
    or ``policy.npz`` by ``which``: auto, best, final) or a run directory (each of its
    ``seed_<k>/`` in order)."""
    path = Path(path)
    options = {"auto": ("best_policy.npz", "policy.npz"), "best": ("best_policy.npz",),
               "final": ("policy.npz",)}
    if which not in options:
        raise PolicyError(f"which: {which!r}; allowed: auto, best, final")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PolicyError(f"{path}: no such run directory or policy file")
    dirs = sorted((p for p in path.glob("seed_*") if p.is_dir()),
                  key=lambda p: int(p.name.split("_")[1])) or [path]
    out = []
    for d in dirs:
        found = [d / n for n in options[which] if (d / n).is_file()]
        if found:
            out.append(found[0])
    if not out:
        raise PolicyError(f"{path}: no {' or '.join(options[which])} (not a JAX training run?)")
    return out


class JaxAgent:
    """A trained JAX agent acting deterministically (Gaussian mean or categorical mode).

    Attributes: ``name``, ``spec``, ``meta`` (the env, scenario, training seeds and the
    config saved with it), ``tuned_on`` (what it was trained on, for the benchmark's
    held-out split), ``path``.
    """

    def __init__(self, net: ActorCritic, obs_norm: ObsNorm | None, meta: dict,
                 name: str = "", path: Path | None = None):
        self.net, self.obs_norm, self.meta = net, obs_norm, dict(meta)
        self.spec = net.spec
        self.name = name
        self.path = path
        self.env_id = meta.get("env_id")
        self.clip_obs = float(meta.get("clip_obs", 10.0))
        self.tuned_on = meta.get("tuned_on")
        norm = obs_norm if obs_norm is not None else ObsNorm.create(self.spec.obs_dim)
        self._jp = AgentJaxPolicy(self.spec, obs_norm is not None, self.clip_obs,
                                  {"net": net, "obs_mean": norm.mean, "obs_var": norm.var})
        self._act = jax.jit(jax.vmap(lambda c, o: _greedy(c, o, obs_norm is not None,
                                                          self.clip_obs), (None, 0)))

    @classmethod
    def load(cls, path: str | os.PathLike, which: str = "auto", seed_index: int = 0) -> JaxAgent:
        """Load a policy file, a seed directory, or seed ``seed_index`` of a run."""
        files = policy_files(path, which)
        if not 0 <= seed_index < len(files):
            raise PolicyError(f"{path}: seed_index {seed_index}; allowed: 0..{len(files) - 1}")
        f = files[seed_index]
        try:
            net, norm, meta = load_policy_file(f)
        except ValueError as e:
            raise PolicyError(str(e)) from None
        name = meta.get("name") or f.parent.name
        return cls(net, norm, meta, name=name, path=f)

    @classmethod
    def load_all(cls, path: str | os.PathLike, which: str = "auto") -> list[JaxAgent]:
        """Every training seed of a run, in seed order."""
        return [cls.load(path, which, i) for i in range(len(policy_files(path, which)))]

    def jax_policy(self) -> AgentJaxPolicy:
        return self._jp

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action(s) for ``obs`` of shape (obs_dim,) or (N, obs_dim)."""
        obs = np.asarray(obs, np.float32)
        dim = self.spec.obs_dim
        if obs.ndim not in (1, 2) or obs.shape[-1] != dim:
            raise PolicyError(f"{self.name}: obs of shape {obs.shape}; expected ({dim},) or "
                              f"(N, {dim}) (trained on {self.env_id})")
        batch = obs if obs.ndim == 2 else obs[None]
        a = np.asarray(self._act(self._jp.constants, batch))
        return a if obs.ndim == 2 else a[0]

    def reset(self, seed: int | None = None) -> None:
        """Nothing to clear: the policy has no memory."""

    def __repr__(self) -> str:
        return f"JaxAgent({self.name!r}, {self.env_id})"
