"""The functional core shared by every task (gymnax-style).

A task is a stateless object (its arrays live in :class:`EnvParams` and
:class:`EnvState`) with pure methods::

    obs, state = task.reset(key, params)
    obs, state, reward, terminated, truncated, info = task.step(key, state, action, params)

Both are jit- and vmap-able and branch on no traced value. ``terminated``
(a rack trip, an oxygen hazard, or unserved IT energy where the task says so)
is kept apart from ``truncated`` (the episode length from the scenario); at
most one of them is true. :class:`AutoReset` adds auto-reset (compute the reset
state and select). The faces call the jitted entry points of
:mod:`heatsync.envs.drive`.

A task subclass declares its registry entry (``spec``), its :class:`Reward`, its
observation pieces (:meth:`Task._pieces`) and, for Box actions, its
:class:`~heatsync.envs.spaces.ActionLayout` (:meth:`Task.layout`); spaces, names and
decoding derive from those.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from heatsync.physics import (
    OUTPUTS,
    Action,
    Exogenous,
    ExoParams,
    Params,
    Scenario,
    State,
    exogenous_at,
    load_scenario,
    pytree_dataclass,
    replace,
)
from heatsync.physics import step as plant_step

from . import _queue as Q
from . import observations as _obs
from .config import episode_steps, reward_weights
from .registry import TaskSpec
from .reward import REWARD_KEYS, Normalizers, Reward, default_normalizers, termination_flags
from .spaces import PLANT_FIELDS, ActionLayout

__all__ = ["EnvParams", "EnvState", "RewardWeights", "Task", "AutoReset"]


def _weights_class():
    fields = [(k, float, dataclasses.field(default=v)) for k, v in REWARD_KEYS.items()]
    cls = dataclasses.make_dataclass(
        "RewardWeights", fields, frozen=True,
        namespace={"__doc__": "Reward weights by term (the scenario's ``reward`` section)."})
    cls.__module__ = __name__
    jax.tree_util.register_dataclass(cls, data_fields=list(REWARD_KEYS), meta_fields=[])
    return cls


RewardWeights = _weights_class()


@pytree_dataclass
class EnvParams:
    """Everything constant over an episode, as one frozen pytree.

    ``plant``, ``exo``: the scenario's plant and exogenous parameters;
    ``control``: fixed setpoints for the actuators the task does not drive;
    ``init``: the plant state at reset; ``reward``: weights by term;
    ``norm``: the term normalizers; ``episode_steps``: the time limit (steps);
    ``queue``: how the job queue is drawn (scheduling tasks, else ``None``).
    """

    plant: Params
    exo: ExoParams
    control: Action
    init: State
    reward: RewardWeights
    norm: Normalizers
    episode_steps: jnp.ndarray
    queue: Q.QueueParams | None = None


@pytree_dataclass
class EnvState:
    """What evolves in an episode.

    ``plant``: the plant state; ``exo_key``: the episode's key for the
    exogenous series; ``exo``: inputs of the coming interval; ``t``: steps
    taken; ``p_grid_sub_w``: the last interval's substep grid draw (W, zeros
    before the first step); ``queue``: the job table (scheduling tasks).
    """

    plant: State
    exo_key: jnp.ndarray
    exo: Exogenous
    t: jnp.ndarray
    p_grid_sub_w: jnp.ndarray
    queue: Q.QueueState | None = None


def _on_device(tree):
    return jax.tree.map(jnp.asarray, tree)


class Task:
    """Base class of the functional tasks. Subclasses set ``spec`` (their
    :class:`~heatsync.envs.TaskSpec`), ``reward`` (a :class:`Reward`) and
    ``has_queue``, and implement :meth:`_pieces` and either :meth:`layout` (Box
    actions) or :meth:`action_space` and :meth:`_decode`.

    Instances hold no arrays; two instances of a class are equal (so a task is
    a static argument of the jitted entry points and compiled code is shared).
    """

    spec: TaskSpec
    reward: Reward
    has_queue: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def env_id(self) -> str:
        return self.spec.env_id

    @property
    def default_scenario(self) -> str:
        return self.spec.default_scenario

    @property
    def terms(self) -> tuple[str, ...]:
        """The reward terms (see :attr:`reward`)."""
        return self.reward.terms

    @property
    def terminal(self) -> tuple[str, ...]:
        """The causes that terminate an episode."""
        return self.reward.terminal

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        return f"{type(self).__name__}()"

    # ---- parameters and spaces ------------------------------------------------------------

    def load(self, scenario=None, **overrides) -> Scenario:
        """Load the scenario (default: the task's) with ``load_scenario`` overrides."""
        return load_scenario(self.default_scenario if scenario is None else scenario, **overrides)

    def params_from_scenario(self, sc: Scenario, queue: dict | None = None) -> EnvParams:
        """Build :class:`EnvParams` from a loaded scenario (host side, not jit-able)."""
        p, xp, init = sc.params, sc.exo, sc.init_state()
        qp = None
        if self.has_queue:
            J, R = p.n_jobs, p.n_racks
            work = replace(init.work, rack_job=jnp.full((R,), -1, jnp.int32),
                           placed=jnp.zeros((J,), init.work.placed.dtype))
            init = replace(init, work=work)
            xp = replace(xp, job_start_s=np.zeros(J), job_stop_s=np.full(J, np.inf))
            try:
                qp = Q.QueueParams(**{"racks_max": max(1, R // 2), **(queue or {})})
            except TypeError as e:
                raise ValueError(f"queue: {e}; allowed keys: "
                                 f"{[f.name for f in dataclasses.fields(Q.QueueParams)]}") from e
        elif queue:
            raise ValueError(f"queue: the {self.name} task has no job queue")
        params = EnvParams(
            plant=p, exo=xp, control=sc.control, init=init,
            reward=RewardWeights(**reward_weights(sc)),
            norm=default_normalizers(p, xp, float(sc.control.supply_setpoint_c)),
            episode_steps=np.int32(episode_steps(sc)), queue=qp)
        return _on_device(params)

    def make_params(self, scenario=None, *, queue: dict | None = None, **overrides) -> EnvParams:
        """Load a scenario (a bundled name, a YAML path or a :class:`Scenario`) and
        build the task's :class:`EnvParams`. ``overrides`` go to ``load_scenario``
        (e.g. ``episode__steps=100``); ``queue`` sets :class:`QueueParams` fields."""
        return self.params_from_scenario(self.load(scenario, **overrides), queue)

    def layout(self, params: EnvParams) -> ActionLayout:
        """The action layout of a Box task (segments, ranges, scales)."""
        raise NotImplementedError(f"{self.name} has no Box action layout")

    def action_space(self, params: EnvParams) -> spaces.Space:
        return self.layout(params).space()

    def action_names(self, params: EnvParams) -> list[str]:
        """A label per action component."""
        return self.layout(params).names()

    def observation_space(self, params: EnvParams) -> spaces.Box:
        n = len(self.obs_names(params))
        return spaces.Box(-_obs.OBS_BOUND, _obs.OBS_BOUND, (n,), np.float32)

    def obs_names(self, params: EnvParams) -> list[str]:
        """A label per observation component (``name`` or ``name[i]``)."""
        labels: list[str] = []

        def pieces(p):
            _, state = self.reset(jax.random.PRNGKey(0), p)
            out = self._pieces(p, state)
            labels[:] = [name for name, _ in out]
            return [jnp.asarray(v) for _, v in out]

        shapes = jax.eval_shape(pieces, params)
        names = []
        for name, v in zip(labels, shapes, strict=True):
            size = int(np.prod(v.shape))
            names += [name] if len(v.shape) == 0 else [f"{name}[{i}]" for i in range(size)]
        return names

    # ---- hooks --------------------------------------------------------------------------

    def _decode(self, action, params: EnvParams):
        """``(plant Action, (pick, want, offset_frac) or None)`` from an agent action:
        the layout's plant segments over the scenario's fixed ``control``."""
        values = self.layout(params).decode(action)
        return replace(params.control, **{k: v for k, v in values.items()
                                          if k in PLANT_FIELDS}), None

    def _pieces(self, params: EnvParams, state: EnvState) -> list:
        """Named observation pieces (see :mod:`heatsync.envs.observations`)."""
        raise NotImplementedError

    # ---- the functional API -------------------------------------------------------------

    def observe(self, params: EnvParams, state: EnvState):
        """The observation vector (float32, clipped to the Box)."""
        return _obs.concat(self._pieces(params, state))

    def reset(self, key, params: EnvParams):
        """Start an episode: ``(obs, state)``. The key draws the exogenous noise
        (and the job queue for scheduling tasks)."""
        k_exo, k_queue = jax.random.split(key)
        p = params.plant
        plant = params.init
        queue = None
        if self.has_queue:
            queue = Q.generate(params.queue, k_queue, params.episode_steps * p.dt_s, p.n_jobs)
        exo = exogenous_at(params.exo, k_exo, plant.t_s, p.dt_s)
        state = EnvState(plant=plant, exo_key=k_exo, exo=exo,
                         t=jnp.zeros((), jnp.int32),
                         p_grid_sub_w=jnp.zeros((p.n_sub,), plant.t_s.dtype), queue=queue)
        return self.observe(params, state), state

    def step(self, key, state: EnvState, action, params: EnvParams):
        """Advance one control interval.

        **Arguments**: ``key`` (unused by the deterministic plant; kept for the
        gymnax signature), the state, the agent action (see the env docstring),
        the params.

        **Returns**: ``(obs, state, reward, terminated, truncated, info)``;
        ``info`` holds every plant output of the interval, the raw state values,
        ``reward_<term>`` (weighted, signed; they sum to the reward),
        ``term_<term>`` (unweighted) and the termination causes.
        """
        del key
        p = params.plant
        a_plant, request = self._decode(action, params)
        s0 = state.plant
        queue = state.queue
        extra = {}
        if self.has_queue:
            pick, want, offset = request
            queue, work, started = Q.start(params.queue, queue, s0.work, s0.trip_s, s0.t_s,
                                           pick, want, offset)
            s0 = replace(s0, work=work)
            extra["job_started"] = started
        prog0 = Q.slot_progress_rack_s(s0.work)
        s1, out = plant_step(p, s0, a_plant, state.exo)
        d_prog = Q.slot_progress_rack_s(s1.work) - prog0
        queue_done = queue
        if self.has_queue:
            queue_done, work, n_done = Q.complete(queue, s1.work)
            s1 = replace(s1, work=work)
            extra["jobs_finished"] = n_done
        t = state.t + 1
        new = EnvState(plant=s1, exo_key=state.exo_key,
                       exo=exogenous_at(params.exo, state.exo_key, s1.t_s, p.dt_s), t=t,
                       p_grid_sub_w=out["p_grid_sub_w"], queue=queue_done)

        flags = termination_flags(p, out)
        terminated = jnp.zeros((), bool)
        for cause in self.terminal:
            terminated = terminated | flags[cause]
        truncated = (t >= params.episode_steps) & ~terminated
        remaining = jnp.maximum(params.episode_steps - t, 0)
        terms = self.reward.terms_of(params, s0, s1, out, state.exo, remaining, d_prog,
                                     queue=queue, queue_done=queue_done)
        weighted = self.reward.weighted(terms, params.reward)

        reward = jnp.zeros((), jnp.float32)
        info = {}
        for name in self.terms:
            info[f"reward_{name}"] = weighted[name]
            info[f"term_{name}"] = terms[name]
            reward = reward + weighted[name]
        info.update({k: out[k] for k in OUTPUTS})
        info["p_grid_sub_w"] = out["p_grid_sub_w"]
        info.update(_obs.state_info(params, new))
        info.update({f"cause_{k}": v for k, v in flags.items()})
        info.update(extra)
        return self.observe(params, new), new, reward, terminated, truncated, info

    def reset_info(self, params: EnvParams, state: EnvState) -> dict:
        """Raw values at reset (the Gymnasium ``info`` of ``reset``)."""
        return _obs.state_info(params, state)


class AutoReset:
    """Wrap a task so that ``step`` resets a finished episode in place (pure).

    ``step(key, state, action, params)`` splits ``key`` into a step key and a
    reset key, steps, computes the reset, and selects it where the episode
    ended; ``info["final_obs"]`` holds the last observation of the ended
    episode (the returned ``obs`` is the new episode's first).
    """

    def __init__(self, task: Task):
        self.task = task

    def reset(self, key, params):
        return self.task.reset(key, params)

    def step(self, key, state, action, params):
        k_step, k_reset = jax.random.split(key)
        obs, st, r, term, trunc, info = self.task.step(k_step, state, action, params)
        done = term | trunc
        obs_r, st_r = self.task.reset(k_reset, params)
        info = dict(info, final_obs=obs)
        st = jax.tree.map(lambda x, y: jnp.where(done, x, y), st_r, st)
        return jnp.where(done, obs_r, obs), st, r, term, trunc, info
