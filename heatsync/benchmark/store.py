"""The benchmark's files: the results CSV, the per-cell traces and the run manifest.

Every file is written atomically (a temporary file, then ``os.replace``), so a reader
or a resumed run sees the old file or the new one, never half of one.

- ``benchmark.csv``: one row per (controller, task, scenario, seed) with
  :data:`ID_COLUMNS`, :data:`RUN_COLUMNS` and every KPI of ``KPI_DOC``; rewritten after
  each finished cell.
- ``traces/<Task>/<scenario>_<T>/<controller>.npz``: the per-step series of a cell's
  first seed, for the plots (so a resumed run plots cells it did not recompute).
- ``.benchmark-run.json``: the manifest of a run in progress (its cells and those
  finished so far); written at the start, removed at a clean end. Its presence means a
  run was interrupted, and the same command resumes it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from heatsync._io import write_bytes_atomic, write_text_atomic
from heatsync.envs import task_names
from heatsync.physics import KPI_DOC

__all__ = ["ID_COLUMNS", "RUN_COLUMNS", "columns", "read_csv", "write_csv", "row_key",
           "sort_key", "trace_path", "save_trace", "load_trace", "Manifest", "MANIFEST"]

#: the columns that identify a row
ID_COLUMNS = ("controller", "task", "scenario", "episode_steps", "seed")
#: per-row run columns: ``steps`` run (fewer than ``episode_steps`` if the
#: episode ended early), ``terminated`` 0/1, ``spec_met`` 0/1 (no interval out of the
#: task's specification and no termination), ``violation_s`` (time out of it),
#: ``cost_usd`` (the reward's costs less its benefits, penalties apart), ``split``
#: (``held-out`` or ``tuned-on``), ``tuned_scenario`` 0/1 (the controller's
#: ``tuned_on`` names this scenario), ``return`` (sum of rewards: -(cost + penalties),
#: USD), ``wall_s`` (wall time of the whole cell: every seed together, env build and
#: any compile included)
RUN_COLUMNS = ("steps", "terminated", "spec_met", "violation_s", "cost_usd", "split",
               "tuned_scenario", "return", "wall_s")
#: the manifest of a run in progress
MANIFEST = ".benchmark-run.json"

_INT_COLUMNS = {"episode_steps", "seed", "steps", "terminated", "tuned_scenario", "spec_met"}
_STR_COLUMNS = {"controller", "task", "scenario", "split"}


def columns() -> list[str]:
    """The CSV header: :data:`ID_COLUMNS`, :data:`RUN_COLUMNS`, then every KPI."""
    return [*ID_COLUMNS, *RUN_COLUMNS, *KPI_DOC]


def read_csv(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a benchmark CSV and a warning per line dropped.

    A line is dropped if it is not newline-terminated (cut off mid-write), has
    the wrong number of fields or a field that does not parse. Raises
    ``BenchmarkError`` if the header differs from :func:`columns` (a CSV
    from another version: move it away or use another ``--out``).
    """
    from .plan import BenchmarkError

    path = Path(path)
    if not path.exists():
        return [], []
    cols = columns()
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return [], []
    header = next(csv.reader([lines[0]]))
    if header != cols:
        raise BenchmarkError(
            f"{path}: its columns differ from this version's ({len(header)} vs {len(cols)}; "
            f"first difference near {_first_diff(header, cols)!r}); move it away or pass "
            "another --out")
    rows, warnings = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.endswith("\n"):
            warnings.append(f"{path}:{lineno}: dropped a line cut off mid-write")
            continue
        try:
            fields = next(csv.reader([line]))
            if len(fields) != len(cols):
                raise ValueError(f"{len(fields)} fields, expected {len(cols)}")
            row = {}
            for k, v in zip(cols, fields, strict=True):
                row[k] = v if k in _STR_COLUMNS else int(v) if k in _INT_COLUMNS else float(v)
        except (ValueError, StopIteration, csv.Error) as e:
            warnings.append(f"{path}:{lineno}: dropped an unreadable line ({e})")
            continue
        rows.append(row)
    return rows, warnings


def _first_diff(a, b):
    for x, y in zip(a, b, strict=False):
        if x != y:
            return x
    return a[len(b)] if len(a) > len(b) else b[len(a)] if len(b) > len(a) else None


def row_key(row: dict) -> tuple:
    """The identity of a row (:data:`ID_COLUMNS`)."""
    return tuple(row[k] for k in ID_COLUMNS)


def sort_key(r: dict):
    """Rows in table order: task (registry order), scenario, length, controller, seed."""
    order = task_names()
    t = order.index(r["task"]) if r["task"] in order else len(order)
    return (t, r["task"], r["scenario"], r["episode_steps"], r["controller"], r["seed"])


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write every row atomically (in the given order)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(Path(path), buf.getvalue())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def trace_path(out: Path, task: str, scenario: str, T: int, controller: str) -> Path:
    """Where a cell's trace lives under ``out``."""
    return out / "traces" / task / f"{_safe(scenario)}_{T}" / f"{_safe(controller)}.npz"


def save_trace(path: Path, trace: dict) -> None:
    """Write a trace (name -> array) as a compressed ``.npz``, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **trace)
    write_bytes_atomic(path, buf.getvalue())


def load_trace(path: Path) -> dict | None:
    """A trace, or ``None`` if it is missing or unreadable."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


class Manifest:
    """The record of a run in progress under ``out``: which cells it runs and which it
    finished. :meth:`start` writes it (or reads the one an interrupted run of the same
    cells left, to resume), :meth:`finish_cell` adds a cell, :meth:`close` removes it."""

    def __init__(self, out: Path, cells: list[tuple]):
        self.path = Path(out) / MANIFEST
        self.cells = [list(c) for c in cells]
        self.done: list[list] = []

    def start(self) -> bool:
        """Begin the run; ``True`` if it resumes an interrupted run of the same cells
        (then :attr:`done` holds the cells that run finished)."""
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            old = None
        resumed = isinstance(old, dict) and old.get("cells") == self.cells
        self.done = [list(c) for c in old.get("done", [])] if resumed else []
        self._write()
        return resumed

    def is_done(self, cell: tuple) -> bool:
        return list(cell) in self.done

    def finish_cell(self, cell: tuple) -> None:
        self.done.append(list(cell))
        self._write()

    def _write(self) -> None:
        write_text_atomic(self.path, json.dumps({"cells": self.cells, "done": self.done}))

    def close(self) -> None:
        """The run ended cleanly: nothing to resume."""
        self.path.unlink(missing_ok=True)
