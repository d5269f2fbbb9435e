"""Action layouts: one declaration per task, from which spaces, names, decoding,
encoding and clipping derive.

A Box action is a float32 vector in [-1, 1] made of named :class:`Segment` s. Every
segment's component ``a`` decodes so that **0 is the segment's default** (the scenario's
fixed setpoint) and the physical ends of its range are reached at ``|a| = SAT`` (0.9),
so no setting sits on a bound of the box (beyond ``SAT`` the value stays at the end):

* ``center``: with ``x = clip(a / SAT, -1, 1)``, ``v = d + x (hi - d)`` for ``x >= 0``
  and ``v = d + x (d - lo)`` below (a default at an end leaves that half flat);
* ``logcenter``: the same in ``log v`` (ramp limits, which span three decades);
* ``step``: ``hi`` where ``a > 0``, else ``lo`` (switches such as an LN2 order);
* ``bins``: the whole number ``lo + floor((a + 1) / 2 * n)`` for ``n = hi - lo + 1``
  choices, clipped into ``[lo, hi]`` (a job picked from a list).

An :class:`ActionLayout` is a list of segments. :meth:`ActionLayout.decode` and
:meth:`ActionLayout.encode` are one implementation for NumPy and JAX (``xp``), so the
env, the baselines and the planners read actions the same way. Plant actuator ranges
come from :func:`heatsync.physics.actuator_ranges` (:func:`plant_segment`).

Checks (:func:`check_action`) run in NumPy before any JAX call: a non-numeric
dtype, a wrong shape, NaN or an infinite value raise ``ValueError`` naming the
action and the expected space; finite values outside the space are clipped.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from heatsync.physics import Action, Params, actuator_ranges

__all__ = ["Segment", "ActionLayout", "plant_segment", "check_action", "box_space", "SCALES",
           "PLANT_FIELDS", "SAT"]

#: the segment scales (see the module docstring)
SCALES = ("center", "logcenter", "step", "bins")
#: |a| at which a continuous segment reaches the end of its range
SAT = 0.9
#: the plant actuators a segment may set (the fields of heatsync.physics.Action)
PLANT_FIELDS = tuple(f.name for f in dataclasses.fields(Action))


@dataclasses.dataclass(frozen=True)
class Segment:
    """A named block of an action vector: its physical range ``[lo, hi]``, its ``default``
    (what ``a = 0`` decodes to; ``lo`` for switches) and scale. ``lo``, ``hi`` and
    ``default`` are scalars or arrays of the segment's size."""

    name: str
    size: int
    lo: object
    hi: object
    scale: str
    unit: str
    default: object = None

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"segment {self.name}: scale {self.scale!r}; allowed: {SCALES}")
        if self.default is None:
            object.__setattr__(self, "default", self.lo)


def plant_segment(p: Params, name: str, size: int, scale: str, unit: str,
                  default) -> Segment:
    """A segment over a plant :class:`~heatsync.physics.Action` field, with the range
    physics declares for it; a one-component segment over a per-rack field takes the
    widest range and the racks' mean default. Works on traced params (inside a jit)."""
    lo, hi = actuator_ranges(p)[name]
    lo, hi, d = jnp.asarray(lo), jnp.asarray(hi), jnp.asarray(default)
    if size > 1:
        lo, hi, d = (jnp.broadcast_to(x, (size,)) for x in (lo, hi, d))
    else:
        lo, hi, d = jnp.min(lo), jnp.max(hi), jnp.mean(d)
    return Segment(name, size, lo, hi, scale, unit, jnp.clip(d, lo, hi))


def _center(x, d, lo, hi, xp):
    return xp.where(x >= 0.0, d + x * (hi - d), d + x * (d - lo))


def _uncenter(v, d, lo, hi, xp):
    up = xp.where(hi > d, (v - d) / xp.where(hi > d, hi - d, 1.0), 0.0)
    down = xp.where(d > lo, (v - d) / xp.where(d > lo, d - lo, 1.0), 0.0)
    return xp.where(v >= d, up, down)


class ActionLayout:
    """An ordered list of segments: the action vector of a Box task."""

    def __init__(self, segments):
        self.segments = tuple(segments)
        self.size = sum(s.size for s in self.segments)
        self.slices, i = {}, 0
        for s in self.segments:
            if s.name in self.slices:
                raise ValueError(f"action layout: segment {s.name!r} appears twice")
            self.slices[s.name] = slice(i, i + s.size)
            i += s.size

    def __add__(self, other: ActionLayout) -> ActionLayout:
        return ActionLayout(self.segments + other.segments)

    def __iter__(self):
        return iter(self.segments)

    def __len__(self):
        return len(self.segments)

    def __getitem__(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)

    def space(self) -> spaces.Box:
        """The float32 [-1, 1] Box."""
        return box_space(self.size)

    def names(self) -> list[str]:
        """A label per component (``name`` or ``name[i]``)."""
        return [s.name if s.size == 1 else f"{s.name}[{i}]" for s in self.segments
                for i in range(s.size)]

    def table(self) -> list[tuple[str, int, int, str]]:
        """``(name, first index, size, range text)`` rows, for docs."""
        rows = []
        for s in self.segments:
            lo = np.asarray(s.lo, dtype=float).reshape(-1)
            hi = np.asarray(s.hi, dtype=float).reshape(-1)
            d = np.asarray(s.default, dtype=float).reshape(-1)
            rows.append((s.name, self.slices[s.name].start, s.size,
                         f"[{lo.min():g}, {hi.max():g}] {s.unit}, 0 -> {d.mean():g} "
                         f"({s.scale})"))
        return rows

    def plant_part(self) -> ActionLayout:
        """The segments that set a plant :class:`~heatsync.physics.Action` field directly."""
        return ActionLayout(s for s in self.segments if s.name in PLANT_FIELDS)

    def switch_mask(self) -> np.ndarray:
        """True for the components of ``step`` and ``bins`` segments (no gradient)."""
        return np.concatenate([np.full(s.size, s.scale in ("step", "bins"))
                               for s in self.segments])

    def decode(self, a, xp=jnp) -> dict:
        """Physical values by segment name from ``a`` of shape ``(..., size)`` (clipped
        to [-1, 1] first); size-1 segments give ``(...)``, others ``(..., size)``."""
        a = xp.clip(xp.asarray(a), -1.0, 1.0)
        if a.shape[-1] != self.size:
            raise ValueError(f"action layout covers {self.size} components, action has "
                             f"{a.shape[-1]}")
        out = {}
        for s in self.segments:
            x = a[..., self.slices[s.name]]
            lo, hi = xp.asarray(s.lo, x.dtype), xp.asarray(s.hi, x.dtype)
            d = xp.asarray(s.default, x.dtype)
            c = xp.clip(x / SAT, -1.0, 1.0)
            if s.scale == "center":
                v = _center(c, d, lo, hi, xp)
            elif s.scale == "logcenter":
                v = xp.exp(_center(c, xp.log(d), xp.log(lo), xp.log(hi), xp))
            elif s.scale == "step":
                v = xp.where(x > 0.0, hi, lo)
            else:  # bins
                u = 0.5 * (x + 1.0)
                v = lo + xp.clip(xp.floor(u * (hi - lo + 1.0)), 0.0, hi - lo)
            out[s.name] = v[..., 0] if s.size == 1 else v
        return out

    def encode(self, values: dict, xp=np):
        """The [-1, 1] action of physical values: the inverse of :meth:`decode`.

        **Arguments**: ``values`` maps every segment name to a scalar, a ``(size,)``
        array or a ``(..., size)`` batch (``(..., 1)`` for a batch of a size-1
        segment); ``xp``: ``np`` (host, float64 inside, float32 out) or ``jnp`` (inside a
        jit, the values' dtype).

        **Returns**: ``(..., size)``. Values are clipped to each segment's range first,
        so ``decode(encode(v))`` equals ``v`` clipped; the default encodes to 0, the ends
        of a range to ``+-SAT``; ``step`` segments encode to +1 above the middle of the
        range, else -1; ``bins`` to the middle of the bin.
        """
        missing = [s.name for s in self.segments if s.name not in values]
        if missing:
            raise ValueError(f"encode: no value for segment(s) {missing}; "
                             f"expected {[s.name for s in self.segments]}")
        host = xp is np
        parts = []
        for s in self.segments:
            v = xp.asarray(values[s.name], dtype=np.float64) if host else \
                xp.asarray(values[s.name])
            if s.size == 1 and (v.ndim == 0 or v.shape[-1] != 1):
                v = v[..., None]
            lo = xp.asarray(s.lo, dtype=v.dtype)
            hi = xp.asarray(s.hi, dtype=v.dtype)
            d = xp.asarray(s.default, dtype=v.dtype)
            v = xp.clip(xp.broadcast_to(v, v.shape[:-1] + (s.size,)), lo, hi)
            if s.scale == "center":
                a = SAT * _uncenter(v, d, lo, hi, xp)
            elif s.scale == "logcenter":
                a = SAT * _uncenter(xp.log(v), xp.log(d), xp.log(lo), xp.log(hi), xp)
            elif s.scale == "step":
                a = xp.where(v > 0.5 * (lo + hi), 1.0, -1.0)
            else:  # bins: the middle of bin round(v - lo) of n
                a = 2.0 * (xp.round(v - lo) + 0.5) / (hi - lo + 1.0) - 1.0
            parts.append(a)
        batch = np.broadcast_shapes(*(p.shape[:-1] for p in parts))
        parts = [xp.broadcast_to(p, batch + p.shape[-1:]) for p in parts]
        out = xp.clip(xp.concatenate(parts, axis=-1), -1.0, 1.0)
        return out.astype(np.float32) if host else out


def box_space(n: int) -> spaces.Box:
    """The float32 [-1, 1] Box of ``n`` components."""
    return spaces.Box(-1.0, 1.0, (n,), np.float32)


def _describe(space, batch):
    if batch is None:
        return repr(space)
    return f"a batch of {batch} actions from {space!r} (shape {(batch, *space.shape)})"


def check_action(action, space, *, batch: int | None = None, name: str = "action") -> np.ndarray:
    """Validate an action (or a batch) against ``space``; return a clipped NumPy copy.

    **Arguments**: the action, a ``Box`` or ``MultiDiscrete`` space, ``batch``
    (the leading batch size for vector envs, else ``None``).

    **Returns**: float32 (Box) or int32 (MultiDiscrete) array clipped into the
    space. Raises ``ValueError`` for a non-numeric dtype, a wrong shape, NaN or
    an infinite value.
    """
    want = tuple(space.shape) if batch is None else (batch, *space.shape)
    try:
        arr = np.asarray(action)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name}: cannot convert {type(action).__name__} to an array ({e}); "
                         f"expected {_describe(space, batch)}") from e
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: dtype {arr.dtype} ({type(action).__name__}) is not numeric; "
                         f"expected {_describe(space, batch)}")
    if arr.shape != want:
        raise ValueError(f"{name}: shape {arr.shape} does not match the expected shape {want}; "
                         f"expected {_describe(space, batch)}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            where = np.argwhere(bad)[:5].tolist()
            raise ValueError(f"{name}: {int(bad.sum())} value(s) are NaN or infinite (at "
                             f"{where}); expected finite values in {_describe(space, batch)}")
    if isinstance(space, spaces.Box):  # minimum/maximum: np.clip costs ~4x more per step
        return np.minimum(np.maximum(arr, space.low), space.high).astype(np.float32, copy=False)
    if isinstance(space, spaces.MultiDiscrete):
        if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: values {arr!r:.80} are not whole numbers; "
                             f"expected {_describe(space, batch)}")
        return np.clip(np.round(arr), 0, space.nvec - 1).astype(np.int32)
    raise TypeError(f"unsupported space {space!r}")  # pragma: no cover
