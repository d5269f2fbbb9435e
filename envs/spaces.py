"""Action layouts: one declaration per task, from which spaces, names, decoding,
encoding and clipping derive.

A Box action is a float32 vector in [-1, 1] made of named :class:`Segment` s. Each
segment maps its components ``a`` to a physical range ``[lo, hi]``:

* ``lin``: ``lo + (a + 1) / 2 * (hi - lo)``;
* ``log``: log-uniform, ``lo * (hi / lo) ** ((a + 1) / 2)`` (ramp limits, which
  span three decades);
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

__all__ = ["Segment", "ActionLayout", "plant_segment", "smoothing_layout", "cooling_layout",
           "check_action", "box_space", "SCALES", "PLANT_FIELDS"]

#: the segment scales (see the module docstring)
SCALES = ("lin", "log", "step", "bins")
#: the plant actuators a segment may set (the fields of heatsync.physics.Action)
PLANT_FIELDS = tuple(f.name for f in dataclasses.fields(Action))


@dataclasses.dataclass(frozen=True)
class Segment:
    """A named block of an action vector and its physical range (``lo``/``hi`` scalars
    or arrays of the segment's size)."""

    name: str
    size: int
    lo: object
    hi: object
    scale: str
    unit: str

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"segment {self.name}: scale {self.scale!r}; allowed: {SCALES}")


def plant_segment(p: Params, name: str, per_rack: bool, scale: str, unit: str) -> Segment:
    """A segment over a plant :class:`~heatsync.physics.Action` field, with the range
    physics declares for it."""
    lo, hi = actuator_ranges(p)[name]
    return Segment(name, p.n_racks if per_rack else 1, lo, hi, scale, unit)


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
            rows.append((s.name, self.slices[s.name].start, s.size,
                         f"[{lo.min():g}, {hi.max():g}] {s.unit} ({s.scale})"))
        return rows

    def plant_part(self) -> ActionLayout:
        """The segments that set a plant :class:`~heatsync.physics.Action` field (without,
        e.g., Facility's job placement)."""
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
            u = 0.5 * (x + 1.0)
            lo, hi = xp.asarray(s.lo, u.dtype), xp.asarray(s.hi, u.dtype)
            if s.scale == "lin":
                v = lo + u * (hi - lo)
            elif s.scale == "log":
                v = xp.exp(xp.log(lo) + u * (xp.log(hi) - xp.log(lo)))
            elif s.scale == "step":
                v = xp.where(x > 0.0, hi, lo)
            else:  # bins
                v = lo + xp.clip(xp.floor(u * (hi - lo + 1.0)), 0.0, hi - lo)
            out[s.name] = v[..., 0] if s.size == 1 else v
        return out

    def encode(self, values: dict, xp=np):
        """The [-1, 1] action of physical values: the inverse of :meth:`decode`.

        **Arguments**: ``values`` maps every segment name to a scalar, a ``(size,)``
        array or a ``(..., size)`` batch (``(...,)`` or ``(..., 1)`` for size-1
        segments); ``xp``: ``np`` (host, float64 inside, float32 out) or ``jnp``
        (inside a jit, the values' dtype).

        **Returns**: ``(..., size)``. Values are clipped to each segment's range first,
        so ``decode(encode(v))`` equals ``v`` clipped; ``step`` segments encode to +1
        above the middle of the range, else -1; ``bins`` to the middle of the bin.
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
            v = xp.clip(xp.broadcast_to(v, v.shape[:-1] + (s.size,)), lo, hi)
            span = xp.where(hi > lo, hi - lo, 1.0)
            if s.scale == "lin":
                a = 2.0 * (v - lo) / span - 1.0
            elif s.scale == "log":
                llo, lhi = xp.log(lo), xp.log(hi)
                a = 2.0 * (xp.log(v) - llo) / xp.where(lhi > llo, lhi - llo, 1.0) - 1.0
            elif s.scale == "step":
                a = xp.where(v > 0.5 * (lo + hi), 1.0, -1.0)
            else:  # bins: the middle of bin round(v - lo) of n
                a = 2.0 * (xp.round(v - lo) + 0.5) / (hi - lo + 1.0) - 1.0
            parts.append(a)
        batch = np.broadcast_shapes(*(p.shape[:-1] for p in parts))
        parts = [xp.broadcast_to(p, batch + p.shape[-1:]) for p in parts]
        out = xp.clip(xp.concatenate(parts, axis=-1), -1.0, 1.0)
        return out.astype(np.float32) if host else out


def smoothing_layout(p: Params) -> ActionLayout:
    """Per-rack power knobs and storage dispatch (PowerSmoothing, Facility)."""
    return ActionLayout([
        plant_segment(p, "gpu_cap_w", True, "lin", "W per GPU"),
        plant_segment(p, "gpu_floor_frac", True, "lin", "1 of TDP"),
        plant_segment(p, "ramp_up_w_per_s", True, "log", "W/s per GPU"),
        plant_segment(p, "ramp_down_w_per_s", True, "log", "W/s per GPU"),
        plant_segment(p, "uc_target_w", True, "lin", "W rack bus draw"),
        plant_segment(p, "uc_gain", True, "lin", "1"),
        plant_segment(p, "ups_target_w", False, "lin", "W grid draw"),
        plant_segment(p, "ups_gain", False, "lin", "1"),
    ])


def cooling_layout(p: Params) -> ActionLayout:
    """Coolant and LN2 actuators (CoolingDispatch, Facility)."""
    return ActionLayout([
        plant_segment(p, "pump_speed", False, "lin", "1 of rated"),
        plant_segment(p, "supply_setpoint_c", False, "lin", "degC"),
        plant_segment(p, "ln2_valve", False, "lin", "1"),
        plant_segment(p, "ln2_order", False, "step", "order if > 0"),
    ])


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
