"""The Gymnasium face: NumPy in and out over the jitted functional core."""

from __future__ import annotations

import collections

import gymnasium
import jax
import numpy as np

from ._render import render_dashboard
from .drive import (
    LAYOUTS,
    Entry,
    drive_reset_flat,
    drive_step_flat,
    flat_specs,
    structure_id,
)
from .spaces import check_action
from .task import Task

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
        self.episode_steps = int(self.params.episode_steps)
        self._sid = structure_id(self.params, self.action_space.shape)
        self._rng = None
        self._sbufs = None  # the EnvState as flat buffers (see envs.drive.Flat)
        self._history: collections.deque = collections.deque(maxlen=HISTORY_STEPS)

    @property
    def params(self):
        """The env's :class:`EnvParams` (constant over episodes)."""
        return self._params

    @params.setter
    def params(self, value):
        self._params = value
        self._sflat, self._pflat = flat_specs(self.task, value)
        self._pbufs = self._pflat.device_buffers(value)

    @property
    def entry(self) -> Entry:
        """The static arguments of this env's jitted entry points
        (:func:`heatsync.envs.drive.drive_step_flat`): task, structure id, Flat specs."""
        return Entry(self.task, self._sid, self._sflat, self._pflat)

    @property
    def buffers(self) -> tuple:
        """The dynamic arguments the next ``step`` passes: ``(key chain, state buffers,
        params buffers)`` (``None`` for the first two before ``reset``)."""
        return self._rng, self._sbufs, self._pbufs

    @property
    def state(self):
        """The functional :class:`EnvState` (JAX arrays), for JAX-native tools;
        ``None`` before ``reset``."""
        return None if self._sbufs is None else self._sflat.unpack(self._sbufs)

    @property
    def obs_names(self) -> list[str]:
        """A label per observation component."""
        return self.task.obs_names(self.params)

    @property
    def action_names(self) -> list[str]:
        """A label per action component."""
        return self.task.action_names(self.params)

    def get_state(self) -> dict:
        """A snapshot of the env mid-episode: the functional state and key chain as
        NumPy arrays plus the render history; picklable (``pickle.dump`` it to
        checkpoint). :meth:`set_state` restores it, and the continuation is
        identical to the one the env would have run."""
        if self._sbufs is None:
            raise gymnasium.error.ResetNeeded("call reset() before get_state()")
        return {
            "format": "heatsync-env-state/1",
            "task": self.task.name,
            "shapes": self._snapshot_shapes(),
            "state": self._sflat.unpack(tuple(np.array(b) for b in self._sbufs)),
            "rng": np.asarray(self._rng),
            "history": self._history_entries(),
        }

    def _snapshot_shapes(self) -> dict:
        return {"observation": tuple(self.observation_space.shape),
                "action": tuple(self.action_space.shape), "racks": int(self.params.plant.n_racks)}

    def set_state(self, snapshot: dict) -> None:
        """Restore a snapshot from :meth:`get_state` of an env of the same task and
        structure (scenario shapes and queue settings); raises ``ValueError``
        naming what differs otherwise."""
        if not isinstance(snapshot, dict) or snapshot.get("format") != "heatsync-env-state/1":
            raise ValueError("snapshot: expected a dict from HeatsyncEnv.get_state() "
                             "(format 'heatsync-env-state/1')")
        if snapshot["task"] != self.task.name:
            raise ValueError(f"snapshot.task: {snapshot['task']!r} does not match this env's "
                             f"task {self.task.name!r}")
        if snapshot["shapes"] != self._snapshot_shapes():
            raise ValueError(f"snapshot.shapes: taken on an env with observation/action shapes "
                             f"{snapshot['shapes']}, this env has {self._snapshot_shapes()}")
        leaves = jax.tree_util.tree_leaves(snapshot["state"])
        if len(leaves) != len(self._sflat.shapes) or any(
                np.shape(a) != b for a, b in zip(leaves, self._sflat.shapes, strict=True)):
            raise ValueError("snapshot.state: leaf shapes differ from this env's state")
        tree = jax.tree_util.tree_unflatten(self._sflat.treedef, leaves)
        self._sbufs = self._sflat.device_buffers(tree)
        self._rng = jax.numpy.asarray(snapshot["rng"], dtype=jax.numpy.uint32)
        self._history.clear()
        self._history.extend(snapshot["history"])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = _seed_key(seed)
        elif self._rng is None:
            self._rng = _seed_key(int(self.np_random.integers(0, 2**31 - 1)))
        self._rng, self._sbufs, flat = drive_reset_flat(self.task, self._sid, self._sflat,
                                                        self._pflat, self._rng, self._pbufs)
        layout = LAYOUTS[("reset", self.task, self._sid)]
        obs, info = layout.unpack(np.array(flat), python_scalars=True)
        self._history.clear()
        return np.array(obs, dtype=np.float32), info

    def step(self, action):
        if self._sbufs is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = check_action(action, self.action_space)
        self._rng, self._sbufs, flat = drive_step_flat(self.task, self._sid, self._sflat,
                                                       self._pflat, self._rng, self._sbufs, a,
                                                       self._pbufs)
        host = np.array(flat)
        obs, reward, terminated, truncated, info = LAYOUTS[("step", self.task, self._sid)].unpack(
            host, python_scalars=True)
        self._history.append(host)  # decoded only when rendered or saved (~30 us a step)
        return np.array(obs, dtype=np.float32), reward, bool(terminated), bool(truncated), info

    def _history_entries(self) -> list[dict]:
        """The render history as dicts (raw step outputs are decoded here, lazily)."""
        layout = LAYOUTS.get(("step", self.task, self._sid))
        out = []
        for item in self._history:
            if isinstance(item, np.ndarray):
                _, reward, _, _, info = layout.unpack(item, python_scalars=True)
                item = {"t_s": info["t_s"], "p_grid_sub_w": info["p_grid_sub_w"],
                        "p_it_mean_w": info["p_it_mean_w"],
                        "t_junction_max_c": info["t_junction_max_c"],
                        "t_supply_c": info["t_supply_c"], "ups_soc": info["ups_soc"],
                        "uc_soc_mean": float(np.mean(info["uc_soc"])), "reward": reward}
            out.append(item)
        return out

    def render(self):
        """``rgb_array``: an (H, W, 3) uint8 dashboard of the recent trace."""
        if self.render_mode != "rgb_array":
            return None
        return render_dashboard(self._history_entries(),
                                title=f"{self.task.name} - {self.scenario.name}")

    def close(self):
        self._sbufs = None
