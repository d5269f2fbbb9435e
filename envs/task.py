"""The functional core shared by every task (gymnax-style).

A task is a stateless object (its arrays live in :class:`EnvParams` and
:class:`EnvState`) with pure methods::

    obs, state = task.reset(key, params)
    obs, state, reward, terminated, truncated, info = task.step(key, state, action, params)

Both are jit- and vmap-able and branch on no traced value. ``reset`` draws the episode
from the scenario's distribution (its ``randomize`` section: plant, exogenous, jobs,
faults) with the key, so two seeds are two different episodes; the drawn plant and
exogenous params ride in the state (``state.plant_params``, ``state.exo_params``) and
every step reads them there. ``terminated`` (a rack trip, an oxygen hazard, or unserved
IT energy where the task says so) is kept apart from ``truncated`` (the episode length);
at most one of them is true. :class:`AutoReset` adds auto-reset (compute the reset state
and select). The faces call the jitted entry points of :mod:`heatsync.envs.drive`.

A task subclass declares its registry entry (``spec``), its :class:`Reward`, its
observation pieces (:meth:`Task._pieces`) and its action: :meth:`Task.layout` (Box) and
:meth:`Task._decode` from the agent's action to the plant's.
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
    init_state,
    load_scenario,
    param,
    pytree_dataclass,
    replace,
    static,
)
from heatsync.physics import step as plant_step
from heatsync.physics.distribution import Distribution, sample_episode
from heatsync.physics.exogenous import FAULT_KINDS

from . import _queue as Q
from . import observations as _obs
from .config import episode_steps, reward_prices
from .registry import TaskSpec
from .reward import BENEFITS, PENALTIES, Prices, Reward, termination_flags, violations
from .spaces import PLANT_FIELDS, ActionLayout

__all__ = ["EnvParams", "EnvState", "Memory", "FilterParams", "Task", "AutoReset",
           "ACTION_MODES"]

#: action layouts: pod- (or job-) level knobs shared by racks, or one knob per rack
ACTION_MODES = ("pod", "per_rack")


@pytree_dataclass
class FilterParams:
    """Time constants of the running means the env keeps (observed, and the references
    the storage setpoints are relative to)."""

    tau_demand_s: float = param(60.0, 1.0, 1e5, unit="s",
                                doc="low-pass of the facility demand (UPS tier)",
                                source="est: the low-pass storage baseline's tuned value")
    tau_rack_s: float = param(8.0, 0.1, 1e4, unit="s",
                              doc="low-pass of each rack's IT power (ultracapacitor tier)",
                              source="est: the low-pass storage baseline's tuned value")
    slew_frac: float = param(0.95, 0.0, 1.0, unit="1",
                             doc="the grid-draw target moves at most this share of the ramp "
                                 "limit per second", source="est: a 5 % margin")


@pytree_dataclass
class EnvParams:
    """Everything constant over episodes, as one frozen pytree.

    ``plant``, ``exo``: the scenario's nominal plant and exogenous parameters (each
    episode's own are drawn from ``dist`` and kept in the state); ``dist``: the
    scenario's distribution (``None``: fixed); ``control``: fixed setpoints for the
    actuators the task does not drive, and the defaults an action of 0 decodes to;
    ``init``: the workload at reset (empty for tasks with a job queue); ``prices``: the
    reward's prices (USD); ``filters``: running-mean time constants;
    ``episode_steps``: the time limit (steps); ``queue``: how the job queue is drawn
    (scheduling tasks, else ``None``); ``action_mode``: ``"pod"`` or ``"per_rack"``.
    """

    plant: Params
    exo: ExoParams
    dist: Distribution | None
    control: Action
    init: State
    prices: Prices
    filters: FilterParams
    episode_steps: jnp.ndarray
    queue: Q.QueueParams | None = None
    action_mode: str = static("pod")


@pytree_dataclass
class Memory:
    """What the env remembers between steps besides the plant: running means of the
    facility demand and of each rack's IT power (W), the grid-draw target last applied
    (W, slew-limited), the agent's previous action, and how long each fault kind has
    been active (s, 0 when not)."""

    demand_mean_w: jnp.ndarray
    rack_mean_w: jnp.ndarray
    ups_target_w: jnp.ndarray
    prev_action: jnp.ndarray
    fault_s: jnp.ndarray


@pytree_dataclass
class EnvState:
    """What evolves in an episode.

    ``plant``: the plant state; ``plant_params``, ``exo_params``: the episode's own
    (drawn at reset); ``exo_key``: the episode's key for the exogenous series; ``exo``:
    inputs of the coming interval; ``t``: steps taken; ``p_grid_sub_w``: the last
    interval's substep grid draw (W, zeros before the first step); ``memory``: see
    :class:`Memory`; ``cost_usd``, ``violation_s``: running totals of the episode's USD
    cost (the reward's cost terms less its benefits, penalties apart) and of the time the
    specification was broken;
    ``queue``: the job table (scheduling tasks).
    """

    plant: State
    plant_params: Params
    exo_params: ExoParams
    exo_key: jnp.ndarray
    exo: Exogenous
    t: jnp.ndarray
    p_grid_sub_w: jnp.ndarray
    memory: Memory
    cost_usd: jnp.ndarray
    violation_s: jnp.ndarray
    queue: Q.QueueState | None = None


def _on_device(tree):
    return jax.tree.map(jnp.asarray, tree)


def demand_w(p: Params, out: dict):
    """The interval's mean facility demand: what grid and generator supplied plus what
    the UPS delivered (W)."""
    return (out["e_grid_j"] + out["e_gen_j"] + out["e_ups_j"]) / p.dt_s


class Task:
    """Base class of the functional tasks. Subclasses set ``spec`` (their
    :class:`~heatsync.envs.TaskSpec`), ``reward`` (a :class:`Reward`) and
    ``has_queue``, and implement :meth:`_pieces` and either :meth:`layout` and
    :meth:`_decode` (Box actions) or :meth:`action_space` as well.

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

    def params_from_scenario(self, sc: Scenario, queue: dict | None = None,
                             action_mode: str = "pod") -> EnvParams:
        """Build :class:`EnvParams` from a loaded scenario (host side, not jit-able)."""
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode: {action_mode!r}; allowed: {', '.join(ACTION_MODES)}")
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
            plant=p, exo=xp, dist=sc.distribution, control=sc.control, init=init,
            prices=reward_prices(sc), filters=FilterParams(),
            episode_steps=np.int32(episode_steps(sc)), queue=qp, action_mode=action_mode)
        return _on_device(params)

    def make_params(self, scenario=None, *, queue: dict | None = None, action_mode: str = "pod",
                    **overrides) -> EnvParams:
        """Load a scenario (a bundled name, a YAML path or a :class:`Scenario`) and
        build the task's :class:`EnvParams`. ``overrides`` go to ``load_scenario``
        (e.g. ``episode__steps=100``); ``queue`` sets :class:`QueueParams` fields;
        ``action_mode``: ``"pod"`` (default) or ``"per_rack"``."""
        return self.params_from_scenario(self.load(scenario, **overrides), queue, action_mode)

    def layout(self, params: EnvParams) -> ActionLayout:
        """The action layout of a Box task (segments, ranges, defaults, scales)."""
        raise NotImplementedError(f"{self.name} has no Box action layout")

    def action_space(self, params: EnvParams) -> spaces.Space:
        return self.layout(params).space()

    def action_names(self, params: EnvParams) -> list[str]:
        """A label per action component."""
        return self.layout(params).names()

    def action_size(self, params: EnvParams) -> int:
        """Components of the action vector (what ``memory.prev_action`` holds)."""
        return int(np.prod(self.action_space(params).shape))

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

    def _decode(self, action, params: EnvParams, state: EnvState):
        """``(plant Action, (pick, want, offset_frac) or None)`` from an agent action:
        the layout's plant segments over the scenario's fixed ``control``."""
        values = self.layout(params).decode(action)
        return replace(params.control, **_per_rack(params, values)), None

    def _pieces(self, params: EnvParams, state: EnvState) -> list:
        """Named observation pieces (see :mod:`heatsync.envs.observations`)."""
        raise NotImplementedError

    # ---- the functional API -------------------------------------------------------------

    def observe(self, params: EnvParams, state: EnvState):
        """The observation vector (float32, clipped to the Box)."""
        return _obs.concat(self._pieces(params, state))

    def reset(self, key, params: EnvParams):
        """Start an episode: ``(obs, state)``. The key draws the episode from the
        scenario's distribution, the exogenous noise and (scheduling tasks) the queue."""
        k_exo, k_queue, k_episode = jax.random.split(key, 3)
        p, xp, work = sample_episode(params.dist, k_episode, params.plant, params.exo,
                                     params.init.work, jobs=not self.has_queue)
        plant = init_state(p, work, params.control.supply_setpoint_c)
        queue = None
        if self.has_queue:
            queue = Q.generate(params.queue, k_queue, params.episode_steps * p.dt_s, p.n_jobs)
        exo = exogenous_at(xp, k_exo, plant.t_s, p.dt_s)
        f = plant.t_s.dtype
        rack0 = _obs.rack_it_w(p, plant)
        demand0 = _obs.demand_estimate_w(p, plant, params.control)
        memory = Memory(demand_mean_w=demand0, rack_mean_w=rack0, ups_target_w=demand0,
                        prev_action=jnp.zeros((self.action_size(params),), f),
                        fault_s=jnp.zeros((len(FAULT_KINDS),), f))
        state = EnvState(plant=plant, plant_params=p, exo_params=xp, exo_key=k_exo, exo=exo,
                         t=jnp.zeros((), jnp.int32),
                         p_grid_sub_w=jnp.zeros((p.n_sub,), f), memory=memory,
                         cost_usd=jnp.zeros((), f), violation_s=jnp.zeros((), f), queue=queue)
        return self.observe(params, state), state

    def advance(self, params: EnvParams, state: EnvState, action):
        """One control interval under the exogenous inputs in ``state.exo`` (pure, the
        step's physics and reward without the next interval's inputs or the observation:
        what a planner with its own forecast rolls forward).

        **Returns**: ``(state, reward, terms, out, terminated, truncated, extra)``: the new
        state (its ``exo`` still the interval's), the reward (float32), the signed USD
        terms by name, the plant outputs, the flags, and ``extra`` (``violation``, the
        termination causes, job starts and finishes).
        """
        p, xp = state.plant_params, state.exo_params
        a_plant, request = self._decode(action, params, state)
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
        flags = termination_flags(p, out)
        terminated = jnp.zeros((), bool)
        for cause in self.terminal:
            terminated = terminated | flags[cause]
        truncated = (t >= params.episode_steps) & ~terminated
        remaining = jnp.maximum(params.episode_steps - t, 0)
        terms = self.reward.terms_of(params, s0, s1, out, state.exo, remaining, d_prog,
                                     queue=queue, queue_done=queue_done, plant=p,
                                     exo_params=xp)
        signed = self.reward.weighted(terms, dtype=None)
        bad = violations(p, s0, s1, out, state.exo, self.reward.spec)
        reward = jnp.zeros((), jnp.float32)
        cost = jnp.zeros((), s1.t_s.dtype)
        for name in self.terms:
            reward = reward + signed[name].astype(jnp.float32)
            cost = cost + (0.0 if name in PENALTIES else -1.0 if name in BENEFITS else 1.0) \
                * terms[name]
        new = replace(state, plant=s1, t=t, p_grid_sub_w=out["p_grid_sub_w"],
                      memory=_remember(params, state, out, a_plant, action),
                      cost_usd=state.cost_usd + cost,
                      violation_s=state.violation_s + bad * p.dt_s, queue=queue_done)
        extra["violation"] = bad
        extra.update({f"cause_{k}": v for k, v in flags.items()})
        return new, reward, signed, out, terminated, truncated, extra

    def step(self, key, state: EnvState, action, params: EnvParams):
        """Advance one control interval.

        **Arguments**: ``key`` (unused by the deterministic plant; kept for the
        gymnax signature), the state, the agent action (see the env docstring),
        the params.

        **Returns**: ``(obs, state, reward, terminated, truncated, info)``;
        ``info`` holds every plant output of the interval, the raw state values,
        ``reward_<term>`` (signed USD; they sum to the reward), ``violation`` (the
        interval broke the specification), ``cost_usd`` / ``violation_s`` (the
        episode's running totals) and the termination causes.
        """
        del key
        new, reward, signed, out, terminated, truncated, extra = self.advance(params, state,
                                                                              action)
        p, xp = new.plant_params, new.exo_params
        new = replace(new, exo=exogenous_at(xp, new.exo_key, new.plant.t_s, p.dt_s))
        info = {f"reward_{name}": signed[name].astype(jnp.float32) for name in self.terms}
        info.update({k: out[k] for k in OUTPUTS})
        info["p_grid_sub_w"] = out["p_grid_sub_w"]
        info.update(_obs.state_info(params, new))
        info.update(extra)
        return self.observe(params, new), new, reward, terminated, truncated, info

    def reset_info(self, params: EnvParams, state: EnvState) -> dict:
        """Raw values at reset (the Gymnasium ``info`` of ``reset``)."""
        return _obs.state_info(params, state)


def _per_rack(params: EnvParams, values: dict) -> dict:
    """The plant Action fields of decoded values, pod-level ones broadcast to the racks."""
    out = {}
    for k, v in values.items():
        if k in PLANT_FIELDS:
            shape = jnp.shape(getattr(params.control, k))
            out[k] = jnp.broadcast_to(v, shape)
    return out


def _remember(params: EnvParams, state: EnvState, out: dict, a_plant: Action, action):
    """The memory after an interval: running means, the applied grid target, the action,
    the fault clocks."""
    p, m, f = state.plant_params, state.memory, params.filters
    a_d = 1.0 - jnp.exp(-p.dt_s / f.tau_demand_s)
    a_r = 1.0 - jnp.exp(-p.dt_s / f.tau_rack_s)
    first = state.t == 0
    demand = demand_w(p, out)
    rack = out["p_rack_mean_w"]
    d_mean = jnp.where(first, demand, m.demand_mean_w + a_d * (demand - m.demand_mean_w))
    r_mean = jnp.where(first, rack, m.rack_mean_w + a_r * (rack - m.rack_mean_w))
    active = _obs.fault_active(state)
    fault_s = jnp.where(active, m.fault_s + p.dt_s, 0.0)
    prev = jnp.reshape(jnp.asarray(action, m.prev_action.dtype), m.prev_action.shape)
    return Memory(demand_mean_w=d_mean, rack_mean_w=r_mean,
                  ups_target_w=jnp.asarray(a_plant.ups_target_w, m.ups_target_w.dtype),
                  prev_action=prev, fault_s=fault_s)


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
