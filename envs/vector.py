"""The batched face: ``jit(vmap(step))`` over N envs as a ``gymnasium.vector.VectorEnv``.

No Python loop over envs: one jitted call steps (and auto-resets) the whole
batch, and its outputs come to the host in one ``device_get``.

Autoreset mode: ``AutoresetMode.SAME_STEP``. On the step where an env's
episode ends, the returned observation is already the first of its next
episode; ``info["final_obs"]`` (a float32 array (N, obs_dim)) holds the last
observation of the ended episode, valid where ``info["_final_obs"]`` is true.
The other ``info`` entries of an ended env describe its final step (as
``final_info`` does in Gymnasium's own vector envs). Every info key has its
``_key`` mask (all true).

Seeding: ``reset(seed=s)`` seeds env i with ``s + i`` (a list seeds each env);
env i then follows exactly the key chain of a single env reset with that seed,
so the batch equals N single envs stepped with the same seeds and actions.
"""

from __future__ import annotations

import gymnasium
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ._core import LAYOUTS, Task, drive_vreset_flat, drive_vstep_flat, flat_specs, structure_id
from ._gym import _seed_key
from ._spaces import check_action
from .cooling_dispatch import CoolingDispatch
from .facility import Facility
from .power_smoothing import PowerSmoothing
from .scheduling import PowerAwareScheduling

__all__ = ["JaxVectorEnv", "TASKS", "make_task"]

#: tasks by name and by registered id
TASKS: dict[str, Task] = {}
for _t in (PowerSmoothing(), CoolingDispatch(), PowerAwareScheduling(), Facility()):
    TASKS[_t.name] = _t
    TASKS[_t.env_id] = _t
    TASKS[_t.env_id.split("/")[-1]] = _t


def make_task(task) -> Task:
    """A :class:`Task` from an instance, a name (``"PowerSmoothing"``) or an env id."""
    if isinstance(task, Task):
        return task
    key = str(task)
    if key.startswith("heatsync:"):
        key = key[len("heatsync:"):]
    if key not in TASKS:
        names = sorted({t.env_id for t in TASKS.values()})
        raise ValueError(f"task: unknown {task!r}; known: {', '.join(names)}")
    return TASKS[key]


class JaxVectorEnv(VectorEnv):
    """N copies of a task stepped by one jitted, vmapped call with auto-reset.

    **Arguments**: ``task`` (a :class:`Task`, a task name or a registered id),
    ``num_envs``, ``scenario`` and ``load_scenario`` overrides as for the single
    env, ``queue`` (scheduling tasks).

    Example::

        from heatsync.envs import JaxVectorEnv
        envs = JaxVectorEnv("heatsync/PowerSmoothing-v0", num_envs=64, episode__steps=100)
        obs, info = envs.reset(seed=0)
        obs, rew, term, trunc, info = envs.step(envs.action_space.sample())

    or ``gymnasium.make_vec("heatsync/PowerSmoothing-v0", num_envs=64)``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task, num_envs: int, scenario=None, queue: dict | None = None,
                 **overrides):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
        overrides.pop("render_mode", None)
        self.task = make_task(task)
        self.num_envs = int(num_envs)
        self.scenario = self.task.load(scenario, **overrides)
        self.params = self.task.params_from_scenario(self.scenario, queue)
        self.single_observation_space = self.task.observation_space(self.params)
        self.single_action_space = self.task.action_space(self.params)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._sid = structure_id(self.params, self.single_action_space.shape)
        self._sflat, self._pflat = flat_specs(self.task, self.params)
        self._pbufs = self._pflat.device_buffers(self.params)
        self._rngs = None
        self._sbufs = None  # the batched EnvState as flat buffers (N, size) (envs._core.Flat)

    def _seed_rngs(self, seed):
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed: got {len(seeds)} seeds for num_envs = {n}")
        if self._rngs is None:
            base = np.asarray([_seed_key(int(self.np_random.integers(0, 2**31 - 1)))
                               for _ in range(n)]) if any(s is None for s in seeds) else None
        else:
            base = np.asarray(self._rngs)
        keys = [np.asarray(_seed_key(s)) if s is not None else base[i]
                for i, s in enumerate(seeds)]
        self._rngs = jnp.asarray(np.stack(keys))

    def reset(self, *, seed=None, options: dict | None = None):
        """Reset every env. ``seed``: an int (env i gets ``seed + i``), a list of
        ints or ``None`` (continue each key chain)."""
        if seed is not None and isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(int(seed))
        self._seed_rngs(seed)
        self._rngs, self._sbufs, flat = drive_vreset_flat(self.task, self._sid, self._sflat,
                                                          self._pflat, self._rngs, self._pbufs)
        obs, info = LAYOUTS[("vreset", self.task, self._sid)].unpack(np.array(flat))
        return np.array(obs, dtype=np.float32), _batched_info(info)

    def step(self, actions):
        if self._sbufs is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = check_action(actions, self.single_action_space, batch=self.num_envs,
                         name="actions")
        self._rngs, self._sbufs, flat = drive_vstep_flat(self.task, self._sid, self._sflat,
                                                         self._pflat, self._rngs, self._sbufs, a,
                                                         self._pbufs)
        layout = LAYOUTS[("vstep", self.task, self._sid)]
        obs, rew, term, trunc, info = layout.unpack(np.array(flat))
        done = term | trunc
        info = _batched_info(info)
        info["_final_obs"] = done
        return (np.array(obs, dtype=np.float32), np.asarray(rew, dtype=np.float32),
                np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool), info)

    @property
    def states(self):
        """The batched functional :class:`EnvState` (leading axis N); ``None``
        before ``reset``."""
        return None if self._sbufs is None else self._sflat.unpack(self._sbufs, batch_ndim=1)

    def close_extras(self, **kwargs):
        self._sbufs = None


def _batched_info(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        a = np.asarray(v)
        out[k] = a
        out[f"_{k}"] = np.ones(a.shape[:1], dtype=bool)
    return out


def _factory(task: Task):
    def make(num_envs: int = 1, **kwargs):
        return JaxVectorEnv(task, num_envs, **kwargs)

    make.__name__ = make.__qualname__ = f"make_{task.name}_vector"
    make.__doc__ = f"Vector entry point of {task.env_id} (a :class:`JaxVectorEnv`)."
    return make


power_smoothing_vector = _factory(TASKS["PowerSmoothing"])
cooling_dispatch_vector = _factory(TASKS["CoolingDispatch"])
power_aware_scheduling_vector = _factory(TASKS["PowerAwareScheduling"])
facility_vector = _factory(TASKS["Facility"])
