"""The batched face: ``jit(vmap(step))`` over N envs as a ``gymnasium.vector.VectorEnv``.

No Python loop over envs: one jitted call steps (and auto-resets) the whole
batch, and its outputs come to the host in one ``device_get``.

**Autoreset modes** (``autoreset_mode``, a :class:`gymnasium.vector.AutoresetMode` or its
value; ``metadata["autoreset_mode"]`` says which), with Gymnasium's semantics:

* ``NEXT_STEP`` (the default, as Gymnasium's own vector envs): the step that ends an
  episode returns its last observation and flags; on the next call that env is reset
  instead of stepped, returning the reset observation with reward 0, both flags
  false, and its action ignored. Its ``info`` on that call holds the reset's values
  (keys the reset does not produce are zero, their ``_key`` mask false).
* ``SAME_STEP`` (what stable-baselines3 needs, :class:`~heatsync.envs.sb3.SB3VecEnv`):
  the step that ends an episode already returns the first observation of the next;
  ``info["final_obs"]`` (float32 (N, obs_dim)) holds the ended episode's last one,
  valid where ``info["_final_obs"]`` is true; the other entries of an ended env
  describe its final step.
* ``DISABLED``: never reset by itself; ``reset(options={"reset_mask": mask})`` resets
  the envs of the boolean mask (N,) and leaves the others as they are.

In every mode, on a step where some episode ended, ``info["final_state"]`` holds the
batched env state right after that step, valid where ``info["_final_state"]`` is true,
as a dict of NumPy buffers by dtype (so Gymnasium's info wrappers can handle it);
``envs.final_states(info)`` unpacks it into the functional
:class:`~heatsync.envs.EnvState` (leading axis N). Tools read the ended episode's last
plant state there (the KPIs need it) without re-running anything. Every other info key
has its ``_key`` mask.

Seeding: ``reset(seed=s)`` seeds env i with ``s + i`` (a list seeds each env);
env i then follows exactly the key chain of a single env reset with that seed,
so the batch equals N single envs stepped with the same seeds and actions.
"""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ._gym import _seed_key
from .drive import (
    LAYOUTS,
    Entry,
    drive_vreset_flat,
    drive_vstep_flat,
    flat_specs,
    structure_id,
)
from .registry import TASK_SPECS, make_task
from .spaces import check_action

__all__ = ["JaxVectorEnv", "make_task"]

_MODES = {AutoresetMode.NEXT_STEP: "next-step", AutoresetMode.SAME_STEP: "same-step",
          AutoresetMode.DISABLED: "disabled"}


def _autoreset_mode(mode) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in AutoresetMode)
        raise ValueError(f"autoreset_mode: {mode!r}; allowed: AutoresetMode members or "
                         f"{allowed}") from None


class JaxVectorEnv(VectorEnv):
    """N copies of a task stepped by one jitted, vmapped call with auto-reset.

    **Arguments**: ``task`` (a :class:`Task`, a task name or a registered id),
    ``num_envs``, ``scenario`` and ``load_scenario`` overrides as for the single
    env, ``queue`` (scheduling tasks), ``autoreset_mode`` (default ``NEXT_STEP``; see
    the module docstring).

    Example::

        from heatsync.envs import JaxVectorEnv
        envs = JaxVectorEnv("heatsync/PowerSmoothing-v0", num_envs=64, episode__steps=100)
        obs, info = envs.reset(seed=0)
        obs, rew, term, trunc, info = envs.step(envs.action_space.sample())

    or ``gymnasium.make_vec("heatsync/PowerSmoothing-v0", num_envs=64)``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task, num_envs: int, scenario=None, queue: dict | None = None,
                 autoreset_mode=AutoresetMode.NEXT_STEP, **overrides):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
        overrides.pop("render_mode", None)
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.task = make_task(task)
        self.num_envs = int(num_envs)
        self.scenario = self.task.load(scenario, **overrides)
        self.params = self.task.params_from_scenario(self.scenario, queue)
        self.single_observation_space = self.task.observation_space(self.params)
        self.single_action_space = self.task.action_space(self.params)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        # the mode changes the step's outputs, so it is part of the layout's key
        self._sid = structure_id(self.params, self.single_action_space.shape, self.mode)
        self._sflat, self._pflat = flat_specs(self.task, self.params)
        self._pbufs = self._pflat.device_buffers(self.params)
        self._rngs = None
        self._sbufs = None  # the batched EnvState as flat buffers (N, size) (envs.drive.Flat)
        self._pending = np.zeros(self.num_envs, bool)  # NEXT_STEP: reset on the next call

    @property
    def entry(self) -> Entry:
        """The static arguments of this env's jitted entry points
        (:func:`heatsync.envs.drive.drive_vstep_flat`)."""
        return Entry(self.task, self._sid, self._sflat, self._pflat)

    @property
    def buffers(self) -> tuple:
        """``(key chains (N, 2), state buffers (N, size), params buffers)`` the next
        ``step`` passes (``None`` for the first two before ``reset``)."""
        return self._rngs, self._sbufs, self._pbufs

    @property
    def mode(self) -> str:
        """The autoreset mode as the entry point's static string."""
        return _MODES[self.autoreset_mode]

    def _seed_rngs(self, seed, mask):
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
        keys = [np.asarray(_seed_key(s)) if s is not None and mask[i] else base[i]
                for i, s in enumerate(seeds)]
        self._rngs = jnp.asarray(np.stack(keys))

    def reset(self, *, seed=None, options: dict | None = None):
        """Reset every env, or those of ``options["reset_mask"]`` (a bool array (N,)).
        ``seed``: an int (env i gets ``seed + i``), a list of ints or ``None``
        (continue each key chain)."""
        mask = np.ones(self.num_envs, bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != bool:
                raise ValueError(f"options['reset_mask']: expected a bool array of shape "
                                 f"({self.num_envs},), got {mask.dtype} {mask.shape}")
            if self._sbufs is None and not mask.all():
                raise ValueError("options['reset_mask']: the first reset must reset every env")
        if seed is not None and isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(int(seed))
        self._seed_rngs(seed, mask)
        sbufs = self._sbufs
        if sbufs is None:
            sbufs = tuple(jnp.zeros((self.num_envs, n), g)
                          for g, n in zip(self._sflat.groups, self._sflat.sizes, strict=True))
        self._rngs, self._sbufs, flat = drive_vreset_flat(
            *self.entry.static, self._rngs, sbufs, self._pbufs, jnp.asarray(mask))
        self._pending = self._pending & ~mask
        obs, info = LAYOUTS[("vreset", self.task, self._sid)].unpack(np.array(flat))
        return np.array(obs, dtype=np.float32), _batched_info(info, mask)

    def step(self, actions):
        if self._sbufs is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = check_action(actions, self.single_action_space, batch=self.num_envs,
                         name="actions")
        pending = self._pending
        self._rngs, self._sbufs, flat, final, _ = drive_vstep_flat(
            *self.entry.static, self.mode, self._rngs, self._sbufs, a, self._pbufs,
            jnp.asarray(pending))
        layout = LAYOUTS[("vstep", self.task, self._sid)]
        obs, rew, term, trunc, info = layout.unpack(np.array(flat))
        term, trunc = np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool)
        done = term | trunc
        valid = ~pending if self.mode == "next-step" else np.ones(self.num_envs, bool)
        info = _batched_info(info, valid)
        if self.mode == "next-step":
            reset_keys = LAYOUTS[("vreset", self.task, self._sid)].treedef
            reset_keys = set(jax.tree.unflatten(reset_keys, [0] * reset_keys.num_leaves)[1])
            for k in reset_keys & set(info):
                info[f"_{k}"] = np.ones(self.num_envs, bool)
            self._pending = done
        if self.mode == "same-step":
            info["_final_obs"] = done
        if done.any():
            info["final_state"] = {str(g): np.asarray(b)
                                   for g, b in zip(self._sflat.groups, final, strict=True)}
            info["_final_state"] = done
        return (np.array(obs, dtype=np.float32), np.asarray(rew, dtype=np.float32), term, trunc,
                info)

    def final_states(self, info: dict):
        """The batched :class:`EnvState` (NumPy, leading axis N) of ``info["final_state"]``
        (valid where ``info["_final_state"]``); ``None`` if no episode ended on that step."""
        bufs = info.get("final_state")
        if bufs is None:
            return None
        return self._sflat.unpack(tuple(bufs[str(g)] for g in self._sflat.groups), 1)

    @property
    def states(self):
        """The batched functional :class:`EnvState` (leading axis N); ``None``
        before ``reset``."""
        return None if self._sbufs is None else self._sflat.unpack(self._sbufs, batch_ndim=1)

    def close_extras(self, **kwargs):
        self._sbufs = None


def _batched_info(info: dict, valid: np.ndarray) -> dict:
    out = {}
    for k, v in info.items():
        out[k] = np.asarray(v)
        out[f"_{k}"] = valid.copy()
    return out


def _factory(name: str):
    def make(num_envs: int = 1, **kwargs):
        return JaxVectorEnv(name, num_envs, **kwargs)

    spec = TASK_SPECS[name]
    make.__name__ = make.__qualname__ = spec.vector_entry.split(":")[1]
    make.__doc__ = f"Vector entry point of {spec.env_id} (a :class:`JaxVectorEnv`)."
    return make


for _name in TASK_SPECS:
    _make = _factory(_name)
    globals()[_make.__name__] = _make
