"""The jitted entry points the Gymnasium, vector and stable-baselines3 faces call,
and the flat buffers they pass (documented, for tools such as ``scripts/perf.py``).

Each entry point carries a PRNG key chain per env, so a batch of envs equals the
same envs stepped one by one, and returns what the host needs as ONE flat array
(per env), so a step costs one device-to-host transfer; :class:`Layout` unpacks it
(the layout is recorded at trace time under the static structure id ``sid``, see
:func:`structure_id`). The faces keep the env state and params as :class:`Flat`
buffers (one 1-D array per dtype), since a jitted call pays per argument leaf.

Public faces of a built env (:class:`~heatsync.envs.HeatsyncEnv` and
:class:`~heatsync.envs.JaxVectorEnv`): ``env.entry`` is an :class:`Entry` naming the
task, structure id and Flat specs (the static arguments of these entry points), and
``env.buffers`` the current dynamic ones (key chain, state and params buffers).
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

from heatsync import _xla

from .task import EnvParams, Task

__all__ = ["TRACE_COUNTS", "LAYOUTS", "AUTORESET_MODES", "Layout", "Flat", "Entry", "flat_specs",
           "structure_id", "drive_reset_flat", "drive_step_flat", "drive_vreset_flat",
           "drive_vstep_flat", "vector_reset", "vector_step", "one_kernel", "reset_body",
           "step_body", "pack_output"]

#: how many times each jitted entry point was traced, by (task name, entry point)
TRACE_COUNTS: collections.Counter = collections.Counter()

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


def pack_output(kind, task, sid, host):
    """One env's host outputs as one flat float array; records their :class:`Layout`
    under ``LAYOUTS[kind, task, sid]`` (at trace time)."""
    LAYOUTS[(kind, task, sid)] = Layout(host)
    f = jnp.result_type(float)
    return jnp.concatenate([jnp.ravel(x).astype(f) for x in jax.tree.leaves(host)])


def reset_body(task, rng, params):
    """``(rng, state, (obs, info))``: one env's reset from its key chain."""
    rng, k = jax.random.split(rng)
    obs, state = task.reset(k, params)
    return rng, state, (obs, task.reset_info(params, state))


def step_body(task, rng, state, action, params):
    """``(rng, state, (obs, reward, terminated, truncated, info))``: one env's step."""
    rng, k = jax.random.split(rng)
    obs, state, r, term, trunc, info = task.step(k, state, action, params)
    return rng, state, (obs, r, term, trunc, info)


def _select_rows(mask, a, b):
    """Per-row select over a batch of pytrees (mask (N,))."""
    def sel(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(sel, a, b)


#: the vector entry point's autoreset modes (Gymnasium's AutoresetMode values)
AUTORESET_MODES = ("same-step", "next-step", "disabled")


def vector_reset(task, rngs, states, params, mask):
    """Reset the rows of ``mask`` (N,) from their key chains; the other rows keep
    ``rngs`` and ``states``. **Returns** ``(rngs, states, (obs, info))`` batched, the
    observation and reset info of every row's (new or kept) state."""
    r_rngs, r_states, _ = jax.vmap(partial(reset_body, task), in_axes=(0, None))(rngs, params)
    rngs, states = _select_rows(mask, r_rngs, rngs), _select_rows(mask, r_states, states)
    host = jax.vmap(lambda s: (task.observe(params, s), task.reset_info(params, s)))(states)
    return rngs, states, host


def vector_step(task, mode: str, rngs, states, actions, params, pending):
    """The batched step of every autoreset mode (pure; ``mode`` static).

    * ``"same-step"``: step; where an episode ended, reset at once (the reset key is
      split from the key chain after the step, as a single env reset after the end
      would); ``obs`` is the new episode's first, ``info["final_obs"]`` the ended one's;
    * ``"next-step"``: the rows of ``pending`` (N,), whose episode ended on the last
      call, are reset instead of stepped: reset observation, zero reward, neither
      flag (the action is ignored); the other rows step;
    * ``"disabled"``: step every row, never reset.

    Resets are computed only on calls where some row needs one (one ``lax.cond`` over
    the batch). **Returns**: ``(rngs, states, host, final_states, reset_rows)``:
    ``host`` is ``(obs, reward, terminated, truncated, info)`` batched, ``final_states``
    the states right after the step (before any reset), ``reset_rows`` (N,) the rows
    whose returned state is a reset.
    """
    s_rngs, s_states, (obs, r, term, trunc, info) = jax.vmap(
        partial(step_body, task), in_axes=(0, 0, 0, None))(rngs, states, actions, params)
    done = term | trunc
    if mode == "same-step":
        rows, base_rngs = done, s_rngs
        info = dict(info, final_obs=obs)
    elif mode == "next-step":
        rows, base_rngs = pending, rngs
    else:
        return s_rngs, s_states, (obs, r, term, trunc, info), s_states, jnp.zeros_like(done)

    def with_resets(carry):
        c_rngs, c_states, c_obs, c_info = carry
        r_rngs, r_states, (r_obs, r_info) = jax.vmap(partial(reset_body, task),
                                                     in_axes=(0, None))(base_rngs, params)
        if mode == "next-step":  # a reset row's info: its reset's values, zeros elsewhere
            c_info = {k: _select_rows(rows, r_info[k] if k in r_info else jnp.zeros_like(v), v)
                      for k, v in c_info.items()}
        return (_select_rows(rows, r_rngs, c_rngs), _select_rows(rows, r_states, c_states),
                _select_rows(rows, r_obs, c_obs), c_info)

    new_rngs, new_states, obs_out, info = jax.lax.cond(
        jnp.any(rows), with_resets, lambda carry: carry, (s_rngs, s_states, obs, info))
    if mode == "next-step":
        zero = jnp.zeros_like(done)
        r = jnp.where(pending, jnp.zeros_like(r), r)
        term, trunc = jnp.where(pending, zero, term), jnp.where(pending, zero, trunc)
    return new_rngs, new_states, (obs_out, r, term, trunc, info), s_states, rows


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


# ---- the entry points over flat buffers (what the faces call) ------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """The static arguments of a built env's entry points: its task, structure id and
    the :class:`Flat` specs of its state and params (``env.entry``)."""

    task: Task
    sid: int
    sflat: Flat
    pflat: Flat

    @property
    def static(self) -> tuple:
        """``(task, sid, sflat, pflat)``, the leading arguments of every entry point."""
        return (self.task, self.sid, self.sflat, self.pflat)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_reset_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rng, pbufs):
    """``(rng, state buffers, flat)``: reset one env from its key chain; ``flat``
    unpacks (``LAYOUTS["reset", task, sid]``) to ``(obs, info)``."""
    TRACE_COUNTS[(task.name, "reset")] += 1

    def run(rng, pbufs):
        rng, state, host = reset_body(task, rng, pflat.unpack(pbufs))
        return rng, sflat.pack(state), pack_output("reset", task, sid, host)

    return one_kernel(run, rng, pbufs)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_step_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rng, sbufs, action, pbufs):
    """``(rng, state buffers, flat)``: step one env; ``flat`` unpacks to
    ``(obs, reward, terminated, truncated, info)``."""
    TRACE_COUNTS[(task.name, "step")] += 1

    def run(rng, sbufs, action, pbufs):
        rng, state, host = step_body(task, rng, sflat.unpack(sbufs), action,
                                     pflat.unpack(pbufs))
        return rng, sflat.pack(state), pack_output("step", task, sid, host)

    return one_kernel(run, rng, sbufs, action, pbufs)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def drive_vreset_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, rngs, sbufs, pbufs,
                      mask):
    """Batched reset of the rows of ``mask`` (:func:`vector_reset`) over state buffers
    (N, size): ``(rngs, state buffers, flat (N, ...))``, ``flat`` unpacking
    (``LAYOUTS["vreset", ...]``) to ``(obs, info)``."""
    TRACE_COUNTS[(task.name, "vreset")] += 1
    rngs, states, host = vector_reset(task, rngs, sflat.unpack(sbufs, 1), pflat.unpack(pbufs),
                                      mask)
    flat = jax.vmap(lambda h: pack_output("vreset", task, sid, h))(host)
    return rngs, sflat.pack(states, batch_ndim=1), flat


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def drive_vstep_flat(task: Task, sid: int, sflat: Flat, pflat: Flat, mode: str, rngs, sbufs,
                     actions, pbufs, pending):
    """:func:`vector_step` over batched state buffers (N, size) and flat params:
    ``(rngs, state buffers, flat, final state buffers, reset_rows)``; ``flat`` unpacks
    (``LAYOUTS["vstep", ...]``) to ``(obs, reward, terminated, truncated, info)``."""
    # not one_kernel: its per-kernel savings are spread over N envs here, and as one
    # kernel the step compiled in 19-21 s instead of 10-11 s (PowerSmoothing, N = 64 and
    # 256) and 19 s instead of 15 s (Facility, N = 64), for 10-25 % more steps/s
    TRACE_COUNTS[(task.name, "vstep")] += 1
    rngs, states, host, final, rows = vector_step(task, mode, rngs, sflat.unpack(sbufs, 1),
                                                  actions, pflat.unpack(pbufs), pending)
    flat = jax.vmap(lambda h: pack_output("vstep", task, sid, h))(host)
    return (rngs, sflat.pack(states, batch_ndim=1), flat, sflat.pack(final, batch_ndim=1),
            rows)
