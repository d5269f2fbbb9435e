"""Action layouts, rescaling from [-1, 1] to physical ranges, and action checks.

A Box action is a float32 vector in [-1, 1] made of named segments. Each
segment maps ``a`` to its physical range ``[lo, hi]``:

* ``lin``: ``lo + (a + 1) / 2 * (hi - lo)``;
* ``log``: log-uniform, ``lo * (hi / lo) ** ((a + 1) / 2)`` (ramp limits, which
  span three decades);
* ``step``: ``hi`` where ``a > 0``, else ``lo`` (switches such as an LN2 order).

Checks (:func:`check_action`) run in NumPy before any JAX call: a non-numeric
dtype, a wrong shape, NaN or an infinite value raise ``ValueError`` naming the
action and the expected space; finite values outside the space are clipped.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from heatsync.physics import Params
from heatsync.physics.plant import rack_max_w

__all__ = ["Segment", "smoothing_segments", "cooling_segments", "decode", "encode",
           "check_action", "box_space", "layout_table"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """A named block of an action vector and its physical range."""

    name: str
    size: int
    lo: object
    hi: object
    scale: str  # "lin", "log" or "step"
    unit: str


def smoothing_segments(p: Params) -> list[Segment]:
    """Per-rack power knobs and storage dispatch (PowerSmoothing, Facility)."""
    g, R = p.gpu, p.n_racks
    return [
        Segment("gpu_cap_w", R, g.cap_min_w, g.p_max_w, "lin", "W per GPU"),
        Segment("gpu_floor_frac", R, 0.0, g.floor_max_frac, "lin", "1 of TDP"),
        Segment("ramp_up_w_per_s", R, g.ramp_min_w_per_s, g.ramp_max_w_per_s, "log",
                "W/s per GPU"),
        Segment("ramp_down_w_per_s", R, g.ramp_min_w_per_s, g.ramp_max_w_per_s, "log",
                "W/s per GPU"),
        Segment("uc_target_w", R, 0.0, 1.5 * rack_max_w(p), "lin", "W rack bus draw"),
        Segment("uc_gain", R, 0.0, 1.0, "lin", "1"),
        Segment("ups_target_w", 1, 0.0, p.grid.contract_limit_w, "lin", "W grid draw"),
        Segment("ups_gain", 1, 0.0, 1.0, "lin", "1"),
    ]


def cooling_segments(p: Params) -> list[Segment]:
    """Coolant and LN2 actuators (CoolingDispatch, Facility)."""
    c = p.cdu
    return [
        Segment("pump_speed", 1, c.pump_speed_min, 1.0, "lin", "1 of rated"),
        Segment("supply_setpoint_c", 1, c.setpoint_min_c, c.setpoint_max_c, "lin", "degC"),
        Segment("ln2_valve", 1, 0.0, 1.0, "lin", "1"),
        Segment("ln2_order", 1, 0.0, 1.0, "step", "order if > 0"),
    ]


def decode(a, segments: list[Segment]) -> dict:
    """Map a [-1, 1] vector to physical values by segment (jit-safe); clips first."""
    a = jnp.clip(jnp.asarray(a), -1.0, 1.0)
    out, i = {}, 0
    for seg in segments:
        x = a[i:i + seg.size]
        i += seg.size
        u = 0.5 * (x + 1.0)
        lo, hi = jnp.asarray(seg.lo, u.dtype), jnp.asarray(seg.hi, u.dtype)
        if seg.scale == "lin":
            v = lo + u * (hi - lo)
        elif seg.scale == "log":
            v = jnp.exp(jnp.log(lo) + u * (jnp.log(hi) - jnp.log(lo)))
        elif seg.scale == "step":
            v = jnp.where(x > 0.0, hi, lo)
        else:  # pragma: no cover - layouts are fixed in code
            raise ValueError(f"unknown scale {seg.scale!r}")
        out[seg.name] = v[0] if seg.size == 1 else v
    if i != a.shape[-1]:
        raise ValueError(f"action layout covers {i} components, action has {a.shape[-1]}")
    return out


def encode(values: dict, segments: list[Segment]) -> np.ndarray:
    """Map physical values by segment to a [-1, 1] vector: the inverse of :func:`decode`.

    Values are clipped to each segment's ``[lo, hi]`` first (as :func:`decode`
    clips the action), so ``decode(encode(v))`` equals ``v`` clipped to range.
    NumPy, host side; a leading batch axis is allowed.

    **Arguments**: ``values`` maps every segment name to a scalar, a ``(size,)``
    array or a ``(..., size)`` batch (``(...,)`` or ``(..., 1)`` for size-1
    segments); ``segments`` the layout (:func:`smoothing_segments`,
    :func:`cooling_segments` or their concatenation).

    **Returns**: float32 array ``(..., total size)``. ``step`` segments encode to
    +1 where the value is above the middle of the range, else -1.
    """
    missing = [s.name for s in segments if s.name not in values]
    if missing:
        raise ValueError(f"encode: no value for segment(s) {missing}; "
                         f"expected {[s.name for s in segments]}")
    parts, batch = [], None
    for seg in segments:
        v = np.asarray(values[seg.name], dtype=np.float64)
        if seg.size == 1 and (v.ndim == 0 or v.shape[-1] != 1):
            v = v[..., None]
        lo = np.asarray(seg.lo, dtype=np.float64)
        hi = np.asarray(seg.hi, dtype=np.float64)
        v = np.broadcast_to(v, v.shape[:-1] + (seg.size,))
        v = np.clip(v, lo, hi)
        span = np.where(hi > lo, hi - lo, 1.0)
        if seg.scale == "lin":
            a = 2.0 * (v - lo) / span - 1.0
        elif seg.scale == "log":
            llo, lhi = np.log(lo), np.log(hi)
            a = 2.0 * (np.log(v) - llo) / np.where(lhi > llo, lhi - llo, 1.0) - 1.0
        elif seg.scale == "step":
            a = np.where(v > 0.5 * (lo + hi), 1.0, -1.0)
        else:  # pragma: no cover - layouts are fixed in code
            raise ValueError(f"unknown scale {seg.scale!r}")
        parts.append(a)
        batch = a.shape[:-1] if batch is None else np.broadcast_shapes(batch, a.shape[:-1])
    parts = [np.broadcast_to(a, batch + a.shape[-1:]) for a in parts]
    return np.clip(np.concatenate(parts, axis=-1), -1.0, 1.0).astype(np.float32)


def box_space(n: int) -> spaces.Box:
    """The float32 [-1, 1] Box of ``n`` components."""
    return spaces.Box(-1.0, 1.0, (n,), np.float32)


def layout_table(segments: list[Segment]) -> list[tuple[str, int, int, str]]:
    """``(name, first index, size, range text)`` rows, for docs and ``env.action_names``."""
    rows, i = [], 0
    for s in segments:
        lo = np.asarray(s.lo, dtype=float).reshape(-1)
        hi = np.asarray(s.hi, dtype=float).reshape(-1)
        rows.append((s.name, i, s.size, f"[{lo.min():g}, {hi.max():g}] {s.unit} ({s.scale})"))
        i += s.size
    return rows


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
