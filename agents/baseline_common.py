"""Shared machinery of the baseline controllers: env resolution, observation
lookup by name, batching, per-env filter state and the tuned constants.

Every baseline is a :class:`Baseline`: built from an env (a Gymnasium env, a
:class:`~heatsync.envs.JaxVectorEnv`, an SB3 VecEnv), an
:class:`~heatsync.envs.EnvParams` or nothing (the task's default scenario),
it reads the observation by name (``env.obs_names``) and writes physical
setpoints that the task's action layout (:meth:`heatsync.envs.ActionLayout.encode`)
turns into the action.

Conventions inside ``_act``: observations arrive as ``(N, obs_dim)``; per-env
scalars are kept as ``(N, 1)`` and per-rack values as ``(N, R)``, so that
constants given as arrays of shape ``(N,)`` (one setting per env, used for
batched tuning) broadcast with both. The episode start of each env is detected
from ``time_frac == 0`` (so the same-step auto-reset of the vector envs clears
that env's filters), and ``reset(seed)`` clears them all.

Constants come from ``configs/controllers.yaml`` (package data), keyed by the
controller's ``name``, with the scenarios and seeds each was tuned on; keyword
arguments override them.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, ClassVar

import numpy as np
import yaml
from gymnasium import spaces

from heatsync.envs import EnvParams, Task, make_task
from heatsync.envs.spaces import ActionLayout

__all__ = ["Baseline", "ObsIndex", "resolve_env", "controller_config", "fixed_physical",
           "physical"]


@functools.cache
def _config() -> dict:
    text = resources.files("heatsync.configs").joinpath("controllers.yaml").read_text()
    return yaml.safe_load(text) or {}


def controller_config(name: str) -> dict:
    """The ``controllers.yaml`` entry of a controller: ``constants``, ``tuned_on``, ``source``."""
    cfg = _config().get(name)
    if cfg is None:
        raise KeyError(f"controllers.yaml has no entry {name!r}; known: {sorted(_config())}")
    return cfg


def resolve_env(env: Any, task: str | Task) -> tuple[Task, EnvParams]:
    """``(task, params)`` from an env, an :class:`EnvParams` or ``None``.

    ``None`` loads the task's default scenario; an env (any face, wrappers
    allowed) contributes its own task and params, which must be ``task``.
    """
    want = make_task(task)
    if env is None:
        return want, want.make_params()
    if isinstance(env, EnvParams):
        return want, env
    base = getattr(env, "unwrapped", env)
    got_task = getattr(base, "task", None)
    params = getattr(base, "params", None)
    if got_task is None or params is None:
        raise TypeError(f"expected a heatsync env, EnvParams or None, got {type(env).__name__}")
    got = make_task(got_task)
    if got != want:
        raise ValueError(f"this controller drives {want.env_id}, the env is {got.env_id}")
    return got, params


class ObsIndex:
    """Observation components by name: ``idx(obs, "p_rack")`` -> ``(N, size)``."""

    def __init__(self, task: Task, params: EnvParams):
        self.slices: dict[str, slice] = {}
        for i, label in enumerate(task.obs_names(params)):
            name = label.split("[")[0]
            sl = self.slices.get(name)
            self.slices[name] = slice(i, i + 1) if sl is None else slice(sl.start, i + 1)

    def __contains__(self, name: str) -> bool:
        return name in self.slices

    def __call__(self, obs: np.ndarray, name: str) -> np.ndarray:
        if isinstance(obs, np.ndarray):
            return obs[:, self.slices[name]].astype(np.float64)
        return obs[:, self.slices[name]]  # a JAX array (a rule traced for jit): its dtype


def physical(value, n: int, size: int, xp=np) -> np.ndarray:
    """Broadcast a physical value to ``(n, size)`` (float64 with NumPy; with ``xp`` =
    ``jax.numpy`` the traced dtype)."""
    if xp is not np:
        v = xp.asarray(value)
        if v.ndim == 1 and v.shape[0] == n and size != n:
            v = v[:, None]
        return xp.broadcast_to(v, (n, size))
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 1 and v.shape[0] == n and size != n:
        v = v[:, None]
    return np.broadcast_to(v, (n, size)).astype(np.float64)


def fixed_physical(params: EnvParams, layout: ActionLayout) -> dict[str, np.ndarray]:
    """The scenario's fixed ``control`` as physical values by segment name (the plant
    segments of ``layout``)."""
    return {s.name: np.asarray(getattr(params.control, s.name), dtype=np.float64)
            for s in layout if hasattr(params.control, s.name)}


class Baseline:
    """Base class of the baselines: batching, per-env filter state, constants.

    **Arguments**: ``env`` (a heatsync env of any face, an
    :class:`~heatsync.envs.EnvParams`, or ``None`` for the task's default
    scenario); ``task`` (only to drive another task's observation layout, as
    the Facility controller's components do); ``constants`` override the
    tuned values of ``configs/controllers.yaml`` (scalars, or arrays of shape
    ``(N,)`` giving each env its own setting).

    Subclasses set ``name`` (the YAML key) and ``task_name``, implement
    ``_act(obs) -> action batch`` and, for filters, ``_init_state(n)`` (a dict
    of arrays with leading axis ``n``) used for new episodes.
    """

    name: ClassVar[str] = ""
    task_name: ClassVar[str] = ""

    def __init__(self, env: Any = None, task: str | Task | None = None, **constants):
        if task is not None:  # a component of a controller for another task (Facility)
            self.task_name = make_task(task).name
        self.task, self.params = resolve_env(env, self.task_name)
        cfg = controller_config(self.name)
        consts = dict(cfg.get("constants") or {})
        unknown = sorted(set(constants) - set(consts))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown constant(s) {unknown}; "
                            f"known: {sorted(consts)}")
        consts.update(constants)
        #: the rule's constants (scalars, or arrays (N,) for one setting per env)
        self.constants = consts
        #: where the constants were tuned: scenarios, seeds, steps, objective (None: not tuned)
        self.tuned_on = cfg.get("tuned_on")
        self.obs_index = ObsIndex(self.task, self.params)
        self.obs_dim = max(sl.stop for sl in self.obs_index.slices.values())
        self.action_space = self.task.action_space(self.params)
        p = self.params.plant
        self.n_racks = int(p.n_racks)
        self._state: dict | None = None
        self._setup()

    def __repr__(self):
        return f"{type(self).__name__}({self.task.env_id}, {self.constants})"

    # ---- hooks -------------------------------------------------------------------------------

    def _setup(self) -> None:
        """Precompute physical constants (host side)."""

    def _init_state(self, n: int) -> dict:
        """Filter state of ``n`` new episodes (arrays with leading axis n)."""
        return {}

    def _act(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ---- Policy protocol ---------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Clear every env's filter state (the next ``act`` starts fresh episodes)."""
        del seed  # the baselines are deterministic
        self._state = None

    def act(self, obs) -> np.ndarray:
        """Action(s) for ``obs`` of shape ``(obs_dim,)`` or ``(N, obs_dim)``."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        o = obs[None] if single else obs
        if o.ndim != 2 or o.shape[1] != self.obs_dim:
            raise ValueError(f"{type(self).__name__}: obs shape {obs.shape} does not match "
                             f"the observation space of {self.task.env_id}")
        self._prepare(o)
        a = self._act(o)
        if isinstance(self.action_space, spaces.Box):
            a = np.clip(a, self.action_space.low, self.action_space.high).astype(np.float32)
        else:
            a = np.clip(np.round(a), 0, self.action_space.nvec - 1).astype(np.int64)
        return a[0] if single else a

    #: the rule is stateless and written for any array namespace (``_act(obs, xp)``), so
    #: :meth:`jax_policy` can trace it
    jax_ready: ClassVar[bool] = False

    def jax_policy(self):
        """This controller as a pure-function policy (:mod:`heatsync.agents.jax_policy`),
        or ``None`` where its rule still runs on NumPy only."""
        if not self.jax_ready:
            return None
        from .jax_policy import TracedRule

        return TracedRule(self)

    # ---- helpers -----------------------------------------------------------------------------

    def _prepare(self, obs: np.ndarray) -> None:
        """Allocate the filter state for ``N`` envs, or clear it where an episode starts."""
        n = obs.shape[0]
        fresh = self._init_state(n)
        if self._state is None or _batch(self._state) not in (None, n):
            self._state = fresh
            return
        new = self.k_obs(obs, "time_frac")[:, 0] <= 0.0
        if new.any():
            for key, v in fresh.items():
                self._state[key][new] = v[new]

    def k(self, name: str, n: int) -> np.ndarray:
        """Constant ``name`` as an ``(n, 1)`` array (scalars and (n,) arrays broadcast)."""
        v = np.asarray(self.constants[name], dtype=np.float64)
        return physical(v.reshape(-1) if v.ndim else v, n, 1)

    def k_obs(self, obs: np.ndarray, name: str) -> np.ndarray:
        """Observation component ``name`` as ``(N, size)`` float64."""
        return self.obs_index(obs, name)


def _batch(state: dict):
    for v in state.values():
        return np.shape(v)[0]
    return None

