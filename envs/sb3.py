"""The stable-baselines3 bridge (the one module that imports stable-baselines3).

:class:`SB3VecEnv` is an SB3 ``VecEnv`` over the jitted batch of
:class:`~heatsync.envs.vector.JaxVectorEnv`: one jitted call and one host
transfer per batch step, NumPy out. Ended episodes are reset in the same step
(SB3's convention; the vector env runs in ``SAME_STEP`` autoreset mode):
``infos[i]["terminal_observation"]`` holds the last
observation, ``infos[i]["final_state"]`` the last state (one env's
:class:`~heatsync.envs.EnvState`, NumPy; what episode KPIs need) and
``infos[i]["TimeLimit.truncated"]`` is true only when the time limit ended the
episode and no termination did.

Example::

    from stable_baselines3 import PPO
    from heatsync.envs.sb3 import SB3VecEnv

    venv = SB3VecEnv("heatsync/CoolingDispatch-v0", num_envs=8, episode__steps=200)
    PPO("MlpPolicy", venv, n_steps=128, batch_size=256).learn(4096)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from .vector import JaxVectorEnv

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):
    """stable-baselines3 ``VecEnv`` over a heatsync task.

    **Arguments**: ``task`` (a task, name or env id), ``num_envs``, ``scenario``
    and ``load_scenario`` overrides, ``queue`` (scheduling tasks), ``info_keys``
    (the ``info`` entries copied into each env's dict: ``None`` for all, or a
    sequence of names; fewer keys make large batches faster).
    """

    def __init__(self, task, num_envs: int, scenario=None, queue: dict | None = None,
                 info_keys: Sequence[str] | None = None, **overrides):
        self.venv = JaxVectorEnv(task, num_envs, scenario=scenario, queue=queue,
                                 autoreset_mode=AutoresetMode.SAME_STEP, **overrides)
        self.info_keys = None if info_keys is None else tuple(info_keys)
        self._actions = None
        super().__init__(num_envs, self.venv.single_observation_space,
                         self.venv.single_action_space)

    @property
    def task(self):
        return self.venv.task

    @property
    def params(self):
        return self.venv.params

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, info = self.venv.reset(seed=seeds)
        self.reset_infos = self._split(info, self.info_keys)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rew, term, trunc, info = self.venv.step(self._actions)
        self._actions = None
        infos = self._split(info, self.info_keys)
        done = term | trunc
        final = self.venv.final_states(info) if done.any() else None
        for i in np.flatnonzero(done):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["final_state"] = jax.tree.map(lambda x, i=i: x[i], final)
            infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        return obs, rew, done, infos

    def _split(self, info: dict, keys) -> list[dict]:
        """Per-env dicts from batched info; scalars become Python floats in one pass."""
        names = [k for k in info if not k.startswith("_") and k not in ("final_obs", "final_state")
                 and (keys is None or k in keys)]
        scalar = [k for k in names if info[k].ndim == 1]
        arrays = [k for k in names if info[k].ndim > 1]
        n = self.num_envs
        if scalar:
            rows = np.stack([info[k].astype(np.float64) for k in scalar], axis=1).tolist()
            out = [dict(zip(scalar, row, strict=True)) for row in rows]
        else:
            out = [{} for _ in range(n)]
        for k in arrays:
            v = info[k]
            for i in range(n):
                out[i][k] = v[i]
        return out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        method = getattr(self.venv, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self):
        return [None for _ in range(self.num_envs)]
