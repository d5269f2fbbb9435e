"""Calibration inputs, checked before any tracing: the trace (CSV or dict), the names and
bounds of the fitted parameters, the actions (private to :mod:`heatsync.physics`)."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import field_info, replace
from .plant import OUTPUTS, Action, Params
from .scenario import Scenario
from .simulate import SERIES_STATE

#: top-level Params fields that are not plant constants
_NOT_FITTABLE = {"dt_s"}


class CalibrationError(ValueError):
    """Invalid calibration input: names the argument, column or field and what is allowed."""


def trace_series() -> tuple[str, ...]:
    """Names of the series a trace may hold besides ``t_s`` (the recorded series of
    :func:`heatsync.physics.simulate`, per control interval)."""
    return tuple(sorted(OUTPUTS)) + tuple(k for k in SERIES_STATE if k != "t_s")


def fittable_params() -> dict[str, dataclasses.Field]:
    """Dotted name -> field of every continuous :class:`Params` constant that can be fitted."""
    out = {}
    for name, f in field_info(Params).items():
        if f.metadata.get("sub"):
            for sub, sf in field_info(f.default_factory).items():
                if "lo" in sf.metadata and not sf.metadata.get("static", False):
                    out[f"{name}.{sub}"] = sf
        elif "lo" in f.metadata and not f.metadata.get("static") and name not in _NOT_FITTABLE:
            out[name] = f
    return out


def read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise CalibrationError(f"trace {path}: cannot read file ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CalibrationError(f"trace {path}: not a text CSV file ({e.reason})") from e
    if not rows:
        raise CalibrationError(f"trace {path}: empty file; expected a header with 't_s'")
    header = [c.strip() for c in rows[0]]
    if len(set(header)) != len(header):
        dup = sorted({c for c in header if header.count(c) > 1})
        raise CalibrationError(f"trace {path}: duplicate column(s) {dup} in the header")
    cols: dict[str, list[float]] = {c: [] for c in header}
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise CalibrationError(f"trace {path}: row {i} has {len(row)} fields, the header "
                                   f"has {len(header)}")
        for c, v in zip(header, row, strict=True):
            try:
                cols[c].append(float(v))
            except ValueError:
                raise CalibrationError(f"trace {path}: row {i}, column '{c}': '{v}' is not a "
                                       f"number") from None
    return {c: np.asarray(v, dtype=np.float64) for c, v in cols.items()}


def check_trace(trace, dt_s: float) -> dict[str, np.ndarray]:
    """Validate a trace (dict or CSV path) against the recorded series and ``dt_s``."""
    if isinstance(trace, (str, Path)):
        trace = read_csv(Path(trace))
    if not isinstance(trace, Mapping):
        raise CalibrationError(f"trace: expected a dict of series or a CSV path, got "
                               f"{type(trace).__name__}")
    allowed = trace_series()
    unknown = [c for c in trace if c != "t_s" and c not in allowed]
    if unknown:
        raise CalibrationError(f"trace: unknown column(s) {', '.join(map(repr, unknown))}; "
                               f"allowed: t_s, {', '.join(allowed)}")
    if "t_s" not in trace:
        raise CalibrationError("trace: missing column 't_s' (end of each control interval, s)")
    if len(trace) < 2:
        raise CalibrationError(f"trace: no measured series besides 't_s'; give any of: "
                               f"{', '.join(allowed)}")
    out = {}
    for c, v in trace.items():
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise CalibrationError(f"trace column '{c}': not numeric") from None
        if a.ndim != 1:
            raise CalibrationError(f"trace column '{c}': expected a 1-D series, got shape "
                                   f"{a.shape}")
        bad = ~np.isfinite(a)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise CalibrationError(f"trace column '{c}': value {a[i]} at index {i} is not "
                                   f"finite (NaN or inf); drop or fill the gap")
        out[c] = a
    t = out["t_s"]
    n = len(t)
    if n < 1:
        raise CalibrationError("trace column 't_s': empty")
    for c, a in out.items():
        if len(a) != n:
            raise CalibrationError(f"trace column '{c}': length {len(a)} differs from column "
                                   f"'t_s' ({n})")
    tol = 1e-6 * dt_s
    d = np.diff(t)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0)) + 1
        raise CalibrationError(f"trace column 't_s': not strictly increasing at index {i} "
                               f"({t[i - 1]:g} then {t[i]:g} s)")
    if np.any(np.abs(d - dt_s) > tol):
        i = int(np.argmax(np.abs(d - dt_s) > tol)) + 1
        raise CalibrationError(f"trace column 't_s': non-uniform or wrong step at index {i} "
                               f"({t[i] - t[i - 1]:g} s); samples must be one control interval "
                               f"apart, dt_s = {dt_s:g} s (resample the trace first)")
    if abs(t[0] - dt_s) > tol:
        raise CalibrationError(f"trace column 't_s': first sample at {t[0]:g} s; samples are "
                               f"taken at the end of each control interval, so the first must "
                               f"be at dt_s = {dt_s:g} s (as simulate records them)")
    return out


def check_fit(fit, params: Params, bounds, bound_factor):
    """Names, kinds, nominal values and bounds of the fitted parameters."""
    if isinstance(fit, str):
        fit = [fit]
    fit = list(fit)
    table = fittable_params()
    if not fit:
        raise CalibrationError(f"fit: empty; name fields to fit, e.g. "
                               f"{', '.join(list(table)[:3])}; all: {', '.join(table)}")
    for name in fit:
        if name not in table:
            raise CalibrationError(f"fit: unknown or non-fittable parameter {name!r}; "
                                   f"fittable: {', '.join(table)}")
    if len(set(fit)) != len(fit):
        raise CalibrationError(f"fit: duplicate names in {fit}")
    bounds = dict(bounds or {})
    for k in bounds:
        if k not in fit:
            raise CalibrationError(f"bounds: {k!r} is not in fit ({', '.join(fit)})")
    flo, fhi = bound_factor
    if not (0 < flo <= 1 <= fhi):
        raise CalibrationError(f"bound_factor: expected (lo, hi) with 0 < lo <= 1 <= hi, got "
                               f"{bound_factor}")
    nominal, lo_hi = {}, {}
    for name in fit:
        meta = table[name].metadata
        dlo = -math.inf if meta["lo"] is None else float(meta["lo"])
        dhi = math.inf if meta["hi"] is None else float(meta["hi"])
        v = float(np.mean(np.asarray(get(params, name), dtype=np.float64)))
        nominal[name] = v
        if name in bounds:
            lo, hi = (float(x) for x in bounds[name])
            if not (dlo <= lo < hi <= dhi):
                raise CalibrationError(f"bounds[{name!r}]: ({lo:g}, {hi:g}) must satisfy "
                                       f"{dlo:g} <= lo < hi <= {dhi:g} (declared range)")
        else:
            if v == 0.0:
                raise CalibrationError(f"fit: {name!r} is 0 at nominal, so a factor range "
                                       f"around it is empty; give bounds={{{name!r}: (lo, hi)}}")
            a, b = sorted((v * flo, v * fhi))
            lo, hi = max(a, dlo), min(b, dhi)
            if not lo < hi:
                raise CalibrationError(f"fit: {name!r}: empty range [{lo:g}, {hi:g}] from "
                                       f"bound_factor and the declared [{dlo:g}, {dhi:g}]")
        lo_hi[name] = (lo, hi)
    return fit, nominal, lo_hi, {n: table[n].metadata.get("unit", "") for n in fit}


def get(params: Params, name: str):
    obj = params
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def set_param(params: Params, name: str, value):
    parts = name.split(".")
    if len(parts) == 1:
        return replace(params, **{name: value})
    sub = getattr(params, parts[0])
    return replace(params, **{parts[0]: replace(sub, **{parts[1]: value})})


def actions_for(sc: Scenario, actions, n: int):
    """Actions with a leading time axis of ``n`` (or ``None``) and the policy (or ``None``)."""
    if actions is None:
        actions = sc.control
    if callable(actions) and not isinstance(actions, Action):
        return None, actions
    if not isinstance(actions, Action):
        raise CalibrationError("actions: expected None, an Action (held or with a leading time "
                               "axis), or a policy (params, state, exo) -> Action")
    lead = np.ndim(actions.pump_speed)
    if lead == 0:
        return jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(jnp.asarray(x), (n,) + jnp.shape(x)), actions), None
    steps = np.shape(actions.pump_speed)[0]
    if steps != n:
        raise CalibrationError(f"actions: leading time axis has {steps} steps but the trace has "
                               f"{n} samples; they must match")
    return actions, None
