"""The training (and evaluation) VecEnv stack: the batched JAX env, step timers and the
plant's episode KPIs.

:func:`make_vec_env` stacks ``SB3VecEnv`` (one jitted call per batch step), a
:class:`StepTimer`, :class:`PlantKPIs`, ``VecMonitor`` and, if asked,
``VecNormalize``. :class:`PlantKPIs` keeps the KPIs through the one accounting of
:mod:`heatsync.physics.kpis`: running totals per env, closed at each episode end with
the episode's first and last plant states.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor, VecNormalize

from heatsync.physics import (
    KPI_DOC,
    TOTALED,
    add_interval,
    empty_totals,
    kpis_from_totals,
    take_row,
)

__all__ = ["KPI_NAMES", "PlantKPIs", "StepTimer", "info_keys_for", "make_vec_env",
           "setup_jax_cache", "warm_up"]

#: episode KPIs logged under ``plant/`` (:data:`heatsync.physics.KPI_DOC` names, and
#: ``episode_steps``: the control intervals of the episode)
KPI_NAMES = (
    "band_share", "ramp_max_w_per_s", "ramp_violation_s", "pue", "cost_total_usd",
    "cost_energy_usd", "cost_demand_usd", "energy_grid_kwh", "energy_waste_kwh",
    "energy_unserved_kwh", "peak_demand_kw", "carbon_kg", "work_done_rack_s", "work_lost_frac",
    "throttled_gpu_s", "trips", "t_junction_max_c", "t_supply_min_c", "t_supply_max_c",
    "overcool_k_s", "water_l", "ln2_used_kg", "o2_min_frac", "served_min_frac",
    "episode_steps",
)
assert set(KPI_NAMES) - set(KPI_DOC) == {"episode_steps"}, set(KPI_NAMES) - set(KPI_DOC)
#: per-step info entries :func:`heatsync.physics.add_interval` folds, besides the rewards
_INTERVAL_KEYS = (*TOTALED, "o2_frac")


class StepTimer(VecEnvWrapper):
    """Adds up the wall seconds spent in the wrapped VecEnv's steps (``seconds``,
    ``steps`` batch steps)."""

    def __init__(self, venv):
        super().__init__(venv)
        self.seconds, self.steps, self._t0 = 0.0, 0, 0.0

    def reset(self):
        return self.venv.reset()

    def step_async(self, actions):
        self._t0 = time.perf_counter()
        self.venv.step_async(actions)

    def step_wait(self):
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - self._t0
        self.steps += 1
        return out


def _row(tree, i: int):
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


class PlantKPIs(VecEnvWrapper):
    """Episode KPIs and reward terms of a heatsync ``SB3VecEnv`` stack.

    Folds every env's step into running totals
    (:func:`heatsync.physics.add_interval`); on the step an env's episode ends, adds
    to that env's info ``info["plant"]``, the KPIs of :data:`KPI_NAMES` from
    :func:`heatsync.physics.kpis_from_totals` with the episode's first plant state
    and its last (``info["final_state"]``), and ``info["reward_terms"]``, each reward
    term summed over the episode.

    **Arguments**: ``venv``, a VecEnv stack over a
    :class:`heatsync.envs.sb3.SB3VecEnv` whose ``info_keys`` include
    :func:`info_keys_for` of its task's terms.
    """

    def __init__(self, venv):
        from heatsync.envs.sb3 import SB3VecEnv

        super().__init__(venv)
        base = venv.unwrapped
        if not isinstance(base, SB3VecEnv):
            raise TypeError(f"PlantKPIs needs a stack over an SB3VecEnv, got {type(base)}")
        self.vec = base.venv  # the JaxVectorEnv: its states open each episode
        self.plant_params = base.params.plant
        self.reward_keys = tuple(f"reward_{t}" for t in base.task.terms)
        self._zero(np.ones(self.num_envs, bool))

    def _zero(self, rows: np.ndarray) -> None:
        """Open a new episode in ``rows`` (bool (N,)): empty totals, its first state."""
        fresh = empty_totals(self.num_envs)
        if rows.all():
            self.totals = fresh
            self.rewards = {k: np.zeros(self.num_envs) for k in self.reward_keys}
            self.starts: list = [None] * self.num_envs
        else:
            for k, v in self.totals.items():
                v[rows] = fresh[k][rows]
            for v in self.rewards.values():
                v[rows] = 0.0
        states = self.vec.states
        if states is not None:  # after a reset (SAME_STEP: the ended rows' new episode)
            plant = jax.tree.map(np.asarray, states.plant)
            for i in np.flatnonzero(rows):
                self.starts[i] = _row(plant, i)

    def reset(self):
        obs = self.venv.reset()
        self._zero(np.ones(self.num_envs, bool))
        return obs

    def step_wait(self):
        obs, rew, dones, infos = self.venv.step_wait()
        n = self.num_envs

        def col(k):
            return np.fromiter((inf[k] for inf in infos), np.float64, n)

        add_interval(self.totals, {k: col(k) for k in _INTERVAL_KEYS}, self.plant_params)
        for k in self.reward_keys:
            self.rewards[k] += col(k)
        ended = np.flatnonzero(dones)
        for i in ended:
            infos[i]["plant"] = self.episode_kpis(i, infos[i]["final_state"].plant)
            infos[i]["reward_terms"] = {k[len("reward_"):]: float(self.rewards[k][i])
                                        for k in self.reward_keys}
        if ended.size:
            self._zero(np.asarray(dones, dtype=bool))
        return obs, rew, dones, infos

    def episode_kpis(self, i: int, last_state) -> dict[str, float]:
        """:data:`KPI_NAMES` of env ``i``'s episode so far, ending in ``last_state``."""
        tot = take_row(self.totals, i)
        kpis = kpis_from_totals(self.plant_params, self.starts[i], last_state, tot)
        kpis["episode_steps"] = tot["steps"]
        return {k: kpis[k] for k in KPI_NAMES}


def info_keys_for(terms: Sequence[str]) -> tuple[str, ...]:
    """The ``info`` entries :class:`PlantKPIs` reads (fewer keys, faster batches)."""
    return _INTERVAL_KEYS + tuple(f"reward_{t}" for t in terms)


def make_vec_env(env_id: str, n_envs: int, scenario: str | None, env_kwargs: dict,
                 normalize, gamma: float, training: bool = True):
    """The training (or evaluation) VecEnv stack.

    ``SB3VecEnv`` (one jitted call per batch step) -> :class:`StepTimer` (the env)
    -> :class:`PlantKPIs` -> ``VecMonitor`` (episode returns for SB3's logger) ->
    :class:`StepTimer` (the whole stack) -> ``VecNormalize`` if ``normalize``
    (evaluation stacks: ``training=False``, rewards left raw).

    **Returns**: ``(venv, (env_timer, stack_timer))``.
    """
    from heatsync.envs import make_task
    from heatsync.envs.sb3 import SB3VecEnv

    task = make_task(env_id)
    base = SB3VecEnv(task, n_envs, scenario=scenario, info_keys=info_keys_for(task.terms),
                     **env_kwargs)
    env_timer = StepTimer(base)
    stack_timer = StepTimer(VecMonitor(PlantKPIs(env_timer)))
    venv = stack_timer
    if normalize:
        kw = {} if normalize is True else dict(normalize)
        if not training:
            kw.update(norm_reward=False)
        venv = VecNormalize(venv, training=training, gamma=gamma, **kw)
    return venv, (env_timer, stack_timer)


def warm_up(venv) -> float:
    """Compile the jitted reset and step of ``venv``'s heatsync env (one reset and one
    step of the innermost env, before any model seeds or resets it); returns seconds."""
    base = venv.unwrapped
    t0 = time.perf_counter()
    base.reset()
    space = base.action_space
    base.step(np.zeros((base.num_envs, *space.shape), dtype=space.dtype))
    return time.perf_counter() - t0


def setup_jax_cache(path: str | None) -> None:
    """Persistent JAX compilation cache (the env's first compile is ~30 s on CPU)."""
    if not path:
        return
    jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
