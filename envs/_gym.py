"""The Gymnasium face: NumPy in and out over the jitted functional core."""

from __future__ import annotations

import collections

import gymnasium
import jax
import numpy as np

from ._core import LAYOUTS, Task, drive_reset, drive_step, structure_id
from ._render import render_dashboard
from ._spaces import check_action

__all__ = ["HeatsyncEnv"]

#: steps kept for ``render``
HISTORY_STEPS = 120


def _seed_key(seed):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int or None, got {seed!r}")
    return jax.random.PRNGKey(int(seed))


class HeatsyncEnv(gymnasium.Env):
    """Base class of the heatsync Gymnasium envs (see the task subclasses).

    **Arguments**: ``scenario`` (a bundled name, a YAML path or a
    :class:`~heatsync.physics.Scenario`; default: the task's), ``render_mode``
    (``None`` or ``"rgb_array"``), ``queue`` (job-queue settings, scheduling
    tasks only), and any ``load_scenario`` override (``episode__steps=100``,
    ``plant__ups__e_max_j=1e8``, ``reward__ramp=2.0``).

    Seeding: ``reset(seed=s)`` starts the env's JAX key chain at
    ``PRNGKey(s)``; each later ``reset()`` continues the chain, so episodes are
    reproducible and equal to the vector envs seeded the same way.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    task: Task

    def __init__(self, scenario=None, render_mode: str | None = None, queue: dict | None = None,
                 **overrides):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: {render_mode!r} is not supported; "
                             f"allowed: None, 'rgb_array'")
        self.scenario = self.task.load(scenario, **overrides)
        self.params = self.task.params_from_scenario(self.scenario, queue)
        self.observation_space = self.task.observation_space(self.params)
        self.action_space = self.task.action_space(self.params)
        self.render_mode = render_mode
        self.episode_steps = int(self.scenario.episode_steps)
        self._sid = structure_id(self.params, self.action_space.shape)
        self._rng = None
        self._state = None
        self._history: collections.deque = collections.deque(maxlen=HISTORY_STEPS)

    @property
    def state(self):
        """The functional :class:`EnvState` (JAX arrays), for JAX-native tools."""
        return self._state

    @property
    def obs_names(self) -> list[str]:
        """A label per observation component."""
        return self.task.obs_names(self.params)

    @property
    def action_names(self) -> list[str]:
        """A label per action component."""
        return self.task.action_names(self.params)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = _seed_key(seed)
        elif self._rng is None:
            self._rng = _seed_key(int(self.np_random.integers(0, 2**31 - 1)))
        self._rng, self._state, flat = drive_reset(self.task, self._sid, self._rng, self.params)
        layout = LAYOUTS[("reset", self.task, self._sid)]
        obs, info = layout.unpack(np.array(flat), python_scalars=True)
        self._history.clear()
        return np.array(obs, dtype=np.float32), info

    def step(self, action):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = check_action(action, self.action_space)
        self._rng, self._state, flat = drive_step(self.task, self._sid, self._rng, self._state,
                                                  a, self.params)
        layout = LAYOUTS[("step", self.task, self._sid)]
        obs, reward, terminated, truncated, info = layout.unpack(np.array(flat),
                                                                 python_scalars=True)
        self._history.append({
            "t_s": info["t_s"], "p_grid_sub_w": info["p_grid_sub_w"],
            "p_it_mean_w": info["p_it_mean_w"], "t_junction_max_c": info["t_junction_max_c"],
            "t_supply_c": info["t_supply_c"], "ups_soc": info["ups_soc"],
            "uc_soc_mean": float(np.mean(info["uc_soc"])), "reward": reward})
        return np.array(obs, dtype=np.float32), reward, bool(terminated), bool(truncated), info

    def render(self):
        """``rgb_array``: an (H, W, 3) uint8 dashboard of the recent trace."""
        if self.render_mode != "rgb_array":
            return None
        return render_dashboard(self._history,
                                title=f"{self.task.name} - {self.scenario.name}")

    def close(self):
        self._state = None
