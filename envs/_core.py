"""The functional core shared by every task (gymnax-style).

A task is a stateless object (its arrays live in :class:`EnvParams` and
:class:`EnvState`) with pure methods::

    obs, state = task.reset(key, params)
    obs, state, reward, terminated, truncated, info = task.step(key, state, action, params)

Both are jit- and vmap-able and branch on no traced value. ``terminated``
(a rack trip, an oxygen hazard, or unserved IT energy where the task says so)
is kept apart from ``truncated`` (the episode length from the scenario); at
most one of them is true. :class:`AutoReset` adds auto-reset (compute the reset
state and select), and the ``drive_*`` functions are the jitted entry points
the Gymnasium, vector and stable-baselines3 faces call: they carry a PRNG key
chain per env so that a batch of envs equals the same envs stepped one by one.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
from functools import partial

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from heatsync import _xla
from heatsync.physics import (
    OUTPUTS,
    REWARD_KEYS,
    Action,
    Exogenous,
    ExoParams,
    Params,
    Scenario,
    State,
    exogenous_at,
    load_scenario,
    replace,
)
from heatsync.physics import step as plant_step
from heatsync.physics._pytree import pytree_dataclass

from . import _obs
from . import _queue as Q
from ._terms import BENEFITS, Normalizers, check_terms, cost_terms, default_normalizers

__all__ = ["EnvParams", "EnvState", "RewardWeights", "Task", "AutoReset", "TRACE_COUNTS",
           "LAYOUTS", "Layout", "Flat", "structure_id", "drive_reset", "drive_step",
           "drive_vreset", "drive_vstep", "drive_reset_flat", "drive_step_flat",
           "drive_vreset_flat", "drive_vstep_flat", "one_kernel"]

#: how many times each jitted entry point was traced, by (task name, entry point)
TRACE_COUNTS: collections.Counter = collections.Counter()


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
    """Base class of the functional tasks. Subclasses set the class attributes
    and implement :meth:`_decode` and :meth:`_pieces`.

    Instances hold no arrays; two instances of a class are equal (so a task is
    a static argument of the jitted entry points and compiled code is shared).
    """

    name: str = ""
    env_id: str = ""
    default_scenario: str = "default"
    terms: tuple[str, ...] = ()
    terminal: tuple[str, ...] = ("trip", "hazard")
    has_queue: bool = False

    def __init__(self):
        check_terms(self.terms)

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
        setpoint = float(sc.config.get("control", {}).get("supply_setpoint_c", 32.0))
        params = EnvParams(
            plant=p, exo=xp, control=sc.control, init=init,
            reward=RewardWeights(**sc.reward), norm=default_normalizers(p, xp, setpoint),
            episode_steps=np.int32(sc.episode_steps), queue=qp)
        return _on_device(params)

    def make_params(self, scenario=None, *, queue: dict | None = None, **overrides) -> EnvParams:
        """Load a scenario (a bundled name, a YAML path or a :class:`Scenario`) and
        build the task's :class:`EnvParams`. ``overrides`` go to ``load_scenario``
        (e.g. ``episode__steps=100``); ``queue`` sets :class:`QueueParams` fields."""
        return self.params_from_scenario(self.load(scenario, **overrides), queue)

    def action_space(self, params: EnvParams) -> spaces.Space:
        raise NotImplementedError

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

    def action_names(self, params: EnvParams) -> list[str]:
        """A label per action component."""
        raise NotImplementedError

    # ---- hooks --------------------------------------------------------------------------

    def _decode(self, action, params: EnvParams):
        """``(plant Action, (pick, want, offset_frac) or None)`` from an agent action."""
        raise NotImplementedError

    def _pieces(self, params: EnvParams, state: EnvState) -> list:
        """Named observation pieces (see :mod:`heatsync.envs._obs`)."""
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
        terms_extra = {}
        if self.has_queue:
            terms_extra["work_value"] = (jnp.sum(d_prog * Q.slot_value(queue))
                                         / params.norm.work_ref_rack_s)
            queue, work, n_done = Q.complete(queue, s1.work)
            s1 = replace(s1, work=work)
            terms_extra["deadline"] = Q.overdue_racks(queue, s1.t_s) / p.n_racks
            extra["jobs_finished"] = n_done
        t = state.t + 1
        new = EnvState(plant=s1, exo_key=state.exo_key,
                       exo=exogenous_at(params.exo, state.exo_key, s1.t_s, p.dt_s), t=t,
                       p_grid_sub_w=out["p_grid_sub_w"], queue=queue)

        flags = {"trip": out["trips"] > 0.0,
                 "hazard": out["o2_min_frac"] < p.ln2.o2_alarm_frac,
                 "unserved": out["e_unserved_j"] > 0.0}
        terminated = jnp.zeros((), bool)
        for cause in self.terminal:
            terminated = terminated | flags[cause]
        truncated = (t >= params.episode_steps) & ~terminated
        remaining = jnp.maximum(params.episode_steps - t, 0)
        terms = cost_terms(p, params.norm, s0, s1, out, state.exo, d_prog, remaining, flags,
                           self.terminal)
        terms.update(terms_extra)
        terms.update(self._adjust_terms(params, s0, s1, out, state.exo, terms))

        reward = jnp.zeros((), jnp.float32)
        info = {}
        for name in self.terms:
            sign = 1.0 if name in BENEFITS else -1.0
            r = (sign * getattr(params.reward, name) * terms[name]).astype(jnp.float32)
            info[f"reward_{name}"] = r
            info[f"term_{name}"] = terms[name]
            reward = reward + r
        info.update({k: out[k] for k in OUTPUTS})
        info["p_grid_sub_w"] = out["p_grid_sub_w"]
        info.update(_obs.state_info(params, new))
        info.update({f"cause_{k}": v for k, v in flags.items()})
        info.update(extra)
        return self.observe(params, new), new, reward, terminated, truncated, info

    def _adjust_terms(self, params, s0, s1, out, exo, terms) -> dict:
        """Task-specific replacements of terms (none by default)."""
        return {}

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
        return _autoreset(self.task, k_step, k_reset, state, action, params)[:6]


def _select(done, a, b):
    return jax.tree.map(lambda x, y: jnp.where(done, x, y), a, b)


def _autoreset(task, k_step, k_reset, state, action, params):
    obs, st, r, term, trunc, info = task.step(k_step, state, action, params)
    done = term | trunc
    obs_r, st_r = task.reset(k_reset, params)
    info = dict(info, final_obs=obs)
    return (jnp.where(done, obs_r, obs), _select(done, st_r, st), r, term, trunc, info, done)


# ---- jitted entry points of the faces (a key chain per env) ----------------------------------
#
# Each entry point returns what the host needs as ONE flat array (per env), so a
# step costs one device-to-host transfer; :class:`Layout` unpacks it. The layout
# is recorded at trace time under the static ``sid`` (see :func:`structure_id`).

#: (entry point, task, structure id) -> Layout of its host output
LAYOUTS: dict = {}


class Layout:
    """How a flat host array maps back to the output pytree (names, shapes, dtypes)."""

    def __init__(self, tree):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.shapes = [tuple(x.shape) for x in leaves]
        self.dtypes = [np.dtype(x.dtype) for x in leaves]
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        # one env's conversion plan (see _unpack_one): every leaf's offset in the
        # tolist() values, then fix-ups for the leaves that are not float scalars
        starts = self.offsets[:-1]
        self._take = operator.itemgetter(*starts) if len(starts) > 1 else (
            lambda v: (v[starts[0]],) if starts else ())
        conv = {"b": bool, "i": int, "u": int}
        self._fix = []  # (leaf index, converter or None, start, stop, shape, dtype)
        for i, (shape, dtype, a, b) in enumerate(zip(self.shapes, self.dtypes, starts,
                                                     self.offsets[1:], strict=True)):
            if shape or dtype.kind in conv:
                self._fix.append((i, None if shape else conv[dtype.kind], a, b, shape, dtype))
        self._build = _fast_builder(self.treedef)

    def unpack(self, flat: np.ndarray, python_scalars: bool = False):
        """Rebuild the pytree from ``flat`` of shape (..., total) (NumPy views)."""
        batch = flat.shape[:-1]
        if python_scalars and not batch:
            return self._unpack_one(flat)
        leaves = []
        for shape, dtype, a, b in zip(self.shapes, self.dtypes, self.offsets[:-1],
                                      self.offsets[1:], strict=True):
            x = flat[..., a:b].reshape(batch + shape)
            if python_scalars and x.ndim == 0:
                leaves.append(bool(x) if dtype.kind == "b" else
                              int(x) if dtype.kind in "iu" else float(x))
            else:
                leaves.append(x.astype(dtype, copy=False))
        return jax.tree.unflatten(self.treedef, leaves)

    def _unpack_one(self, flat: np.ndarray):
        """One env's output with scalars as Python numbers. Per-leaf NumPy calls cost
        ~1-3 us each and an info has ~90 leaves, so: one ``tolist``, one C-level
        gather of every leaf's first value (float scalars are then done), fix-ups
        for the few bool/int scalars and arrays, and a direct build of the output
        tuple and info dict (``_fast_builder``)."""
        values = flat.tolist()
        leaves = list(self._take(values))
        for i, to, a, b, shape, dtype in self._fix:
            if to is not None:
                leaves[i] = to(values[a])
            else:
                x = flat[a:b].reshape(shape)
                leaves[i] = x if x.dtype == dtype else x.astype(dtype)
        return self._build(leaves)


def _fast_builder(treedef):
    """``leaves -> tree`` for a tuple of leaves and flat dicts of leaves (what the
    entry points return), built with ``zip`` (~4x faster than ``tree.unflatten``);
    other structures fall back to ``tree.unflatten``."""
    def slow(leaves):
        return jax.tree.unflatten(treedef, leaves)

    example = jax.tree.unflatten(treedef, list(range(treedef.num_leaves)))
    if not isinstance(example, tuple):
        return slow
    parts = []  # (start, stop, dict keys or None)
    i = 0
    for child in example:
        if isinstance(child, int):
            parts.append((i, i + 1, None))
            i += 1
        elif type(child) is dict and all(isinstance(v, int) for v in child.values()):
            parts.append((i, i + len(child), tuple(child)))
            i += len(child)
        else:
            return slow

    def fast(leaves):
        return tuple(leaves[a] if keys is None else dict(zip(keys, leaves[a:b], strict=True))
                     for a, b, keys in parts)

    return fast


class Flat:
    """A pytree as one 1-D buffer per dtype (float32, int32, uint32 ...).

    A jitted call pays about 0.5 us per argument and output leaf, and the env's
    params have ~200 leaves and its state ~60, so the faces pass and keep these
    buffers instead (2-3 instead of 260 leaves). Inside the jit, :meth:`unpack`
    is slices and reshapes, which XLA folds away. ``batch_ndim`` leading axes
    (a vector env's N) stay in front of the buffers.

    Instances compare equal when tree structure, leaf shapes and dtypes do, so
    a :class:`Flat` is a static argument of the jitted entry points.
    """

    def __init__(self, tree):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.shapes = tuple(tuple(int(d) for d in np.shape(x)) for x in leaves)
        self.dtypes = tuple(np.dtype(x.dtype) for x in leaves)
        self.groups = tuple(sorted(set(self.dtypes), key=str))
        ends = dict.fromkeys(self.groups, 0)
        self.slots = []  # (group index, start, stop) per leaf
        for shape, dt in zip(self.shapes, self.dtypes, strict=True):
            n = int(np.prod(shape))
            self.slots.append((self.groups.index(dt), ends[dt], ends[dt] + n))
            ends[dt] += n
        self.sizes = tuple(ends[g] for g in self.groups)
        self._key = (self.treedef, self.shapes, self.dtypes)
        self._hash = hash(self._key)  # jit hashes static arguments on every call

    def __eq__(self, other):
        return isinstance(other, Flat) and (other is self or self._key == other._key)

    def __hash__(self):
        return self._hash

    def pack(self, tree, batch_ndim: int = 0, xp=jnp):
        """The buffers of ``tree`` (``xp``: ``jnp`` inside a jit, ``np`` on the host)."""
        parts = [[] for _ in self.groups]  # every group has a leaf, by construction
        for x, (g, _, _) in zip(self.treedef.flatten_up_to(tree), self.slots, strict=True):
            x = xp.asarray(x)
            parts[g].append(x.reshape(x.shape[:batch_ndim] + (-1,)).astype(self.groups[g]))
        return tuple(xp.concatenate(p, axis=-1) for p in parts)

    def device_buffers(self, tree, batch_ndim: int = 0):
        """:meth:`pack` on the host (NumPy, no tracing), then on the device."""
        return tuple(jnp.asarray(b) for b in self.pack(tree, batch_ndim, xp=np))

    def unpack(self, bufs, batch_ndim: int = 0):
        """The pytree back from :meth:`pack`'s buffers (views or slices)."""
        batch = tuple(bufs[0].shape[:batch_ndim]) if bufs else ()
        leaves = [bufs[g][..., a:b].reshape(batch + shape)
                  for (g, a, b), shape in zip(self.slots, self.shapes, strict=True)]
        return jax.tree.unflatten(self.treedef, leaves)


def flat_specs(task: Task, params: EnvParams) -> tuple[Flat, Flat]:
    """``(state Flat, params Flat)`` of one env of ``task`` (host side, no compile)."""
    _, state = jax.eval_shape(task.reset, jax.random.PRNGKey(0), params)
    return Flat(state), Flat(params)


def structure_id(params: EnvParams, *extra) -> int:
    """A hashable id of the params' structure and leaf shapes (plus ``extra``)."""
    leaves, treedef = jax.tree.flatten(params)
    return hash((treedef, tuple((jnp.shape(x), str(jnp.result_type(x))) for x in leaves), extra))


def _pack(kind, task, sid, host):
    LAYOUTS[(kind, task, sid)] = Layout(host)
    f = jnp.result_type(float)
    return jnp.concatenate([jnp.ravel(x).astype(f) for x in jax.tree.leaves(host)])


def _reset_one(task, rng, params):
    rng, k = jax.random.split(rng)
    obs, state = task.reset(k, params)
    return rng, state, (obs, task.reset_info(params, state))


def _step_one(task, rng, state, action, params):
    rng, k = jax.random.split(rng)
    obs, state, r, term, trunc, info = task.step(k, state, action, params)
    return rng, state, (obs, r, term, trunc, info)


@partial(jax.jit, static_argnums=(0, 1))
def drive_reset(task: Task, sid: int, rng, params: EnvParams):
    """``(rng, state, flat)``: reset one env from its key chain; ``flat`` unpacks
    (``LAYOUTS["reset", task, sid]``) to ``(obs, info)``."""
    TRACE_COUNTS[(task.name, "reset")] += 1
    rng, state, host = _reset_one(task, rng, params)
    return rng, state, _pack("reset", task, sid, host)


@partial(jax.jit, static_argnums=(0, 1))
def drive_step(task: Task, sid: int, rng, state, action, params: EnvParams):
    """``(rng, state, flat)``: step one env; ``flat`` unpacks to
    ``(obs, reward, terminated, truncated, info)``."""
    TRACE_COUNTS[(task.name, "step")] += 1
    rng, state, host = _step_one(task, rng, state, action, params)
    return rng, state, _pack("step", task, sid, host)


@partial(jax.jit, static_argnums=(0, 1))
def drive_vreset(task: Task, sid: int, rngs, params: EnvParams):
    """Batched :func:`drive_reset` over a leading axis of keys."""
    TRACE_COUNTS[(task.name, "vreset")] += 1

    def one(rng):
        rng, state, host = _reset_one(task, rng, params)
        return rng, state, _pack("vreset", task, sid, host)

    return jax.vmap(one)(rngs)


@partial(jax.jit, static_argnums=(0, 1))
def drive_vstep(task: Task, sid: int, rngs, states, actions, params: EnvParams):
    """Batched step with auto-reset: an env whose episode ended continues its
    key chain exactly as a single env that is reset after the end would;
    ``info["final_obs"]`` holds the ended episode's last observation.

    Each env's reset is computed and selected where its episode ended (no
    per-env branch); the batch skips computing resets on steps where no env
    ended (one ``lax.cond`` over the whole batch), which saves most of the reset
    cost for long episodes.
    """
    TRACE_COUNTS[(task.name, "vstep")] += 1

    def one(rng, state, action):
        rng, k = jax.random.split(rng)
        rng_reset, k_reset = jax.random.split(rng)
        obs, st, r, term, trunc, info = task.step(k, state, action, params)
        return rng, rng_reset, k_reset, obs, st, (r, term, trunc, info)

    rngs, rngs_reset, k_reset, obs, states, (r, term, trunc, info) = jax.vmap(one)(
        rngs, states, actions)
    done = term | trunc

    def with_resets(carry):
        obs, states = carry
        obs_r, st_r = jax.vmap(task.reset, in_axes=(0, None))(k_reset, params)
        return _select_rows(done, obs_r, obs), _select_rows(done, st_r, states)

    obs_out, states = jax.lax.cond(jnp.any(done), with_resets, lambda carry: carry,
                                   (obs, states))
    rngs = _select_rows(done, rngs_reset, rngs)
    info = dict(info, final_obs=obs)
    flat = jax.vmap(lambda h: _pack("vstep", task, sid, h))((obs_out, r, term, trunc, info))
    return rngs, states, flat


def _select_rows(mask, a, b):
    """Per-row select over a batch of pytrees (mask (N,))."""
    def sel(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(sel, a, b)


def one_kernel(fn, *args):
    """``fn(*args)``, computed inside a while loop that runs once.

    With heatsync's XLA:CPU setting (``heatsync/_xla.py``), XLA compiles a small
    while loop as a single kernel, so this turns a step's ~600 small kernels into
    one (a single env step: ~330 us to ~100 us per jitted call). The single-env
    entry points use it; the vector ones do not (see ``drive_vstep_flat``). XLA
    must not see that the loop runs once, or it would inline the body: the trip counter
    starts behind an ``optimization_barrier``. The arguments ride in the loop
    carry (through a barrier too) so that no part of ``fn`` is loop-invariant
    and hoisted out of the loop. Without the setting this costs a loop of one
    trip and a copy of the outputs, which makes a single env step 3x slower, so
    then (``heatsync._xla.loops_as_one_kernel()`` false) it calls ``fn`` directly.
    Not differentiable (a while loop); the ``drive_*`` entry points are never
    differentiated.
    """
    if not _xla.loops_as_one_kernel():
        return fn(*args)
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)  # traced once
    flat_fn = jax.extend.core.jaxpr_as_fun(closed)
    zeros = [jnp.zeros(s.shape, s.dtype) for s in jax.tree.leaves(out_shape)]
    i0 = jax.lax.optimization_barrier(jnp.zeros((), jnp.int32))

    def body(carry):
        i, xs, _ = carry
        return i + 1, jax.lax.optimization_barrier(xs), list(flat_fn(*xs))

    _, _, outs = jax.lax.while_loop(lambda carry: carry[0] < 1, body,
                                    (i0, jax.tree.leaves(args), zeros))
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


# ---- the same entry points over flat buffers (what the faces call) --------------------------


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_reset_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rng, pbufs):
    """:func:`drive_reset` with the params as ``pflat`` buffers and the state
    returned as ``sflat`` buffers (see :class:`Flat`)."""
    TRACE_COUNTS[(task.name, "reset")] += 1

    def run(rng, pbufs):
        rng, state, host = _reset_one(task, rng, pflat.unpack(pbufs))
        return rng, sflat.pack(state), _pack("reset", task, sid, host)

    return one_kernel(run, rng, pbufs)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_step_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rng, sbufs, action, pbufs):
    """:func:`drive_step` over flat state and params buffers."""
    TRACE_COUNTS[(task.name, "step")] += 1

    def run(rng, sbufs, action, pbufs):
        rng, state, host = _step_one(task, rng, sflat.unpack(sbufs), action, pflat.unpack(pbufs))
        return rng, sflat.pack(state), _pack("step", task, sid, host)

    return one_kernel(run, rng, sbufs, action, pbufs)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_vreset_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rngs, pbufs):
    """:func:`drive_vreset` returning batched state buffers (N, size)."""
    rngs, states, flat = drive_vreset.__wrapped__(task, sid, rngs, pflat.unpack(pbufs))
    return rngs, sflat.pack(states, batch_ndim=1), flat


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_vstep_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rngs, sbufs, actions,
                     pbufs):
    """:func:`drive_vstep` over batched state buffers (N, size) and flat params."""
    # not one_kernel: its per-kernel savings are spread over N envs here, and as one
    # kernel the step compiled in 19-21 s instead of 10-11 s (PowerSmoothing, N = 64 and
    # 256) and 19 s instead of 15 s (Facility, N = 64), for 10-25 % more steps/s
    rngs, states, flat = drive_vstep.__wrapped__(task, sid, rngs, sflat.unpack(sbufs, 1),
                                                 actions, pflat.unpack(pbufs))
    return rngs, sflat.pack(states, batch_ndim=1), flat
