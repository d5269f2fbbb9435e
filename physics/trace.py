"""Measured exogenous traces from CSV.

A trace is a CSV file with a header. Column ``t_s`` (seconds, strictly
increasing) is required; any of these columns may follow, in SI units named
in the header:

=====================  =================  ===========
column                 meaning            range
=====================  =================  ===========
``ambient_c``          ambient, degC      -60 .. 60
``price_usd_per_kwh``  energy price       0 .. 10
``carbon_g_per_kwh``   carbon intensity   0 .. 3000
``load_scale``         rack power factor  0 .. 3
``grid_up``            grid present, 0/1  0 .. 1
=====================  =================  ===========

Errors name the file, the column and the row. Values are interpolated
linearly in time and held beyond the ends.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .exogenous import TRACE_COLUMNS

__all__ = ["TraceError", "load_trace", "TRACE_RANGES"]

TRACE_RANGES = {
    "ambient_c": (-60.0, 60.0),
    "price_usd_per_kwh": (0.0, 10.0),
    "carbon_g_per_kwh": (0.0, 3000.0),
    "load_scale": (0.0, 3.0),
    "grid_up": (0.0, 1.0),
}
_UNIT_HINTS = {
    "ambient_k": "ambient must be in degC as column 'ambient_c'",
    "ambient_f": "ambient must be in degC as column 'ambient_c'",
    "price_usd_per_mwh": "price must be in USD/kWh as column 'price_usd_per_kwh'",
    "t_min": "time must be in seconds as column 't_s'",
    "t_h": "time must be in seconds as column 't_s'",
    "carbon_kg_per_kwh": "carbon must be in g/kWh as column 'carbon_g_per_kwh'",
}


class TraceError(ValueError):
    """A trace file that cannot be used, with the reason."""


def load_trace(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and validate a trace CSV.

    **Returns**: ``(t_s (N,), values (N, C), has (C,))`` with columns in
    ``TRACE_COLUMNS`` order; absent columns are zeros with ``has = 0``.
    """
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as e:
        raise TraceError(f"trace {path}: cannot read file ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise TraceError(f"trace {path}: not a text CSV file ({e.reason})") from e
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise TraceError(f"trace {path}: empty file; expected a header with 't_s'")
    header = [c.strip() for c in rows[0]]
    for col in header:
        if col in _UNIT_HINTS:
            raise TraceError(f"trace {path}: column '{col}': wrong unit; {_UNIT_HINTS[col]}")
        if col != "t_s" and col not in TRACE_COLUMNS:
            raise TraceError(f"trace {path}: unknown column '{col}'; allowed: t_s, "
                             + ", ".join(TRACE_COLUMNS))
    if "t_s" not in header:
        raise TraceError(f"trace {path}: missing column 't_s' (time in seconds)")
    if len(set(header)) != len(header):
        raise TraceError(f"trace {path}: duplicate column names in header {header}")
    data = rows[1:]
    if len(data) < 1:
        raise TraceError(f"trace {path}: no data rows")
    cols = {c: [] for c in header}
    for i, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise TraceError(f"trace {path}: row {i} has {len(row)} fields, header has "
                             f"{len(header)}")
        for c, v in zip(header, row, strict=True):
            try:
                x = float(v)
            except ValueError:
                raise TraceError(f"trace {path}: row {i}, column '{c}': '{v}' is not a number") \
                    from None
            if not math.isfinite(x):
                raise TraceError(f"trace {path}: row {i}, column '{c}': value {v} is not finite")
            cols[c].append(x)
    t = np.asarray(cols["t_s"])
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        i = int(np.argmax(np.diff(t) <= 0)) + 3
        raise TraceError(f"trace {path}: column 't_s' must be strictly increasing "
                         f"(row {i} is not after the row before)")
    values = np.zeros((len(t), len(TRACE_COLUMNS)))
    has = np.zeros(len(TRACE_COLUMNS))
    for j, c in enumerate(TRACE_COLUMNS):
        if c in cols:
            v = np.asarray(cols[c])
            lo, hi = TRACE_RANGES[c]
            bad = (v < lo) | (v > hi)
            if np.any(bad):
                i = int(np.argmax(bad)) + 2
                hint = " (looks like kelvin)" if c == "ambient_c" and v[bad][0] > 200 else ""
                raise TraceError(f"trace {path}: row {i}, column '{c}': {v[bad][0]} outside "
                                 f"[{lo}, {hi}]{hint}")
            values[:, j] = v
            has[j] = 1.0
    return t, values, has
